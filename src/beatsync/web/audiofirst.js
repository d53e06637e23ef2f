// Audio-first on the page: the class video never leaves the browser. Its sound is re-wrapped
// into an M4A (no re-encoding) and uploaded with the manifest of its picture; the frames the job
// asks for (a few around the cut's edges) are decoded here (WebCodecs) into 96×54 grey
// thumbnails; the result is the service's audio track muxed with the video's own samples, as a
// Blob of File slices.
// See docs/audio-first.md and docs/client-assembly.md.

import { mark } from "./api.js";
import {
  assemble,
  blobReader,
  extractAudio,
  groupBlob,
  partsBlob,
  partsBytes,
  partsSize,
  pictureGroups,
} from "./assemble/index.js";
import { sampleEntries, trackOf } from "./assemble/movie.js";

export const THUMB_WIDTH = 96;
export const THUMB_HEIGHT = 54;
const THUMB_BYTES = THUMB_WIDTH * THUMB_HEIGHT;
const PATH_KEY = "beatsync.path"; // "server" forces the whole-video upload
const DECODER_QUEUE = 8; // samples queued ahead of the decoder: bounds the frames held at once
const SLICE_BATCH = 64; // slices made ahead per task (prepareSlices)

/** Whether this browser was told to upload whole videos (a setting kept in localStorage). */
export function serverPathForced() {
  try {
    return localStorage.getItem(PATH_KEY) === "server";
  } catch {
    return false;
  }
}

/**
 * The class video read for audio-first, or the reason it cannot be (then the page uploads the
 * whole video). Nothing but the file's index is read here, and the audio packets.
 * @param {File} file
 * @returns {Promise<{local: LocalVideo|null, reason: string|null}>}
 */
export async function prepareLocal(file) {
  if (serverPathForced()) return { local: null, reason: "forced" };
  if (typeof VideoDecoder !== "function" || typeof EncodedVideoChunk !== "function") {
    return { local: null, reason: "decoder" };
  }
  const reader = blobReader(file);
  let extracted;
  let movie;
  try {
    extracted = await quietly(() => extractAudio(reader));
    movie = extracted.movie;
  } catch {
    // Not an MP4/MOV, no AAC sound, a fragmented file...: the server reads more formats.
    return { local: null, reason: "format" };
  }
  const trak = trackOf(movie.isofile, "vide");
  const config = decoderConfig(movie, trak);
  if (!config) return { local: null, reason: "decoder" };
  try {
    const support = await VideoDecoder.isConfigSupported(config);
    if (!support.supported) return { local: null, reason: "decoder" };
  } catch {
    return { local: null, reason: "decoder" };
  }
  const base = file.name.replace(/\.[^.]*$/, "") || "class";
  const audio = new File([await soundBytes(extracted.parts, file)], `${base}.m4a`, {
    type: "audio/mp4",
    lastModified: file.lastModified,
  });
  const local = new LocalVideo(file, extracted.manifest, audio, config, trak.samples, movie);
  return { local, reason: null };
}

/**
 * The reference's sound alone when it is an MP4/MOV with AAC (a music video, say), re-wrapped
 * into an M4A without re-encoding: it decodes to the same samples, so the server aligns and
 * builds the clean track from it exactly as from the whole file. Null when the file is anything
 * else or the sound is not smaller than the file (then the whole file is sent).
 * @param {File} file
 * @returns {Promise<File|null>}
 */
export async function referenceSound(file) {
  if (serverPathForced()) return null;
  let extracted;
  const reader = blobReader(file);
  try {
    extracted = await quietly(() => extractAudio(reader));
  } catch {
    return null;
  }
  if (partsSize(extracted.parts) >= file.size) return null;
  const base = file.name.replace(/\.[^.]*$/, "") || "reference";
  const bytes = await soundBytes(extracted.parts, file);
  return new File([bytes], `${base}.m4a`, { type: "audio/mp4", lastModified: file.lastModified });
}

