// Generated from src/beatsync/web/assemble/extract.js by scripts/assemble-sync.js:
// edit that file, then run `npm run assemble-sync`.

// The audio-first upload: the class video's sound as an M4A of its own AAC packets (no
// re-encoding), and the manifest of its picture's sample tables.

const {
  MediaError,
  box,
  boxHeader,
  children,
  chunkOffsets,
  concat,
  mdatHeader,
  stsc,
  stsz,
} = require("./boxes.js");
const { editsOf, rawBox, readMovie, rotationOf, sampleEntries, trackOf } = require("./movie.js");
const { rangesOf } = require("./parts.js");

const OFFSET_TABLES = new Set(["stsc", "stsz", "stz2", "stco", "co64"]);

/**
 * The manifest of the movie's picture and sound (see docs/client-assembly.md).
 * @param {{bytes: Uint8Array, isofile: object, brand: string}} movie from readMovie
 */
function manifestOf(movie) {
  const { isofile, bytes, brand } = movie;
  const video = trackOf(isofile, "vide");
  const audio = trackOf(isofile, "soun");
  if (!video) throw new MediaError("NO_VIDEO_TRACK", "the file has no video track");
  if (!audio) throw new MediaError("NO_AUDIO_TRACK", "the file has no audio track");
  const mvhd = isofile.moov.mvhd;
  const vstbl = video.mdia.minf.stbl;
  const ventry = sampleEntries(bytes, video)[0];
  const vdesc = vstbl.stsd.entries[0];
  const aentry = audioEntry(bytes, audio);
  const pairs = (box, a, b) => box[a].map((n, i) => [n, box[b][i]]);
  return {
    version: 1,
    brand,
    movie_timescale: mvhd.timescale,
    duration: mvhd.duration / mvhd.timescale,
    video: {
      track_id: video.tkhd.track_id,
      codec: ventry.type,
      width: vdesc.width,
      height: vdesc.height,
      rotation: rotationOf(video.tkhd.matrix),
      timescale: video.mdia.mdhd.timescale,
      sample_count: video.samples.length,
      stts: pairs(vstbl.stts, "sample_counts", "sample_deltas"),
      ctts: vstbl.ctts ? pairs(vstbl.ctts, "sample_counts", "sample_offsets") : null,
      sync: vstbl.stss ? vstbl.stss.sample_numbers.map((n) => n - 1) : null,
      edits: editsOf(video),
    },
    audio: {
      track_id: audio.tkhd.track_id,
      codec: aentry.type,
      timescale: audio.mdia.mdhd.timescale,
      sample_rate: aentry.desc.getSampleRate ? aentry.desc.getSampleRate() : aentry.desc.samplerate,
      channels: aentry.desc.channel_count,
      edits: editsOf(audio),
    },
  };
}

function audioEntry(bytes, audio) {
  const entries = sampleEntries(bytes, audio);
  const type = entries[0] && entries[0].type;
  if (type !== "mp4a") {
    throw new MediaError("INVALID_FORMAT", `the sound is ${type || "of no known codec"}, not AAC`);
  }
  return { type, desc: audio.mdia.minf.stbl.stsd.entries[0] };
}

/**
 * The class video's sound as an M4A, and the manifest of its picture.
 *
 * The M4A holds the original AAC packets, each as it is, with the audio track's own boxes
 * (timescale, edit list with its priming, decode times, sample groups) copied; only the tables
 * that say where the packets lie are new. Its moov comes first.
 *
 * @param {{size: number, read(offset: number, length: number): Promise<Uint8Array>}} reader
 * @param {{movie?: object}} [given] the file's index already read (readMovie), if at hand
 * @returns {Promise<{parts: Array, size: number, manifest: object, movie: object}>} `parts`:
 *   new bytes ({bytes}) and ranges of the source ({offset, length}), in order (see parts.js);
 *   `movie`: the index read (to be given to assemble, which then reads it no more)
 */
async function extractAudio(reader, { movie: given = null } = {}) {
  const movie = given || (await readMovie(reader));
  const manifest = manifestOf(movie);
  const { isofile, bytes } = movie;
  const audio = trackOf(isofile, "soun");
  const samples = audio.samples;
  if (samples.length === 0) throw new MediaError("NO_AUDIO_TRACK", "the audio track is empty");
  for (const s of samples) {
    if (s.offset + s.size > reader.size) {
      throw new MediaError("INVALID_FORMAT", "the audio track points past the end of the file");
    }
  }
  // Chunks break where the sample description changes (one chunk otherwise).
  const chunks = [];
  for (const s of samples) {
    const last = chunks[chunks.length - 1];
    if (last && last.description === s.description_index + 1) last.samples += 1;
    else chunks.push({ samples: 1, description: s.description_index + 1 });
  }
  const payload = samples.reduce((n, s) => n + s.size, 0);
  const build = (offsets, large) =>
    box(
      "moov",
      rawBox(bytes, isofile.moov.mvhd),
      rebuild(rawBox(bytes, audio), ["mdia", "minf", "stbl"], (kids) => {
        const out = [];
        let placed = false;
        for (const k of kids) {
          if (!OFFSET_TABLES.has(k.type)) out.push(k.bytes);
          else if (!placed) {
            out.push(stsc(chunks), stsz(samples.map((s) => s.size)), chunkOffsets(offsets, large));
            placed = true;
          }
        }
        return out;
      }),
    );
  const ftyp = movie.ftyp;
  const head = mdatHeader(payload);
  const large = ftyp.length + build([0], false).length + head.length + payload > 0xffffffff;
  const sized = build(chunkStarts(chunks, samples, 0), large); // the tables' sizes are fixed
  const moov = build(chunkStarts(chunks, samples, ftyp.length + sized.length + head.length), large);
  const parts = [{ bytes: concat([ftyp, moov, head]) }, ...rangesOf(samples)];
  return { parts, size: ftyp.length + moov.length + head.length + payload, manifest, movie };
}

function chunkStarts(chunks, samples, first) {
  const offsets = [];
  let pos = first;
  let i = 0;
  for (const c of chunks) {
    offsets.push(pos);
    for (let k = 0; k < c.samples; k += 1, i += 1) pos += samples[i].size;
  }
  return offsets;
}

/**
 * The container box `raw` again, with the children of the box at `path` (types, from `raw`
 * down) replaced by `edit([{type, bytes}]) → [bytes]`; everything else copied as it is.
 */
function rebuild(raw, path, edit) {
  const h = boxHeader(raw, 0);
  const kids = children(raw, h.header, raw.length).map((k) => ({
    type: k.type,
    bytes: raw.subarray(k.start, k.end),
  }));
  if (path.length === 0) return box(h.type, ...edit(kids));
  return box(
    h.type,
    ...kids.map((k) => (k.type === path[0] ? rebuild(k.bytes, path.slice(1), edit) : k.bytes)),
  );
}

module.exports = { manifestOf, extractAudio, rebuild };
