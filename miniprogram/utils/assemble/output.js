// Generated from src/beatsync/web/assemble/output.js by scripts/assemble-sync.js:
// edit that file, then run `npm run assemble-sync`.

// The result MP4 from the class video kept on the device and the clean audio the service
// returned: what the service's render writes for a stream copy. Video samples
// [first_sample, end_sample) are copied as they are, decode times shifted so the first decodes
// at 0, composition offsets kept, no edit list; the audio track is the returned M4A's packets
// from 0. The index goes in front (faststart), co64 past 4 GB.

const {
  MediaError,
  Writer,
  box,
  chunkOffsets,
  concat,
  ctts,
  fullBox,
  mdatHeader,
  runs,
  stsc,
  stss,
  stsz,
  stts,
} = require("./boxes.js");
const { hvc1Stsd } = require("./hevc.js");
const { editsOf, parseIndex, rawBox, readMovie, trackOf } = require("./movie.js");
const { rangesOf } = require("./parts.js");

const MOVIE_TIMESCALE = 1000;
const CHUNK_SECONDS = 1.0; // interleaving: a chunk of each track per keyframe, at most a second
const MIN_KEY_SPACING = 8; // keyframes denser than one in this many pictures are not chunked by
const IDENTITY = [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000];

/**
 * The video samples a copy takes and their new timing (source ticks), as the service's render
 * times them: the last sample lasts until the next frame shown after the run, or for its own
 * duration when the file ends.
 */
function videoRun(samples, first, end) {
  // Pictures shown before the keyframe (an open GOP's leading pictures) reference the previous
  // GOP, which is not copied: they are left out, as the render leaves them out.
  const floor = samples[first].cts;
  const run = samples.slice(first, end).filter((s) => s.cts >= floor);
  const origin = run[0].dts;
  let top = -Infinity;
  let topSample = null;
  for (const s of run) {
    if (s.cts > top) {
      top = s.cts;
      topSample = s;
    }
  }
  let until = Infinity;
  for (let j = end; j < samples.length && samples[j].dts < until; j += 1) {
    until = Math.min(until, samples[j].cts);
  }
  if (until === Infinity) until = top + (topSample.duration || 1);
  if (until <= top) until = top + 1;
  const durations = run.map((s, i) =>
    i + 1 < run.length ? run[i + 1].dts - s.dts : until - s.dts,
  );
  // The track lasts from the first picture shown to the end of the last one (as FFmpeg's
  // muxer counts it without an edit list), not the sum of the decode durations.
  const span = Math.max(...run.map((s, i) => s.cts + durations[i])) - run[0].cts;
  return { run, origin, durations, span, offsets: run.map((s) => s.cts - s.dts) };
}

function checkAnswer(answer, count) {
  const { first_sample: first, end_sample: end } = answer || {};
  if (
    !Number.isInteger(first) ||
    !Number.isInteger(end) ||
    first < 0 ||
    end <= first ||
    end > count
  ) {
    throw new MediaError(
      "VALIDATION_ERROR",
      `the cut [${first}, ${end}) is not within the video's ${count} samples`,
    );
  }
}

function cleanAudio(audioBytes) {
  const { isofile, bytes } = parseIndex(audioBytes);
  const trak = trackOf(isofile, "soun");
  if (!trak || trak.samples.length === 0) {
    throw new MediaError("NO_AUDIO_TRACK", "the returned audio has no audio track");
  }
  const edits = editsOf(trak);
  if (edits && !(edits.length === 1 && edits[0][1] === 0 && edits[0][2] === 1)) {
    throw new MediaError("INVALID_FORMAT", "the returned audio has an edit list");
  }
  for (const s of trak.samples) {
    if (s.offset + s.size > audioBytes.length) {
      throw new MediaError("INVALID_FORMAT", "the returned audio is cut short");
    }
  }
  return { trak, bytes, stsd: rawBox(bytes, trak.mdia.minf.stbl.stsd) };
}