/**
 * The re-wrapped sound's bytes, read once into memory (a few MB) to be hashed and uploaded from
 * there: in a few large reads of the file that step over the picture between packets when it is
 * small (a slice per packet range costs the browser a round trip each, and files interleaved
 * packet by packet have thousands).
 */
async function soundBytes(parts, file) {
  return partsBytes(parts, blobReader(file));
}

/** The decoder configuration of the video track (its codec string and avcC/hvcC), or null. */
function decoderConfig(movie, trak) {
  const entry = trak.mdia.minf.stbl.stsd.entries[0];
  const codec = typeof entry.getCodec === "function" ? entry.getCodec() : null;
  if (!codec) return null;
  const raw = sampleEntries(movie.bytes, trak)[0];
  // The codec configuration box inside the sample entry (78 bytes of visual fields first).
  const description = childPayload(raw.bytes, 8 + 78, ["avcC", "hvcC", "av1C", "vpcC"]);
  const config = {
    codec,
    codedWidth: entry.width,
    codedHeight: entry.height,
    optimizeForLatency: true,
  };
  if (description) config.description = description;
  else if (/^(avc|hvc|hev)/.test(raw.type)) return null;
  return config;
}

function childPayload(bytes, start, types) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = start;
  while (pos + 8 <= bytes.length) {
    const size = view.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    if (size < 8 || pos + size > bytes.length) return null;
    if (types.includes(type)) return bytes.slice(pos + 8, pos + size);
    pos += size;
  }
  return null;
}

export class LocalVideo {
  constructor(file, manifest, audio, config, samples, movie = null) {
    this.file = file;
    this.movie = movie; // the file's index, read once: every take is assembled from it
    this.manifest = manifest;
    this.audio = audio;
    this.config = config;
    this.samples = samples;
    this.reader = blobReader(file);
    this.slices = new Map();
    this.sliced = false;
    this.ahead = null; // a track fetched before it is asked for: {file, bytes, controller}
  }

  /**
   * Make the Blobs of the picture's chunks ahead, while the job runs, a few per task so the page
   * stays responsive: the assembly then finds them made (pictureGroups; a copy's chunks are the
   * file's own). A slice costs the browser a round trip, and a file interleaved frame by frame
   * has a slice per frame: thousands that would otherwise be made once the answer has come.
   */
  async prepareSlices() {
    if (this.sliced || !this.movie) return;
    this.sliced = true;
    const groups = pictureGroups(trackOf(this.movie.isofile, "vide"));
    let made = 0;
    for (const group of groups) {
      groupBlob(this.file, group, this.slices);
      made += group.length;
      if (made >= SLICE_BATCH) {
        made = 0;
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    }
  }

  /** Base64 thumbnails of `samples` (decode-order indices), in that order. */
  async frameThumbnails(samples) {
    const wanted = new Set(samples);
    // One run per group of pictures: from its keyframe to the last wanted sample in it, so
    // every reference a wanted picture needs is decoded before it.
    const ends = new Map();
    for (const s of wanted) {
      const key = this.#keyframeAtOrBefore(s);
      ends.set(key, Math.max(ends.get(key) ?? s, s));
    }
    const runs = [...ends.entries()]
      .sort((x, y) => x[0] - y[0])
      .map(([key, end]) => Array.from({ length: end - key + 1 }, (_, i) => key + i));
    const got = await this.#decode(runs, wanted);
    return toBase64(joinThumbs(samples, got));
  }

  #keyframeAtOrBefore(index) {
    for (let i = index; i > 0; i -= 1) if (this.samples[i].is_sync) return i;
    return 0;
  }

