// Audio-first on the phone: the class video stays on it. Its sound is re-wrapped into an M4A in
// the mini-program's own files (no re-encoding) and uploaded with the manifest of its picture;
// the frames the job asks for are decoded here into thumbnails; the result is
// assembled here from the video's own samples and the service's audio track, into a user file
// (stream-copied a piece at a time), saved to the album or shared, and deleted.
//
// WeChat gives a mini-program's own files (wx.env.USER_DATA_PATH) 200 MB in all; temporary
// files from its APIs are not counted but cannot be written. So the assembled file must fit
// in what is free of the 200 MB. When it cannot, WeChat's MediaContainer puts the whole class
// video and a clean sound placed for the whole video (the job rendered again without a cut)
// into a temporary file: any size, but not trimmed. Without MediaContainer the job is rendered
// by the service at 720p instead (the video is uploaded then). The page says which path ran.

const api = require("./api.js");
const { call: wxCall } = require("./wxp.js");
const { assembleToFile, assembledFile, extractAudioToFile } = require("./assemble-wx.js");
const { canDecode, thumbnails } = require("./frames.js");
const { download } = require("./album.js");
const container = require("./container.js");
const { localError } = require("./errors.js");

const QUOTA_BYTES = 200 * 1024 * 1024;
const DIR = "beatsync";
const LOCAL_KEY = "beatsync.local.";
const KEEP_MS = 3 * 24 * 3600 * 1000;
const VARIANT_WAIT_MS = 10 * 60 * 1000;
const FINISHED = ["succeeded", "failed", "canceled"];

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function fs() {
  return wx.getFileSystemManager();
}

function fsCall(name, options) {
  return new Promise((resolve, reject) =>
    fs()[name]({ ...options, success: resolve, fail: reject }),
  );
}

function userDir() {
  return `${wx.env.USER_DATA_PATH}/${DIR}`;
}

async function ensureDir() {
  try {
    await fsCall("mkdir", { dirPath: userDir(), recursive: true });
  } catch (error) {
    // It exists already.
  }
}

/** Bytes of the mini-program's own files now (all of USER_DATA_PATH counts). */
async function userBytes() {
  try {
    const { stats } = await fsCall("stat", { path: wx.env.USER_DATA_PATH, recursive: true });
    const list = Array.isArray(stats) ? stats : Object.values(stats || {});
    return list.reduce((sum, entry) => {
      const st = entry.stats || entry;
      const isFile = typeof st.isFile === "function" ? st.isFile() : true;
      return sum + (isFile ? Number(st.size) || 0 : 0);
    }, 0);
  } catch (error) {
    return 0;
  }
}

async function removeQuietly(filePath) {
  if (!filePath) return;
  try {
    await fsCall("unlink", { filePath });
  } catch (error) {
    // Gone already.
  }
}

/**
 * Delete what an earlier run left in the mini-program's scratch folder (an M4A, an assembled
 * result: a crash or a kill between writing and deleting leaves them, counted against the
 * 200 MB). Only that folder is touched: other user files are not this code's. Called at launch,
 * before anything is written there.
 * @returns {Promise<number>} files deleted
 */
async function cleanScratch() {
  let names;
  try {
    ({ files: names } = await fsCall("readdir", { dirPath: userDir() }));
  } catch (error) {
    return 0; // No folder yet.
  }
  let deleted = 0;
  for (const name of names || []) {
    try {
      await fsCall("unlink", { filePath: `${userDir()}/${name}` });
      deleted += 1;
    } catch (error) {
      // Not a file, or gone already.
    }
  }
  return deleted;
}

let screenHolders = 0;

/** Keep the screen on while `work` runs (uploads and an assembly take minutes; both at once). */
async function keepingScreenOn(work) {
  screenHolders += 1;
  if (screenHolders === 1) wxCall("setKeepScreenOn", { keepScreenOn: true }).catch(() => {});
  try {
    return await work();
  } finally {
    screenHolders -= 1;
    if (screenHolders === 0) wxCall("setKeepScreenOn", { keepScreenOn: false }).catch(() => {});
  }
}

/**
 * The class video's sound, written as an M4A among the mini-program's files, and the manifest
 * of its picture; or why it cannot go audio-first ("format": not an MP4/MOV with AAC sound,
 * "decoder": no VideoDecoder in this WeChat, "storage": no room for the sound).
 * @param {{path: string, name?: string}} video
 * @returns {Promise<{local: object|null, reason: string|null}>}
 */
async function prepare(video) {
  if (!canDecode()) return { local: null, reason: "decoder" };
  await ensureDir();
  const base = String(video.name || "class").replace(/\.[^.]*$/, "") || "class";
  const audioPath = `${userDir()}/${Date.now()}-${base}.m4a`;
  let manifest;
  try {
    manifest = await extractAudioToFile(video.path, audioPath);
  } catch (error) {
    await removeQuietly(audioPath);
    return { local: null, reason: error && error.code === "PHONE_STORAGE_FULL" ? "storage" : "format" };
  }
  const { stats } = await fsCall("stat", { path: audioPath });
  return {
    local: {
      videoPath: video.path,
      videoSize: video.size,
      manifest,
      audio: { path: audioPath, size: stats.size, name: `${base}.m4a`, type: "audio" },
    },
    reason: null,
  };
}

/**
 * The job's audio-first fields: the manifest alone. No keyframes go up front (decoding every
 * keyframe of a long video takes a phone minutes); the run asks for the few pictures it reads.
 */
function jobFields(local) {
  return { video_manifest: local.manifest };
}