/**
 * Write the output.
 *
 * @param {{size: number, read(offset: number, length: number): Promise<Uint8Array>}} reader
 *   the class video
 * @param {Uint8Array} audioBytes the clean-audio M4A the service returned
 * @param {{first_sample: number, end_sample: number}} answer the cut, decode-order indices
 * @param {{movie?: object}} [given] the video's index already read (readMovie, extractAudio's
 *   `movie`): another take of the same video then reads nothing of the file but its samples
 * @returns {Promise<{parts: Array, size: number, facts: object}>} the MP4 as parts (parts.js)
 */
async function assemble(reader, audioBytes, answer, { movie: given = null } = {}) {
  const movie = given || (await readMovie(reader));
  const vtrak = trackOf(movie.isofile, "vide");
  if (!vtrak) throw new MediaError("NO_VIDEO_TRACK", "the file has no video track");
  const samples = vtrak.samples;
  checkAnswer(answer, samples.length);
  const first = answer.first_sample;
  const hasSync = Boolean(vtrak.mdia.minf.stbl.stss);
  if (hasSync && !samples[first].is_sync) {
    throw new MediaError("VALIDATION_ERROR", `sample ${first} is not a keyframe`);
  }
  const video = videoRun(samples, first, answer.end_sample);
  for (const s of video.run) {
    if (s.offset + s.size > reader.size) {
      throw new MediaError("INVALID_FORMAT", "the video track points past the end of the file");
    }
  }
  const audio = cleanAudio(audioBytes);
  const vts = vtrak.mdia.mdhd.timescale;
  const ats = audio.trak.mdia.mdhd.timescale;
  const chunks = interleave(
    video.run.map((s) => (s.dts - video.origin) / vts),
    audio.trak.samples.map((s) => s.dts / ats),
    video.run.map((s) => s.description_index + 1),
    audio.trak.samples.map((s) => s.description_index + 1),
    chunkStarts(
      video.run.map((s) => s.dts),
      pictureKeys(video.run, hasSync),
      vts * CHUNK_SECONDS,
    ),
  );
  const payload =
    video.run.reduce((n, s) => n + s.size, 0) + audio.trak.samples.reduce((n, s) => n + s.size, 0);
  const ftyp = fileType(vtrak);
  const head = mdatHeader(payload);
  const tables = { movie, vtrak, video, audio, chunks, vts, ats, hasSync };
  const large =
    ftyp.length + moovBox(tables, null, false).length + head.length + payload > 0xffffffff;
  const sized = moovBox(tables, null, large); // offsets do not change the index's size
  const moov = moovBox(tables, ftyp.length + sized.length + head.length, large);

  const parts = [{ bytes: concat([ftyp, moov, head]) }];
  for (const c of chunks) {
    const ranges = rangesOf(
      c.samples.map((i) => (c.track === 0 ? video.run : audio.trak.samples)[i]),
    );
    for (const r of ranges) {
      // Video bytes stay in the source file; the audio is already in memory.
      parts.push(c.track === 0 ? r : { bytes: audioBytes.subarray(r.offset, r.offset + r.length) });
    }
  }
  const size = ftyp.length + moov.length + head.length + payload;
  return {
    parts,
    size,
    facts: {
      frames: video.run.length,
      video_seconds: video.span / vts,
      first_frame_time: (Math.min(...video.run.map((s) => s.cts)) - video.origin) / vts,
      co64: large,
    },
  };
}

/**
 * Chunks in file order: for each stretch of the picture (`vstarts`, from chunkStarts; by
 * default a second each), the audio decoding before the next stretch, then the stretch's video
 * samples ({track: 0 video | 1 audio, samples: [indices], description}). Times in seconds.
 */