  /**
   * Decode each run of sample indices (each starting on a keyframe) with a fresh start, and
   * keep the thumbnails of the `wanted` ones. A frame's timestamp is its sample's index, so
   * pictures come back labelled whatever order the decoder shows them in.
   */
  async #decode(runs, wanted) {
    const got = new Map();
    const pending = [];
    let failure = null;
    const decoder = new VideoDecoder({
      output: (frame) => {
        const index = frame.timestamp;
        if (!wanted.has(index) || got.has(index)) {
          frame.close();
          return;
        }
        got.set(index, null);
        pending.push(
          thumbnail(frame)
            .then((thumb) => got.set(index, thumb))
            .catch((error) => {
              failure = error;
            })
            .finally(() => frame.close()),
        );
      },
      error: (error) => {
        failure = error;
      },
    });
    try {
      decoder.configure(this.config);
      for (const run of runs) {
        for (const [position, index] of run.entries()) {
          const sample = this.samples[index];
          const data = await this.reader.read(sample.offset, sample.size);
          while (decoder.decodeQueueSize > DECODER_QUEUE) await nextDequeue(decoder);
          if (failure) throw failure;
          decoder.decode(
            new EncodedVideoChunk({
              type: position === 0 || sample.is_sync ? "key" : "delta",
              timestamp: index,
              duration: 1,
              data,
            }),
          );
        }
        // Flushing between runs: the next one starts from its own keyframe.
        await decoder.flush();
        if (failure) throw failure;
      }
    } finally {
      await Promise.all(pending);
      if (decoder.state !== "closed") decoder.close();
    }
    if (failure) throw failure;
    return got;
  }

  /**
   * Fetch the audio track of `assembly` ahead of its assembly (a nudge rendered before it was
   * applied). Only the latest is kept; `forget()` drops it and stops its download.
   */
  prefetch(assembly) {
    const file = fileOf(assembly.audio_url);
    if (this.ahead?.file === file) return;
    this.forget();
    const controller = new AbortController();
    const bytes = fetchTrack(assembly.audio_url, controller.signal);
    bytes.catch(() => {}); // an abandoned or failed prefetch is fetched again when needed
    this.ahead = { file, bytes, controller };
  }

  forget() {
    this.ahead?.controller.abort();
    this.ahead = null;
  }

  /** The result MP4 from the service's audio track and `assembly` answer. */
  async assemble(assembly, signal) {
    let audio = null;
    const ahead = this.ahead;
    if (ahead?.file === fileOf(assembly.audio_url)) {
      // Taken before the wait: a nudge fetched ahead meanwhile must neither abort it nor be
      // dropped when it arrives.
      this.ahead = null;
      audio = await ahead.bytes.catch(() => null);
    }
    audio ??= await fetchTrack(assembly.audio_url, signal);
    mark("audio-fetched");
    const out = await quietly(() => assemble(this.reader, audio, assembly, { movie: this.movie }));
    // The picture's slices are kept: a nudge changes only the sound's bytes.
    const blob = partsBlob(out.parts, this.file, "video/mp4", this.slices);
    return { blob, audioBytes: audio.length };
  }
}

/** A result's file without its signature: each answer signs it anew, with a later expiry. */
function fileOf(url) {
  return url.split("?", 1)[0];
}

