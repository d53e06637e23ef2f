/**
 * @jest-environment node
 */
// The assembly module's mini-program copy: that it is the page's module, and what synthetic
// movies check at the box level — files past 4 GB (64-bit offsets in and out), the HEVC tag,
// refused answers — and the file-system adapter on the fake wx. The same module against real
// media and the server's render: tests/e2e/test_client_assembly.py.

const fs = require("fs");
const path = require("path");
const A = require("../../utils/assemble/index.js");
const { parseIndex, trackOf } = require("../../utils/assemble/movie.js");
const { hvc1Entry, completeHvcc } = require("../../utils/assemble/hevc.js");
const { boxHeader } = require("../../utils/assemble/boxes.js");
const { drift } = require("../../scripts/assemble-sync.js");
const { makeCleanAudio, makeMovie } = require("../support/movie-maker.js");
const { createFakeWx } = require("../support/fake-wx.js");

const GB = 2 ** 30;
const WEB_VENDOR = path.resolve(__dirname, "../../../src/beatsync/web/vendor/mp4box");
const MP4BOX_DIST = path.resolve(__dirname, "../../node_modules/mp4box/dist");

/** The output's samples as parsed back from its index: [{offset, size, dts, cts, sync}]. */
function parsedOutput(parts, kind) {
  const head = parts[0].bytes;
  const moov = boxHeader(head, boxHeader(head, 0).size);
  const end = boxHeader(head, 0).size + moov.size;
  return trackOf(parseIndex(head.subarray(0, end)).isofile, kind);
}

/** Where output byte `offset` comes from: {part, at} (at = offset within the part). */
function locate(parts, offset) {
  let pos = 0;
  for (const part of parts) {
    const n = part.bytes ? part.bytes.length : part.length;
    if (offset < pos + n) return { part, at: offset - pos, room: pos + n - offset };
    pos += n;
  }
  return null;
}

describe("one module for the page and the mini-program", () => {
  test("the CommonJS copies and the vendored mp4box.js match their sources", () => {
    expect(drift()).toEqual([]);
  });

  test("the page's vendored mp4box.js is the pinned npm release, byte for byte", () => {
    for (const name of ["mp4box.all.mjs", "styp-9TIZZDLN.mjs", "rolldown-runtime-w6R9maHv.mjs"]) {
      const copy = fs.readFileSync(path.join(WEB_VENDOR, name));
      expect(copy.equals(fs.readFileSync(path.join(MP4BOX_DIST, name)))).toBe(true);
    }
    expect(fs.readFileSync(path.join(WEB_VENDOR, "LICENSE"))).toEqual(
      fs.readFileSync(path.join(MP4BOX_DIST, "../LICENSE")),
    );
  });
});

