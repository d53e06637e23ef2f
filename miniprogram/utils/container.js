// WeChat's MediaContainer (wx.createMediaContainer): the class video's picture track and the
// clean sound's track put together into one file by WeChat itself. What it writes is a
// temporary file, which does not count against the mini-program's 200 MB of its own files, so
// it serves a result of any size. It cannot start a track at a given sample or place one at a
// given time (a MediaTrack has only its kind, duration and volume), so the picture is the whole
// video, and the sound must be placed for the whole video too: the job rendered again without
// a cut. The file is therefore not trimmed, and the page says so.

/** Whether this WeChat has MediaContainer (base library 2.9.0). */
function available() {
  return typeof wx !== "undefined" && typeof wx.createMediaContainer === "function";
}

// A MediaContainer that never answers (some WeChat builds drop an export's callbacks) must not
// hold the page for ever: past this long the file is given up and the page offers the service's
// render instead. Remuxing is file I/O, well over 10 MB a second on a phone, so the allowance
// grows with the video: 1 GB gets a little over two minutes.
const BASE_WAIT_MS = 30 * 1000;
const WAIT_MS_PER_MB = 100;

function failure(what, result) {
  const error = new Error(`${what} failed: ${result && result.errMsg}`);
  error.code = "CONTAINER_FAILED";
  error.errno = result && result.errno;
  return error;
}

/** How long a mux of a `bytes`-long video may take before it is given up (ms). */
function waitMs(bytes) {
  return BASE_WAIT_MS + Math.ceil((Number(bytes) || 0) / (1024 * 1024)) * WAIT_MS_PER_MB;
}

function extract(container, source) {
  return new Promise((resolve, reject) =>
    container.extractDataSource({
      source,
      success: (result) => resolve((result && result.tracks) || []),
      fail: (result) => reject(failure("extractDataSource", result)),
    }),
  );
}

async function tracksInto(container, videoPath, audioPath) {
  const picture = (await extract(container, videoPath)).find((t) => t.kind === "video");
  const sound = (await extract(container, audioPath)).find((t) => t.kind === "audio");
  if (!picture || !sound) throw failure("extractDataSource", { errMsg: "a track is missing" });
  container.addTrack(picture);
  container.addTrack(sound);
  const result = await new Promise((resolve, reject) =>
    container.export({ success: resolve, fail: (r) => reject(failure("export", r)) }),
  );
  if (!result || !result.tempFilePath) throw failure("export", { errMsg: "no file" });
  return result.tempFilePath;
}

/**
 * The picture track of `videoPath` and the sound track of `audioPath` in one file.
 * @param {object} [options] videoBytes (the video's size: how long to wait, see waitMs), or
 *   timeoutMs; a container that has not answered by then fails with CONTAINER_FAILED
 *   (`timedOut` set) and is destroyed, and a late answer is ignored
 * @returns {Promise<string>} the exported temporary file's path
 */
async function mux(videoPath, audioPath, options) {
  const opts = options || {};
  const limit = opts.timeoutMs || waitMs(opts.videoBytes);
  const container = wx.createMediaContainer();
  let timer = null;
  const watchdog = new Promise((resolve, reject) => {
    timer = setTimeout(() => {
      const error = failure("export", { errMsg: `no answer within ${Math.round(limit / 1000)} s` });
      error.timedOut = true;
      reject(error);
    }, limit);
  });
  try {
    return await Promise.race([tracksInto(container, videoPath, audioPath), watchdog]);
  } finally {
    clearTimeout(timer);
    container.destroy();
  }
}

module.exports = { available, mux, waitMs };
