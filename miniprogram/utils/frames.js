// Thumbnails of the class video's frames on the phone, for an audio-first job: the frames the
// job asks for while it runs (`frames_request`, keyframes and stretches around the cut's edges). Pictures come
// from WeChat's VideoDecoder (wx.createVideoDecoder: seek, then getFrameData gives RGBA with
// the packet's presentation time in ms); each is matched to its sample by that time, computed
// from the manifest's tables as the file stores them (decode deltas plus composition offsets).

const { encode } = require("./base64.js");
const { THUMB_BYTES, thumbnailOfRgba } = require("./thumbs.js");

const EMPTY_POLLS = 400; // getFrameData answering nothing this many times in a row: the end
const POLL_MS = 5;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Whether this WeChat can decode the picture (base library 2.11.0 and later). */
function canDecode() {
  return typeof wx === "object" && wx !== null && typeof wx.createVideoDecoder === "function";
}

/**
 * Each sample's presentation time in ms, in decode order, on the player's timeline: the edit
 * list's leading empty edits delay it, its media edit's start is time zero.
 */
function presentationMs(video, movieTimescale) {
  let shift = 0;
  for (const [duration, mediaTime] of video.edits || []) {
    if (mediaTime === -1) {
      shift += (duration * 1000) / (movieTimescale || 1000);
    } else {
      shift -= (mediaTime * 1000) / video.timescale;
      break;
    }
  }
  const out = new Float64Array(video.sample_count);
  const offsets = [];
  for (const [count, offset] of video.ctts || []) for (let i = 0; i < count; i += 1) offsets.push(offset);
  let dts = 0;
  let n = 0;
  for (const [count, delta] of video.stts) {
    for (let i = 0; i < count; i += 1, n += 1) {
      out[n] = ((dts + (offsets[n] || 0)) * 1000) / video.timescale + shift;
      dts += delta;
    }
  }
  return out;
}

function keyframeAtOrBefore(sync, index) {
  if (!sync) return index;
  let best = 0;
  for (const key of sync) {
    if (key > index) break;
    best = key;
  }
  return best;
}

/**
 * Base64 of the thumbnails of `samples` (decode-order indices), in that order.
 * @param {string} videoPath the local class video
 * @param {object} manifest the job's video manifest
 * @returns {Promise<string>}
 */
async function thumbnails(videoPath, manifest, samples) {
  const video = manifest.video;
  const times = presentationMs(video, manifest.movie_timescale);
  const half = Math.max(0.5, minimumGap(times) / 2);
  // One pass per group of pictures: seek to its keyframe, read frames until the last one wanted.
  const groups = new Map();
  for (const s of samples) {
    const key = keyframeAtOrBefore(video.sync, s);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(s);
  }
  const got = new Map();
  const decoder = wx.createVideoDecoder();
  try {
    await decoder.start({ source: videoPath, mode: 1 });
    for (const [key, wanted] of [...groups.entries()].sort((a, b) => a[0] - b[0])) {
      const last = Math.max(...wanted.map((s) => times[s]));
      await decoder.seek(times[key]);
      let empty = 0;
      while (wanted.some((s) => !got.has(s)) && empty < EMPTY_POLLS) {
        const frame = decoder.getFrameData();
        if (!frame) {
          empty += 1;
          await sleep(POLL_MS);
          continue;
        }
        empty = 0;
        const match = wanted.find((s) => !got.has(s) && Math.abs(times[s] - frame.pkPts) < half);
        if (match != null) {
          got.set(match, thumbnailOfRgba(frame.data, frame.width, frame.height));
        }
        if (frame.pkPts > last + half * 8) break; // past the group (B-frames come late)
      }
    }
  } finally {
    await decoder.remove();
  }
  const out = new Uint8Array(samples.length * THUMB_BYTES);
  samples.forEach((s, n) => {
    const thumb = got.get(s);
    if (!thumb) throw Object.assign(new Error(`sample ${s} was not decoded`), { code: "DECODE_FAILED" });
    out.set(thumb, n * THUMB_BYTES);
  });
  return encode(out);
}

function minimumGap(times) {
  const sorted = Array.from(times).sort((a, b) => a - b);
  let gap = Infinity;
  for (let i = 1; i < sorted.length; i += 1) gap = Math.min(gap, sorted[i] - sorted[i - 1]);
  return Number.isFinite(gap) ? gap : 40;
}

module.exports = { canDecode, presentationMs, thumbnails };