describe("files past 4 GB", () => {
  test("the sound of a video whose media lies past 4 GB is found through co64", async () => {
    const movie = makeMovie({ base: 5 * GB });
    const { parts, size, manifest } = await A.extractAudio(movie);
    expect(A.partsSize(parts)).toBe(size);
    const ranges = parts.slice(1);
    expect(ranges.reduce((n, p) => n + p.length, 0)).toBe(
      movie.audio.reduce((n, s) => n + s.size, 0),
    );
    // Each audio packet's bytes come from its place in the source.
    const m4a = parsedOutput(parts, "soun");
    m4a.samples.forEach((s, i) => {
      const where = locate(parts, s.offset);
      expect(where.part.offset + where.at).toBe(movie.audio[i].offset);
      expect(where.room).toBeGreaterThanOrEqual(s.size);
      expect(s.dts).toBe(i * 1024);
    });
    expect(m4a.edts.elst.entries[0].media_time).toBe(1024); // the priming edit is kept
    expect(manifest.video.sync).toEqual([0, 30]);
    expect(manifest.audio.edits).toEqual([[1000, 1024, 1]]);
    expect(manifest.video.stts).toEqual([[60, 512]]);
  });

  test("an output past 4 GB gets co64 and a 64-bit mdat, every sample where it belongs", async () => {
    const movie = makeMovie({ base: 64, frames: 60, frameSize: 160 * 1024 * 1024 });
    const audio = makeCleanAudio(60);
    const out = await A.assemble(movie, audio.bytes, { first_sample: 30, end_sample: 60 });
    expect(out.size).toBeGreaterThan(4 * GB);
    expect(out.facts.co64).toBe(true);
    const head = out.parts[0].bytes;
    const mdatAt = head.length - 16;
    expect(boxHeader(head, mdatAt, mdatAt + 16)).toEqual({
      type: "mdat",
      size: out.size - mdatAt,
      header: 16,
    });
    const video = parsedOutput(out.parts, "vide");
    expect(video.mdia.minf.stbl.co64).toBeTruthy();
    expect(video.samples).toHaveLength(30);
    video.samples.forEach((s, i) => {
      const source = movie.video[30 + i];
      const where = locate(out.parts, s.offset);
      expect(where.part.offset + where.at).toBe(source.offset);
      expect(where.room).toBeGreaterThanOrEqual(source.size);
      expect(s.dts).toBe(i * 512);
      expect(s.cts - s.dts).toBe(source.offset_cts);
      expect(s.is_sync).toBe(source.sync);
    });
    expect(video.samples.some((s) => s.offset > 2 ** 32)).toBe(true);
    const sound = parsedOutput(out.parts, "soun");
    sound.samples.forEach((s, i) => {
      const where = locate(out.parts, s.offset);
      const want = audio.bytes.subarray(audio.samples[i].offset, audio.samples[i].offset + s.size);
      expect(Buffer.from(where.part.bytes.subarray(where.at, where.at + s.size))).toEqual(
        Buffer.from(want),
      );
      expect(s.dts).toBe(i * 1024);
    });
  });
});

describe("the sample entry", () => {
  test("colr and pasp are copied, rotation kept", async () => {
    const matrix = [0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000];
    const movie = makeMovie({ matrix });
    const out = await A.assemble(movie, makeCleanAudio(20).bytes, {
      first_sample: 0,
      end_sample: 30,
    });
    const video = parsedOutput(out.parts, "vide");
    const entry = video.mdia.minf.stbl.stsd.entries[0];
    expect(entry.type).toBe("avc1");
    expect(entry.boxes.map((b) => b.type)).toEqual(["avcC", "colr", "pasp"]);
    expect(Array.from(video.tkhd.matrix)).toEqual(matrix);
    const { manifest } = await A.extractAudio(movie);
    expect(manifest.video.rotation).toBe(270);
  });

  test("hev1 with its parameter sets becomes hvc1, marked complete; without them it stays", async () => {
    const movie = makeMovie({ codec: "hev1" });
    const out = await A.assemble(movie, makeCleanAudio(20).bytes, {
      first_sample: 0,
      end_sample: 30,
    });
    const entry = parsedOutput(out.parts, "vide").mdia.minf.stbl.stsd.entries[0];
    expect(entry.type).toBe("hvc1");
    expect(entry.hvcC.nalu_arrays.map((a) => [a.nalu_type, a.completeness])).toEqual([
      [32, 1],
      [33, 1],
      [34, 1],
    ]);
    const partial = makeMovie({ codec: "hev1", hvccTypes: [32, 34] });
    const kept = await A.assemble(partial, makeCleanAudio(20).bytes, {
      first_sample: 0,
      end_sample: 30,
    });
    expect(parsedOutput(kept.parts, "vide").mdia.minf.stbl.stsd.entries[0].type).toBe("hev1");
    const hvc1 = makeMovie({ codec: "hvc1" });
    const same = await A.assemble(hvc1, makeCleanAudio(20).bytes, {
      first_sample: 0,
      end_sample: 30,
    });
    expect(parsedOutput(same.parts, "vide").mdia.minf.stbl.stsd.entries[0].type).toBe("hvc1");
    expect(typeof hvc1Entry).toBe("function");
    expect(completeHvcc(new Uint8Array(8))).toBeNull();
  });
});