async function fetchTrack(url, signal) {
  const response = await fetch(url, { signal, credentials: "same-origin" });
  if (!response.ok) throw new Error(`the audio track answered ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

let quietDepth = 0;
let loudError = null;

/**
 * Run `work` with mp4box.js's box-parser messages kept off the console: it reports QuickTime
 * `udta` entries it does not know (©swr, ©too...) as errors although the file is fine; a file
 * it truly cannot read fails with a MediaError instead.
 */
async function quietly(work) {
  if (quietDepth === 0) {
    loudError = console.error;
    console.error = (...args) => {
      if (args[1] !== "[BoxParser]") loudError(...args);
    };
  }
  quietDepth += 1;
  try {
    return await work();
  } finally {
    quietDepth -= 1;
    if (quietDepth === 0) console.error = loudError;
  }
}

function nextDequeue(decoder) {
  return new Promise((resolve) => {
    decoder.addEventListener("dequeue", resolve, { once: true });
  });
}

function joinThumbs(order, got) {
  const out = new Uint8Array(order.length * THUMB_BYTES);
  order.forEach((index, n) => {
    const thumb = got.get(index);
    if (!thumb) throw new Error(`sample ${index} was not decoded`);
    out.set(thumb, n * THUMB_BYTES);
  });
  return out;
}

/**
 * A decoded frame as the service's thumbnail: the visible picture before rotation, squeezed to
 * 96×54 by area averaging (each pixel the mean of its block, fractional edges weighted), grey
 * full-range luma. Limited-range luma (16–235) is stretched to 0–255 as FFmpeg's `gray` does.
 */
export async function thumbnail(frame) {
  const rect = frame.visibleRect;
  const { width, height } = rect;
  if (frame.format && /^(I4|NV12)/.test(frame.format)) {
    // Planar or semi-planar YUV: the first plane is the luma, copied as decoded.
    const buffer = new Uint8Array(frame.allocationSize({ rect }));
    const [luma] = await frame.copyTo(buffer, { rect });
    const full = Boolean(frame.colorSpace?.fullRange);
    return areaGrey(buffer.subarray(luma.offset), luma.stride, width, height, full);
  }
  // Any other layout: through a canvas in RGB (already full range).
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(frame, 0, 0);
  const rgba = context.getImageData(0, 0, width, height).data;
  const luma = new Uint8Array(width * height);
  for (let i = 0, p = 0; i < luma.length; i += 1, p += 4) {
    luma[i] = Math.round(0.299 * rgba[p] + 0.587 * rgba[p + 1] + 0.114 * rgba[p + 2]);
  }
  return areaGrey(luma, width, width, height, true);
}

/** Area-average a luma plane to 96×54 grey bytes. */
export function areaGrey(plane, stride, width, height, fullRange) {
  const out = new Uint8Array(THUMB_BYTES);
  const xs = spans(width, THUMB_WIDTH);
  const ys = spans(height, THUMB_HEIGHT);
  const rows = new Float64Array(THUMB_WIDTH);
  const area = (width / THUMB_WIDTH) * (height / THUMB_HEIGHT);
  for (let ty = 0; ty < THUMB_HEIGHT; ty += 1) {
    rows.fill(0);
    for (let y = ys.first[ty]; y <= ys.last[ty]; y += 1) {
      const wy = y === ys.first[ty] ? ys.firstWeight[ty] : y === ys.last[ty] ? ys.lastWeight[ty] : 1;
      const line = y * stride;
      for (let tx = 0; tx < THUMB_WIDTH; tx += 1) {
        const x0 = xs.first[tx];
        const x1 = xs.last[tx];
        let sum = plane[line + x0] * xs.firstWeight[tx];
        if (x1 > x0) {
          for (let x = x0 + 1; x < x1; x += 1) sum += plane[line + x];
          sum += plane[line + x1] * xs.lastWeight[tx];
        }
        rows[tx] += sum * wy;
      }
    }
    for (let tx = 0; tx < THUMB_WIDTH; tx += 1) {
      let value = rows[tx] / area;
      if (!fullRange) value = ((value - 16) * 255) / 219;
      out[ty * THUMB_WIDTH + tx] = Math.max(0, Math.min(255, Math.round(value)));
    }
  }
  return out;
}

/**
 * For each of `n` output cells over `size` pixels: its first and last pixel and the part of
 * each it covers (the pixels between are covered whole).
 */
function spans(size, n) {
  const step = size / n;
  const first = new Int32Array(n);
  const last = new Int32Array(n);
  const firstWeight = new Float64Array(n);
  const lastWeight = new Float64Array(n);
  for (let i = 0; i < n; i += 1) {
    const start = i * step;
    const end = Math.min(size, start + step);
    // A cell edge a rounding error past a pixel boundary does not reach into the next pixel.
    const p0 = Math.floor(start + 1e-9);
    const p1 = Math.max(p0, Math.ceil(end - 1e-9) - 1);
    first[i] = p0;
    last[i] = p1;
    if (p0 === p1) {
      firstWeight[i] = end - start;
    } else {
      firstWeight[i] = p0 + 1 - start;
      lastWeight[i] = end - p1;
    }
  }
  return { first, last, firstWeight, lastWeight };
}

function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}
