// Reading a movie's index without reading its media: the top-level boxes are found from their
// headers, only `ftyp` and `moov` are read, and mp4box.js parses them into sample tables.

import { createFile, Log, MP4BoxBuffer } from "../vendor/mp4box/mp4box.all.mjs";
import { MediaError, boxHeader, children, concat } from "./boxes.js";

const MAX_INDEX_BYTES = 256 * 1024 * 1024; // a moov past this is no phone's

let quiet = false;

/**
 * The top-level boxes of the file behind `reader`, from their headers alone.
 * @returns {Promise<Array<{type: string, start: number, size: number}>>}
 */
export async function topLevelBoxes(reader) {
  const out = [];
  let pos = 0;
  while (pos + 8 <= reader.size) {
    const head = await reader.read(pos, Math.min(16, reader.size - pos));
    const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
    const type = String.fromCharCode(...head.subarray(4, 8));
    let size = view.getUint32(0);
    if (size === 1 && head.length === 16) size = view.getUint32(8) * 2 ** 32 + view.getUint32(12);
    else if (size === 0) size = reader.size - pos; // "to the end of the file"
    if (!/^[\x20-\x7e]{4}$/.test(type) || size < 8) {
      throw new MediaError("INVALID_FORMAT", `no MP4 box at byte ${pos}`);
    }
    if (pos + size > reader.size) {
      // A recording cut short (the phone died) still has its index if it came first.
      if (type !== "mdat") {
        throw new MediaError("INVALID_FORMAT", `the ${type} box at byte ${pos} is cut short`);
      }
      size = reader.size - pos;
    }
    out.push({ type, start: pos, size });
    pos += size;
  }
  return out;
}

/**
 * The movie's index: `ftyp` and `moov` read from the file and parsed by mp4box.js.
 * @returns {Promise<{bytes: Uint8Array, isofile: object, ftyp: Uint8Array, brand: string}>}
 *   `bytes` is ftyp + moov as parsed (box positions in `isofile` point into it).
 */
export async function readMovie(reader) {
  const boxes = await topLevelBoxes(reader);
  const ftypBox = boxes.find((b) => b.type === "ftyp");
  const moovBox = boxes.find((b) => b.type === "moov");
  if (!moovBox) throw new MediaError("INVALID_FORMAT", "the file has no movie index (moov)");
  if (boxes.some((b) => b.type === "moof")) {
    throw new MediaError("INVALID_FORMAT", "fragmented MP4 is not supported");
  }
  if (moovBox.size > MAX_INDEX_BYTES) {
    throw new MediaError("RESOURCE_LIMIT", `the movie index is ${moovBox.size} bytes`);
  }
  const ftyp = ftypBox ? await reader.read(ftypBox.start, ftypBox.size) : defaultFtyp();
  const moov = await reader.read(moovBox.start, moovBox.size);
  return { ...parseIndex(concat([ftyp, moov])), ftyp };
}

/** Parse ftyp + moov bytes (positions in the result point into `bytes`). */
export function parseIndex(bytes) {
  if (!quiet) {
    Log.setLogLevel(Log.error);
    quiet = true;
  }
  const isofile = createFile();
  let failure = null;
  isofile.onError = (e) => {
    failure = e;
  };
  const copy = new Uint8Array(bytes); // mp4box keeps the buffer: give it one of its own
  isofile.appendBuffer(MP4BoxBuffer.fromArrayBuffer(copy.buffer, 0), true);
  if (failure || !isofile.moov) {
    throw new MediaError(
      "INVALID_FORMAT",
      `the movie index cannot be read${failure ? `: ${failure}` : ""}`,
    );
  }
  if (isofile.moov.mvex) throw new MediaError("INVALID_FORMAT", "fragmented MP4 is not supported");
  const brand = isofile.ftyp ? isofile.ftyp.major_brand : "isom";
  return { bytes: copy, isofile, brand };
}

function defaultFtyp() {
  // A QuickTime file may start without ftyp; mp4box wants one to describe the file.
  return Uint8Array.from([
    0, 0, 0, 20, 102, 116, 121, 112, 113, 116, 32, 32, 0, 0, 2, 0, 113, 116, 32, 32,
  ]);
}

/** The raw bytes of a box mp4box parsed from `bytes`. */
export function rawBox(bytes, parsed) {
  return bytes.subarray(parsed.start, parsed.start + parsed.size);
}

/** The first track with handler `kind` ("vide", "soun"), or null. */
export function trackOf(isofile, kind) {
  return (
    isofile.moov.traks.find((t) => t.mdia && t.mdia.hdlr && t.mdia.hdlr.handler === kind) || null
  );
}

/** The edit list as [[segment_duration, media_time, rate], ...], or null without one. */
export function editsOf(trak) {
  const elst = trak.edts && trak.edts.elst;
  if (!elst || !elst.entries || elst.entries.length === 0) return null;
  return elst.entries.map((e) => [
    e.segment_duration,
    e.media_time,
    e.media_rate_integer + e.media_rate_fraction / 65536,
  ]);
}

/**
 * Display rotation (degrees counter-clockwise, 0/90/180/270) of a track header's matrix, as
 * FFmpeg's av_display_rotation_get reads it (and so PyAV and the service's probe).
 */
export function rotationOf(matrix) {
  const [a, b, , c, d] = Array.from(matrix);
  const s0 = Math.hypot(a, c);
  const s1 = Math.hypot(b, d);
  if (s0 === 0 || s1 === 0) return 0;
  const degrees = -Math.atan2(b / s1, a / s0) * (180 / Math.PI);
  return ((Math.round(degrees) % 360) + 360) % 360;
}

/** The sample entries of a track's stsd, with their raw bytes. */
export function sampleEntries(bytes, trak) {
  const stsd = trak.mdia.minf.stbl.stsd;
  const raw = rawBox(bytes, stsd);
  // stsd: header, version/flags (4), entry count (4), then the entries as boxes.
  const start = boxHeader(raw, 0).header + 8;
  return children(raw, start, raw.length).map((c) => ({
    type: c.type,
    bytes: raw.subarray(c.start, c.end),
  }));
}