describe("the index read once", () => {
  test("the sound's reading gives the index that every take is assembled from", async () => {
    const movie = makeMovie({});
    let reads = 0;
    const counted = {
      size: movie.size,
      read(offset, length) {
        reads += 1;
        return movie.read(offset, length);
      },
    };
    const extracted = await A.extractAudio(counted);
    expect(reads).toBeGreaterThan(0);
    const audio = makeCleanAudio(20).bytes;
    const answer = { first_sample: 30, end_sample: 50 };
    reads = 0;
    const again = await A.assemble(counted, audio, answer, { movie: extracted.movie });
    expect(reads).toBe(0); // nothing of the file is read: its samples are ranges of it
    const fresh = await A.assemble(counted, audio, answer);
    expect(reads).toBeGreaterThan(0);
    expect(again.size).toBe(fresh.size);
    expect(again.parts).toEqual(fresh.parts);
  });
});

describe("few reads, few slices", () => {
  test("a sound interleaved with the picture is read in a few large reads, byte for byte", async () => {
    const movie = makeMovie({ frames: 120, audioFrames: 180 });
    const sound = await A.extractAudio(movie);
    const ranges = sound.parts.filter((p) => !p.bytes).length;
    expect(ranges).toBe(60); // the maker puts three sound packets after every other frame
    let reads = 0;
    const counted = {
      size: movie.size,
      read(offset, length) {
        reads += 1;
        return movie.read(offset, length);
      },
    };
    const bytes = await A.partsBytes(sound.parts, counted);
    expect(reads).toBe(1);
    // What reading each range alone gives.
    const alone = [];
    await A.eachPiece(sound.parts, movie, (b) => alone.push(...b));
    expect(Array.from(bytes)).toEqual(alone);
    // Gaps past `bridge` and spans past `window` are read apart.
    reads = 0;
    const apart = await A.partsBytes(sound.parts, counted, { bridge: 0 });
    expect(reads).toBe(ranges);
    expect(apart).toEqual(bytes);
    reads = 0;
    expect(await A.partsBytes(sound.parts, counted, { window: 4096 })).toEqual(bytes);
    expect(reads).toBeGreaterThan(1);
    expect(reads).toBeLessThan(ranges);
  });

  test("a later take of the same cut reuses the picture's slices", async () => {
    const movie = makeMovie({});
    const answer = { first_sample: 0, end_sample: 60 };
    const one = await A.assemble(movie, makeCleanAudio(20).bytes, answer);
    const two = await A.assemble(movie, makeCleanAudio(22).bytes, answer);
    let slices = 0;
    const file = new Blob([new Uint8Array(movie.size)]);
    const counting = { slice: (...args) => (slices += 1, file.slice(...args)) };
    const cache = new Map();
    const first = A.partsBlob(one.parts, counting, "video/mp4", cache);
    const made = slices;
    expect(made).toBe(one.parts.filter((p) => !p.bytes).length);
    const second = A.partsBlob(two.parts, counting, "video/mp4", cache);
    expect(slices).toBe(made);
    expect(first.size).toBe(one.size);
    expect(second.size).toBe(two.size);
  });
});

test("a copy's picture chunks are the file's own, whichever keyframe it starts from", async () => {
  const movie = makeMovie({ frames: 120, audioFrames: 180 });
  const { isofile } = await require("../../utils/assemble/movie.js").readMovie(movie);
  const key = (ranges) => ranges.map((r) => `${r.offset}+${r.length}`).join(",");
  const groups = new Set(A.pictureGroups(trackOf(isofile, "vide")).map(key));
  expect(groups.size).toBeGreaterThanOrEqual(4); // a chunk per keyframe (every 30 pictures)
  for (const first of [0, 30, 60]) {
    const out = await A.assemble(movie, makeCleanAudio(200).bytes, {
      first_sample: first,
      end_sample: 110,
    });
    // The picture's ranges between two pieces of new bytes: its chunks.
    const found = [];
    let group = [];
    for (const p of [...out.parts, { bytes: new Uint8Array(0) }]) {
      if (!p.bytes) group.push(p);
      else if (group.length) {
        found.push(key(group));
        group = [];
      }
    }
    expect(found.length).toBeGreaterThan(1);
    // All but the last (cut short by the copy's end) are made ahead.
    for (const g of found.slice(0, -1)) expect(groups.has(g)).toBe(true);
  }
});