function interleave(vtimes, atimes, vdesc, adesc, vstarts = null) {
  const starts = vstarts || chunkStarts(vtimes, null, CHUNK_SECONDS);
  const chunks = [];
  let a = 0;
  for (let p = 0; p < starts.length || a < atimes.length; p += 1) {
    const v0 = p < starts.length ? starts[p] : vtimes.length;
    const v1 = p + 1 < starts.length ? starts[p + 1] : vtimes.length;
    const bound = p + 1 < starts.length ? vtimes[starts[p + 1]] : Infinity;
    a = take(chunks, 1, atimes.length, adesc, a, (i) => atimes[i] < bound);
    take(chunks, 0, vtimes.length, vdesc, v0, (i) => i < v1);
  }
  return chunks;
}

function take(chunks, track, count, desc, from, inside) {
  let i = from;
  while (i < count && inside(i)) {
    const samples = [];
    const d = desc[i];
    while (i < count && inside(i) && desc[i] === d) samples.push(i++);
    chunks.push({ track, samples, description: d });
  }
  return i;
}

/**
 * Where the picture's chunks start (indices into `times`, decode times in track ticks): at every
 * keyframe, and `span` ticks after the last start between keyframes. A copy starts on a
 * keyframe, so its chunks are the file's own whichever keyframe that is: the page makes their
 * slices ahead (pictureGroups).
 */
function chunkStarts(times, keys, span) {
  const starts = [];
  let last = -Infinity;
  for (let i = 0; i < times.length; i += 1) {
    if (i === 0 || (keys && keys[i]) || times[i] - last >= span) {
      starts.push(i);
      last = times[i];
    }
  }
  return starts;
}

/**
 * The keyframe flags chunkStarts follows, or null when there are none or they are too dense
 * to chunk by (every picture a keyframe): then chunks are CHUNK_SECONDS long.
 */
function pictureKeys(samples, hasSync) {
  if (!hasSync) return null;
  const keys = samples.map((s) => Boolean(s.is_sync));
  const count = keys.reduce((n, k) => n + (k ? 1 : 0), 0);
  return count * MIN_KEY_SPACING > samples.length ? null : keys;
}

/**
 * The source ranges of every chunk a copy of the track can have (chunkStarts over the whole
 * track, decode order): the groups partsBlob makes of a cut's picture, but for the cut's last.
 */
function pictureGroups(trak) {
  const samples = trak.samples;
  const ts = trak.mdia.mdhd.timescale;
  const keys = pictureKeys(samples, Boolean(trak.mdia.minf.stbl.stss));
  const starts = chunkStarts(
    samples.map((s) => s.dts),
    keys,
    ts * CHUNK_SECONDS,
  );
  return starts.map((s, i) => rangesOf(samples.slice(s, starts[i + 1] ?? samples.length)));
}

function fileType(vtrak) {
  const entry = vtrak.mdia.minf.stbl.stsd.entries[0];
  const brands = ["isom", "iso2"];
  if (entry && /^avc/.test(entry.type)) brands.push("avc1");
  brands.push("mp41");
  const w = new Writer().type("isom").u32(512);
  for (const b of brands) w.type(b);
  return box("ftyp", w.done());
}

