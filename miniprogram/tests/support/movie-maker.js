// Synthetic MP4 index for box-level tests: sample tables at chosen file positions (past 4 GB
// if asked), over a "file" whose media bytes are a pattern computed from their position, so a
// 5 GB movie costs a few kilobytes. The sample entries carry colr and pasp boxes to be copied.

const B = require("../../utils/assemble/boxes.js");

const w = () => new B.Writer();

function visualEntry(type, config) {
  const fields = w().u32(0).u16(0).u16(1).u32(0).u32(0).u32(0).u32(0).u16(320).u16(240);
  fields.u32(0x480000).u32(0x480000).u32(0).u16(1).bytes(new Uint8Array(32)).u16(24).u16(0xffff);
  const colr = B.box("colr", w().type("nclx").u16(1).u16(1).u16(1).u8(0).done());
  const pasp = B.box("pasp", w().u32(1).u32(1).done());
  return B.box(type, fields.done(), config, colr, pasp);
}

function hvcC(types) {
  const c = w().u8(1).u8(1).u32(0x60000000).bytes(new Uint8Array(6)).u8(90).u16(0xf000).u8(0xfc);
  c.u8(0xfd).u8(0xf8).u8(0xf8).u16(0).u8(0x0f).u8(types.length);
  for (const t of types)
    c.u8(t)
      .u16(1)
      .u16(3)
      .bytes(Uint8Array.from([t << 1, 1, 7]));
  return B.box("hvcC", c.done());
}

function mp4aEntry() {
  const asc = Uint8Array.from([0x11, 0x90]); // AAC-LC, 48 kHz, stereo
  const dsi = w().u8(5).u8(asc.length).bytes(asc).done();
  const dcd = w()
    .u8(4)
    .u8(13 + dsi.length)
    .u8(0x40)
    .u8(0x15)
    .u24(0)
    .u32(0)
    .u32(0)
    .bytes(dsi)
    .done();
  const sl = Uint8Array.from([6, 1, 2]);
  const es = w()
    .u8(3)
    .u8(3 + dcd.length + sl.length)
    .u16(0)
    .u8(0)
    .bytes(dcd)
    .bytes(sl)
    .done();
  const fields = w()
    .u32(0)
    .u16(0)
    .u16(1)
    .u32(0)
    .u32(0)
    .u16(2)
    .u16(16)
    .u32(0)
    .u32(48000 * 65536);
  return B.box("mp4a", fields.done(), B.fullBox("esds", 0, 0, es));
}

function trak(id, handler, timescale, entry, samples, large, matrix) {
  const tk = w().u32(0).u32(0).u32(id).u32(0).u32(0).u32(0).u32(0).u16(0).u16(0).u16(0).u16(0);
  for (const m of matrix || [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000]) tk.u32(m);
  tk.u32(handler === "vide" ? 320 << 16 : 0).u32(handler === "vide" ? 240 << 16 : 0);
  const total = samples.reduce((n, s) => n + s.duration, 0);
  const tables = [
    B.fullBox("stsd", 0, 0, w().u32(1).done(), entry),
    B.stts(B.runs(samples.map((s) => s.duration))),
  ];
  if (samples.some((s) => s.offset_cts))
    tables.push(B.ctts(B.runs(samples.map((s) => s.offset_cts || 0))));
  if (samples.some((s) => !s.sync)) {
    tables.push(B.stss(samples.map((s, i) => (s.sync ? i : -1)).filter((i) => i >= 0)));
  }
  tables.push(
    B.stsc(samples.map(() => ({ samples: 1, description: 1 }))),
    B.stsz(samples.map((s) => s.size)),
    B.chunkOffsets(
      samples.map((s) => s.offset),
      large,
    ),
  );
  const header =
    handler === "vide"
      ? B.fullBox("vmhd", 0, 1, new Uint8Array(8))
      : B.fullBox("smhd", 0, 0, new Uint8Array(4));
  const dref = B.fullBox("dref", 0, 0, w().u32(1).done(), B.fullBox("url ", 0, 1));
  const name = handler === "vide" ? "Video" : "Sound";
  return B.box(
    "trak",
    B.fullBox("tkhd", 0, 3, tk.done()),
    B.box(
      "mdia",
      B.fullBox(
        "mdhd",
        0,
        0,
        w().u32(0).u32(0).u32(timescale).u32(total).u16(0x55c4).u16(0).done(),
      ),
      B.fullBox(
        "hdlr",
        0,
        0,
        w().u32(0).type(handler).u32(0).u32(0).u32(0).type(name).u8(0).done(),
      ),
      B.box("minf", header, B.box("dinf", dref), B.box("stbl", ...tables)),
    ),
  );
}

/** The byte at `position` of a synthetic file's media. */
function pattern(position) {
  return (position * 2654435761) % 251;
}