describe("refusals", () => {
  test("a cut that does not start on a keyframe or leaves the video is refused", async () => {
    const movie = makeMovie();
    const audio = makeCleanAudio(10).bytes;
    await expect(
      A.assemble(movie, audio, { first_sample: 5, end_sample: 20 }),
    ).rejects.toMatchObject({
      code: "VALIDATION_ERROR",
    });
    await expect(
      A.assemble(movie, audio, { first_sample: 30, end_sample: 61 }),
    ).rejects.toMatchObject({
      code: "VALIDATION_ERROR",
    });
  });

  test("a file without a movie index is refused as invalid", async () => {
    const bytes = new Uint8Array(64);
    bytes.set([0, 0, 0, 64, 109, 100, 97, 116]); // one mdat
    await expect(A.extractAudio(A.bytesReader(bytes))).rejects.toMatchObject({
      code: "INVALID_FORMAT",
    });
  });
});

describe("on the phone's files", () => {
  async function materialize(movie) {
    return Buffer.from(await movie.read(0, movie.size));
  }

  test("the sound and the result are written through descriptors, a piece at a time", async () => {
    const fake = createFakeWx();
    global.wx = fake.wx;
    const wxfiles = require("../../utils/assemble-wx.js");
    const movie = makeMovie({ frames: 90, frameSize: 48 * 1024 });
    fake.addFile("wxfile://class.mp4", await materialize(movie));
    const clean = makeCleanAudio(80);
    fake.addFile("wxfile://clean.m4a", Buffer.from(clean.bytes));

    const progress = [];
    const manifest = await wxfiles.extractAudioToFile(
      "wxfile://class.mp4",
      "wxfile://usr/sound.m4a",
      {
        onProgress: (done, total) => progress.push([done, total]),
      },
    );
    expect(manifest.video.sample_count).toBe(90);
    const m4a = new Uint8Array(fake.files.get("wxfile://usr/sound.m4a"));
    const track = trackOf(parseIndex(m4a).isofile, "soun");
    track.samples.forEach((s, i) => {
      const want = Buffer.from(m4a.subarray(s.offset, s.offset + s.size));
      const source = movie.audio[i];
      expect(want).toEqual(
        fake.files.get("wxfile://class.mp4").subarray(source.offset, source.offset + source.size),
      );
    });
    expect(progress[progress.length - 1]).toEqual([m4a.length, m4a.length]);

    const facts = await wxfiles.assembleToFile(
      "wxfile://class.mp4",
      "wxfile://clean.m4a",
      { first_sample: 30, end_sample: 90 },
      "wxfile://usr/out.mp4",
    );
    expect(facts.frames).toBe(60);
    const out = new Uint8Array(fake.files.get("wxfile://usr/out.mp4"));
    const video = trackOf(parseIndex(out).isofile, "vide");
    const original = fake.files.get("wxfile://class.mp4");
    const copied = video.samples.filter((s, i) => {
      const source = movie.video[30 + i];
      const want = original.subarray(source.offset, source.offset + source.size);
      return Buffer.from(out.subarray(s.offset, s.offset + s.size)).equals(want);
    });
    expect(copied).toHaveLength(60);
    // Small parts gathered into writes of 2 MB; every descriptor closed; no read of the video
    // bigger than a piece.
    const writes = fake.called("write").map((c) => c.length);
    expect(writes.length).toBe(1 + Math.ceil(out.length / (2 * 1024 * 1024)));
    expect(writes.slice(1, -1).every((n) => n === 2 * 1024 * 1024)).toBe(true);
    expect(fake.called("open")).toHaveLength(fake.called("close").length);
    expect(Math.max(...fake.called("read").map((c) => c.length))).toBeLessThanOrEqual(
      2 * 1024 * 1024,
    );
    delete global.wx;
  });
});