/** Remember the local video of an audio-first job (the job page assembles from it). */
function remember(jobId, local) {
  try {
    wx.setStorageSync(LOCAL_KEY + jobId, {
      videoPath: local.videoPath,
      videoSize: local.videoSize,
      manifest: local.manifest,
      at: Date.now(),
    });
  } catch (error) {
    // Without storage the job's result can still be rendered by the service.
  }
}

function recall(jobId) {
  try {
    const saved = wx.getStorageSync(LOCAL_KEY + jobId);
    if (saved && saved.videoPath && Date.now() - saved.at < KEEP_MS) return saved;
  } catch (error) {
    // Unreadable: treated as unknown.
  }
  return null;
}

/** Answer the job's frames request from the local video, once per request. */
async function answerFrames(job, local, answered) {
  const request = job.frames_request;
  if (!request || !job.links || !job.links.frames || answered.has(request.id)) return false;
  answered.add(request.id);
  const data = await thumbnails(local.videoPath, local.manifest, request.samples);
  await api.answerFrames(job.links.frames, request.id, data);
  return true;
}

/**
 * The result assembled on the phone into a user file: the picture stream-copied from the local
 * video, the service's clean audio track. Refuses (code OUTPUT_TOO_LARGE) before writing when
 * it cannot fit in what is free of the 200 MB.
 * @returns {Promise<{path: string, size: number, frames: number}>}
 */
async function assembleResult(local, assembly, options) {
  const opts = options || {};
  return keepingScreenOn(async () => {
    await ensureDir();
    const audioPath = await download(api.absolute(assembly.audio_url));
    const outPath = `${userDir()}/${opts.name || `result-${Date.now()}`}.mp4`;
    const free = QUOTA_BYTES - (await userBytes());
    try {
      const facts = await assembleToFile(local.videoPath, audioPath, assembly, outPath, {
        maxBytes: free,
        onProgress: opts.onProgress,
      });
      return { path: outPath, size: facts.size, frames: facts.frames };
    } catch (error) {
      await removeQuietly(outPath);
      if (error && error.code === "PHONE_STORAGE_FULL") error.code = "OUTPUT_TOO_LARGE";
      throw error;
    }
  });
}

/**
 * The kept span of the class video as a file for the service's render: the result assembled
 * from the local video (the picture stream-copied from the keyframe at or before the cut to its
 * end) with the service's clean audio track, made a chunk at a time as it is sent and never
 * written, so neither the 200 MB of user files nor the video's own size stand in the way: a
 * 1 GB class video sends only what the result keeps. The sound already carries the chosen
 * candidate and nudge.
 * @returns {Promise<{size: number, name: string, type: string, read: Function}>}
 */
async function keptSpan(local, assembly, name) {
  const audioPath = await download(api.absolute(assembly.audio_url));
  const file = await assembledFile(local.videoPath, audioPath, assembly);
  return { ...file, name: `${name || "class"}.mp4`, type: "video" };
}

/**
 * The job again without a cut (an audio-first variant: the sound placed for the whole video),
 * waited for, its frame requests answered from the local video.
 */
async function untrimmedVariant(job, local, options) {
  const opts = options || {};
  let variant =
    job.options && job.options.trim === false ? job : await api.render(job.id, { trim: false });
  remember(variant.id, local);
  const answered = new Set();
  const deadline = Date.now() + VARIANT_WAIT_MS;
  while (FINISHED.indexOf(variant.status) < 0) {
    if (Date.now() > deadline) throw localError("ASSEMBLE_FAILED", {});
    if (variant.frames_request) await answerFrames(variant, local, answered).catch(() => false);
    await sleep(opts.pollMs || 1000);
    variant = await api.job(variant.id);
  }
  const assembly = variant.status === "succeeded" && variant.result && variant.result.assembly;
  if (!assembly) throw localError("ASSEMBLE_FAILED", {});
  return variant;
}

/**
 * The result as the whole class video with the clean sound, written by MediaContainer to a
 * temporary file (not counted against the 200 MB): for a result too large for the user files.
 * Not trimmed: MediaContainer copies whole tracks only.
 * @param {object} job the finished audio-first job
 * @param {object} [options] onStage(text), pollMs, containerTimeoutMs (see container.mux)
 * @returns {Promise<{path: string, jobId: string}>} the temporary file, the variant it is of
 */
async function assembleWhole(job, local, options) {
  const opts = options || {};
  return keepingScreenOn(async () => {
    if (opts.onStage) opts.onStage("variant");
    const variant = await untrimmedVariant(job, local, opts);
    const assembly = variant.result.assembly;
    const whole =
      assembly.first_sample === 0 &&
      assembly.end_sample === local.manifest.video.sample_count &&
      !(assembly.excluded_samples || []).length;
    // A copy of part of the track would need a start sample MediaContainer cannot take.
    if (!whole) throw localError("ASSEMBLE_FAILED", {});
    if (opts.onStage) opts.onStage("export");
    const audioPath = await download(api.absolute(assembly.audio_url));
    const path = await container.mux(local.videoPath, audioPath, {
      videoBytes: local.videoSize,
      timeoutMs: opts.containerTimeoutMs,
    });
    return { path, jobId: variant.id };
  });
}

module.exports = {
  QUOTA_BYTES,
  assembleWhole,
  answerFrames,
  assembleResult,
  cleanScratch,
  jobFields,
  keepingScreenOn,
  keptSpan,
  prepare,
  recall,
  remember,
  removeQuietly,
  userBytes,
};
