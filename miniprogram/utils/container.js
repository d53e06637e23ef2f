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

function failure(what, result) {
  const error = new Error(`${what} failed: ${result && result.errMsg}`);
  error.code = "CONTAINER_FAILED";
  error.errno = result && result.errno;
  return error;
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

/**
 * The picture track of `videoPath` and the sound track of `audioPath` in one file.
 * @returns {Promise<string>} the exported temporary file's path
 */
async function mux(videoPath, audioPath) {
  const container = wx.createMediaContainer();
  try {
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
  } finally {
    container.destroy();
  }
}

module.exports = { available, mux };