function moovBox(t, first, large) {
  const { video, audio, chunks, vts, ats } = t;
  const offsets = [[], []];
  const sizes = [video.run.map((s) => s.size), audio.trak.samples.map((s) => s.size)];
  let pos = first || 0;
  for (const c of chunks) {
    offsets[c.track].push(pos);
    for (const i of c.samples) pos += sizes[c.track][i];
  }
  const vchunks = chunks.filter((c) => c.track === 0).map(chunkShape);
  const achunks = chunks.filter((c) => c.track === 1).map(chunkShape);
  const vticks = video.span;
  const aticks = audio.trak.samples.reduce((n, s) => n + s.duration, 0);
  const vms = Math.ceil((vticks * MOVIE_TIMESCALE) / vts);
  const ams = Math.ceil((aticks * MOVIE_TIMESCALE) / ats);

  const vsrc = t.vtrak;
  const vtables = [
    hvc1Stsd(rawBox(t.movie.bytes, vsrc.mdia.minf.stbl.stsd)),
    stts(runs(video.durations)),
  ];
  if (video.offsets.some((o) => o !== 0)) vtables.push(ctts(runs(video.offsets)));
  if (t.hasSync) {
    vtables.push(stss(video.run.map((s, i) => (s.is_sync ? i : -1)).filter((i) => i >= 0)));
  }
  vtables.push(stsc(vchunks), stsz(sizes[0]), chunkOffsets(offsets[0], large));
  const atables = [
    audio.stsd,
    stts(runs(audio.trak.samples.map((s) => s.duration))),
    stsc(achunks),
    stsz(sizes[1]),
    chunkOffsets(offsets[1], large),
  ];
  const vtkhd = rawBox(t.movie.bytes, vsrc.tkhd);
  return box(
    "moov",
    movieHeader(Math.max(vms, ams)),
    track({
      id: 1,
      ms: vms,
      ticks: vticks,
      timescale: vts,
      language: language(rawBox(t.movie.bytes, vsrc.mdia.mdhd)),
      handler: "vide",
      name: "VideoHandler",
      geometry: vtkhd.subarray(vtkhd[8] === 1 ? 60 : 48, (vtkhd[8] === 1 ? 60 : 48) + 44),
      tables: vtables,
    }),
    track({
      id: 2,
      ms: ams,
      ticks: aticks,
      timescale: ats,
      language: language(rawBox(audio.bytes, audio.trak.mdia.mdhd)),
      handler: "soun",
      name: "SoundHandler",
      geometry: null,
      tables: atables,
    }),
  );
}

function chunkShape(c) {
  return { samples: c.samples.length, description: c.description };
}

function language(mdhd) {
  return mdhd.subarray(mdhd.length - 4, mdhd.length - 2);
}

function movieHeader(duration) {
  const w = new Writer(100).u32(0).u32(0).u32(MOVIE_TIMESCALE).u32(duration);
  w.u32(0x10000).u16(0x100).u16(0).u32(0).u32(0);
  for (const m of IDENTITY) w.u32(m);
  for (let i = 0; i < 6; i += 1) w.u32(0);
  w.u32(3);
  return fullBox("mvhd", 0, 0, w.done());
}

function track(t) {
  const sound = t.handler === "soun";
  const tkhd = new Writer(84).u32(0).u32(0).u32(t.id).u32(0).u32(t.ms).u32(0).u32(0);
  tkhd
    .u16(0)
    .u16(sound ? 1 : 0)
    .u16(sound ? 0x100 : 0)
    .u16(0);
  if (t.geometry) tkhd.bytes(t.geometry);
  else {
    for (const m of IDENTITY) tkhd.u32(m);
    tkhd.u32(0).u32(0);
  }
  const wide = t.ticks > 0xffffffff;
  const mdhd = new Writer(32);
  if (wide) mdhd.u64(0).u64(0).u32(t.timescale).u64(t.ticks);
  else mdhd.u32(0).u32(0).u32(t.timescale).u32(t.ticks);
  mdhd.bytes(t.language).u16(0);
  const hdlr = new Writer(40).u32(0).type(t.handler).u32(0).u32(0).u32(0);
  for (const ch of t.name) hdlr.u8(ch.charCodeAt(0));
  hdlr.u8(0);
  const header = sound
    ? fullBox("smhd", 0, 0, new Uint8Array(4))
    : fullBox("vmhd", 0, 1, new Uint8Array(8));
  const dref = fullBox("dref", 0, 0, new Writer(4).u32(1).done(), fullBox("url ", 0, 1));
  return box(
    "trak",
    fullBox("tkhd", 0, 3, tkhd.done()),
    box(
      "mdia",
      fullBox("mdhd", wide ? 1 : 0, 0, mdhd.done()),
      fullBox("hdlr", 0, 0, hdlr.done()),
      box("minf", header, box("dinf", dref), box("stbl", ...t.tables)),
    ),
  );
}

module.exports = { videoRun, assemble, interleave, chunkStarts, pictureKeys, pictureGroups };
