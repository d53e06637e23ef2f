// The job page's result as a file on this phone, for the player, the album and sharing. An
// audio-first result is assembled here from the local video, once per job: into a user file
// (kept for the player until release()), or, too large for the mini-program's 200 MB, the whole
// video through WeChat's MediaContainer (a temporary file; not trimmed, and the page says so).
// A server render is downloaded (a temporary file), unless it is over WeChat's 200 MB
// download cap.

const album = require("../../utils/album.js");
const audiofirst = require("../../utils/audiofirst.js");
const container = require("../../utils/container.js");
const { localError } = require("../../utils/errors.js");
const { formatBytes } = require("../../utils/format.js");

const DOWNLOAD_LIMIT_BYTES = 200 * 1024 * 1024; // wx.downloadFile refuses more
const PATHS = {
  phone: "在手机上合成：视频没有上传，只上传了声音。",
  phoneWhole:
    "在手机上合成（未剪辑）：剪好的视频放不进小程序的 200 MB 空间，所以这是整段视频配上干净的音乐，首尾没有剪掉。",
  server: "由服务器合成。",
  server720: "由服务器合成 720p 版本。",
};

class ResultFile {
  /**
   * @param {object} hooks set(data) (the page's setData), local() (the job's video on this
   *   phone, or null), videoUrl() (the server render's link)
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.made = null; // {jobId, promise}
    this.wholeFor = null; // the job whose file is the whole video
  }

  isFor(jobId) {
    return !this.made || this.made.jobId === jobId;
  }

  /** The file of `job`'s result ({path, own, whole}), made once; null when it cannot be. */
  produce(job, onProgress) {
    const result = job && job.result;
    if (!result) return Promise.resolve(null);
    if (!result.assembly) return this.download(result, onProgress);
    if (!this.hooks.local()) {
      this.hooks.set({ offer720: true });
      return Promise.resolve(null);
    }
    if (!this.made || this.made.jobId !== job.id) {
      const made = { jobId: job.id, promise: null };
      made.promise = this.assemble(job, onProgress).then((file) => {
        if (file && this.made === made) this.hooks.set({ localVideo: file.path });
        return file;
      });
      made.promise.catch(() => {
        if (this.made === made) this.made = null; // another tap tries again
      });
      this.made = made;
    }
    return this.made.promise;
  }

  async assemble(job, onProgress) {
    const local = this.hooks.local();
    try {
      const out = await audiofirst.assembleResult(local, job.result.assembly, {
        name: job.id,
        onProgress: (done, total) => onProgress(total ? done / total : 0),
      });
      this.hooks.set({ pathText: PATHS.phone });
      return { path: out.path, own: true };
    } catch (error) {
      if (error.code !== "OUTPUT_TOO_LARGE") throw localError("ASSEMBLE_FAILED", {});
      const size = formatBytes(error.size);
      if (!container.available()) {
        this.hooks.set({
          offer720: true,
          notice: `合成的视频有 ${size}，手机上给小程序的空间（200 MB）放不下，可以改由服务器生成 720p 版本。`,
        });
        return null;
      }
      try {
        const whole = await audiofirst.assembleWhole(job, local, {
          onStage: (stage) =>
            this.hooks.set({
              saveText:
                stage === "variant"
                  ? `剪好的视频有 ${size}，放不进小程序的 200 MB 空间，正在准备不剪辑的完整版本…`
                  : "正在合成完整视频…",
            }),
        });
        this.wholeFor = job.id;
        this.hooks.set({ pathText: PATHS.phoneWhole });
        return { path: whole.path, own: false, whole: true };
      } catch (failure) {
        this.hooks.set({
          offer720: true,
          notice: `合成的视频有 ${size}，手机上放不下，完整版本也没能合成，可以改由服务器生成 720p 版本。`,
        });
        return null;
      }
    }
  }

  async download(result, onProgress) {
    const size = result.output && result.output.size_bytes;
    if (Number(size) > DOWNLOAD_LIMIT_BYTES) {
      this.hooks.set({ offer720: true });
      return null;
    }
    const path = await album.download(this.hooks.videoUrl(), onProgress);
    return { path, own: false };
  }

  /** Delete the file made on this phone (a user file of the 200 MB); the player lets it go. */
  release() {
    const made = this.made;
    this.made = null;
    if (!made) return;
    made.promise
      .then((file) => file && file.own && audiofirst.removeQuietly(file.path))
      .catch(() => {});
    this.hooks.set({ localVideo: "" });
  }
}

module.exports = { DOWNLOAD_LIMIT_BYTES, PATHS, ResultFile };