/**
 * A movie: {size, read, moov: {start, size}, video, audio} where video/audio list the samples
 * ({offset, size, duration, offset_cts, sync}). `base` is where the media starts (past 4 GB for
 * a large file); the index goes at the end.
 */
function makeMovie(options) {
  const o = { frames: 60, base: 64, codec: "avc1", audioFrames: 90, ...options };
  const video = [];
  const audio = [];
  let pos = o.base;
  for (let i = 0; i < o.frames; i += 1) {
    // I P B B P B B ...: decode order, composition offsets as with two B-frames.
    const kind = i % 30 === 0 ? "I" : (i % 30) % 3 === 1 ? "P" : "B";
    const offsetCts = kind === "B" ? 512 : 1536;
    video.push({
      offset: pos,
      size: o.frameSize || 900 + ((i * 37) % 400),
      duration: 512,
      offset_cts: offsetCts,
      sync: kind === "I",
    });
    pos += video[i].size;
    if (i % 2 === 1) {
      for (let k = 0; k < 3 && audio.length < o.audioFrames; k += 1) {
        audio.push({
          offset: pos,
          size: 200 + ((audio.length * 13) % 50),
          duration: 1024,
          sync: true,
        });
        pos += audio[audio.length - 1].size;
      }
    }
  }
  const large = pos > 0xffffffff;
  const config =
    o.codec.startsWith("hv") || o.codec.startsWith("he")
      ? hvcC(o.hvccTypes || [32, 33, 34])
      : B.box("avcC", Uint8Array.from([1, 66, 192, 13, 255, 224, 0]));
  const ftyp = B.box("ftyp", w().type("isom").u32(512).type("isom").type("mp41").done());
  const edit = B.box(
    "edts",
    B.fullBox("elst", 0, 0, w().u32(1).u32(1000).u32(1024).u32(0x10000).done()),
  );
  const vtrak = trak(1, "vide", 15360, visualEntry(o.codec, config), video, large, o.matrix);
  const atrak = trak(2, "soun", 48000, mp4aEntry(), audio, large);
  const mvhd = B.fullBox(
    "mvhd",
    0,
    0,
    w()
      .u32(0)
      .u32(0)
      .u32(1000)
      .u32(2000)
      .u32(0x10000)
      .u16(0x100)
      .u16(0)
      .u32(0)
      .u32(0)
      .bytes(new Uint8Array(36))
      .bytes(new Uint8Array(24))
      .u32(3)
      .done(),
  );
  // Audio with an edit list (priming), as phones write it.
  const atrakEdited = B.box(
    "trak",
    atrak.subarray(8, 8 + B.boxHeader(atrak, 8).size),
    edit,
    atrak.subarray(8 + B.boxHeader(atrak, 8).size),
  );
  const moov = B.box("moov", mvhd, vtrak, atrakEdited);
  const span = pos - ftyp.length;
  const mdatHead = B.mdatHeader(span - (span + 8 > 0xffffffff ? 16 : 8));
  const mdatStart = ftyp.length;
  const size = pos + moov.length;
  const head = B.concat([ftyp, mdatHead]);
  return {
    size,
    video,
    audio,
    moov: { start: pos, bytes: moov },
    async read(offset, length) {
      const out = new Uint8Array(length);
      for (let i = 0; i < length; i += 1) {
        const p = offset + i;
        if (p < mdatStart + mdatHead.length) out[i] = head[p];
        else if (p >= pos) out[i] = moov[p - pos];
        else out[i] = pattern(p);
      }
      return out;
    },
  };
}

/** An M4A of `frames` AAC packets from media time 0, in memory. */
function makeCleanAudio(frames) {
  const samples = [];
  let pos = 0;
  for (let i = 0; i < frames; i += 1) {
    samples.push({ offset: pos, size: 300 + (i % 7), duration: 1024, sync: true });
    pos += samples[i].size;
  }
  const ftyp = B.box("ftyp", w().type("M4A ").u32(512).type("M4A ").type("isom").done());
  const mvhd = B.fullBox(
    "mvhd",
    0,
    0,
    w()
      .u32(0)
      .u32(0)
      .u32(1000)
      .u32(0)
      .u32(0x10000)
      .u16(0x100)
      .u16(0)
      .u32(0)
      .u32(0)
      .bytes(new Uint8Array(60))
      .u32(2)
      .done(),
  );
  const build = (base) =>
    B.box(
      "moov",
      mvhd,
      trak(
        1,
        "soun",
        48000,
        mp4aEntry(),
        samples.map((s) => ({ ...s, offset: s.offset + base })),
        false,
      ),
    );
  const sized = build(0);
  const base = ftyp.length + sized.length + 8;
  const media = Uint8Array.from({ length: pos }, (_, i) => (i * 7 + 3) % 256);
  const bytes = B.concat([ftyp, build(base), B.mdatHeader(pos), media]);
  return { bytes, samples: samples.map((s) => ({ ...s, offset: s.offset + base })) };
}

module.exports = { makeCleanAudio, makeMovie, pattern };
