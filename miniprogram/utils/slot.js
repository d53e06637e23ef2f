// One of the two files: choose it, check it against the limits, then send it — instantly when
// the server already has the same bytes (sha256, for files small enough to hash on a phone),
// else over tus — and wait until the server has probed it. The index page shows `view()`;
// the end-to-end test drives the same object with a real network underneath.

const config = require("../config.js");
const api = require("./api.js");
const audiofirst = require("./audiofirst.js");
const background = require("./background.js");
const { ApiError, describe } = require("./errors.js");
const { hashFile } = require("./files.js");
const { formatBytes, formatDuration, formatPercent, formatSpeed } = require("./format.js");
const { checkFile, currentLimits, mediaKind } = require("./limits.js");
const { pickFile } = require("./pick.js");
const { TusUpload } = require("./tus.js");

const TITLES = { dance: "课堂视频", bgm: "参考音乐或视频" };
const HINTS = {
  dance: "课堂上用手机拍的视频，现场声音差也没关系。",
  bgm: "同一首歌的干净录音：音乐视频、练习音轨或音频文件。",
};
// Why the whole class video is uploaded instead of its sound.
const SERVER_REASONS = {
  decoder: "这个微信版本不能在手机上读取视频画面，将上传整个视频。",
  format: "这种视频格式不能在手机上处理，将上传整个视频。",
  storage: "手机上给小程序的存储空间不够，将上传整个视频。",
  chosen: "将上传整个视频，由服务器合成。",
};
const CHECK_DEADLINE_MS = 180 * 1000;
const SPEED_WINDOW_MS = 5000;
const BUSY = ["hashing", "connecting", "uploading", "retrying", "verifying"];

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class UploadSlot {
  /**
   * @param {"dance"|"bgm"} kind
   * @param {object} [options] onChange(view), chunkBytes, minChunkBytes, maxChunkBytes,
   *   hashLimitBytes, retryDelays (ms), audioFirst (default true: a class video that the
   *   phone can read sends only its sound)
   */
  constructor(kind, options) {
    this.kind = kind;
    this.options = options || {};
    this.onChange = this.options.onChange || (() => {});
    this.generation = 0;
    this.unsubscribe = background.subscribe((event) => {
      if (event === "hide") this.pause();
      else if (event === "online") this.online();
      else this.resume();
    });
    this.clear();
  }

  /** Forget the file and whatever was under way. */
  clear() {
    this.generation += 1;
    if (this.tus) this.tus.pause();
    this.tus = null;
    if (this.local) audiofirst.removeQuietly(this.local.audio.path);
    this.local = null;
    this.video = null;
    this.pathNote = "";
    this.file = null;
    this.state = "empty";
    this.status = "";
    this.error = null;
    this.upload = null;
    this.sha256 = null;
    this.instant = false;
    this.sent = 0;
    this.samples = [];
    this.speed = null;
    this.paused = false;
    this.emit();
  }

  destroy() {
    this.unsubscribe();
    this.clear();
  }

  get ready() {
    return this.state === "ready" && Boolean(this.upload && this.upload.id);
  }

  get uploadId() {
    return this.upload ? this.upload.id : null;
  }

  get busy() {
    return BUSY.indexOf(this.state) >= 0;
  }

  /** Choose from "album" or "chat" and send it; false when the user closed the picker. */
  async pick(source) {
    let file;
    try {
      file = await pickFile(this.kind, source);
    } catch (error) {
      this.clear();
      this.fail(error);
      return false;
    }
    if (!file) return false;
    await this.use(file);
    return true;
  }

  /** Check `file` ({path, size, name, type, duration}) and send it. */
  async use(file, options) {
    this.clear();
    const generation = this.generation;
    this.file = file;
    this.video = file;
    this.set("checking", "正在检查文件…");
    const limits = await currentLimits();
    if (generation !== this.generation) return;
    const wholeVideo = Boolean(options && options.wholeVideo);
    if (this.kind === "dance" && mediaKind(file) === "video") {
      if (this.options.audioFirst === false || wholeVideo) {
        this.pathNote = SERVER_REASONS.chosen;
      } else {
        this.set("checking", "正在读取视频里的声音…");
        const { local, reason } = await audiofirst.prepare(file);
        if (generation !== this.generation) {
          if (local) audiofirst.removeQuietly(local.audio.path);
          return;
        }
        if (local) {
          this.local = local;
          this.file = Object.assign({}, local.audio, { duration: file.duration });
          this.pathNote = `只上传视频里的声音（${formatBytes(local.audio.size)}），视频留在手机上。`;
        } else {
          this.pathNote = SERVER_REASONS[reason];
        }
      }
    }
    // The video is checked, but with the size of what is sent.
    const problem = checkFile(Object.assign({}, file, { size: this.file.size }), this.kind, limits);
    if (problem) {
      this.error = describe(problem);
      this.set("invalid", "这个文件不能上传");
      return;
    }
    await this.send();
  }

  /** Send (or go on sending) the chosen file. Also what "retry" does after a failure. */
  send() {
    return audiofirst.keepingScreenOn(() => this.sendNow());
  }

  /** Send the whole class video instead of its sound (the server assembles then). */
  useWholeVideo() {
    return this.video ? this.use(this.video, { wholeVideo: true }) : Promise.resolve();
  }

  async sendNow() {
    const generation = this.generation;
    this.error = null;
    this.paused = false;
    try {
      await api.ensureSession();
      let upload = this.tus ? null : await this.tryInstant(generation);
      if (generation !== this.generation) return; // another file was chosen meanwhile
      if (!upload) upload = await this.sendTus(generation);
      if (generation !== this.generation) return;
      if (upload.status === "receiving") {
        this.set("verifying", "上传完成，服务器正在检查文件…");
        upload = await this.waitChecked(upload.id, generation);
      }
      if (generation !== this.generation) return;
      this.finish(upload);
    } catch (error) {
      if (generation !== this.generation) return;
      if (this.paused || (error instanceof ApiError && error.code === "PAUSED")) {
        this.set("paused", `已暂停（${formatPercent(this.fraction())}），回到小程序后继续`);
        return;
      }
      this.fail(error);
    }
  }

  /** The app went to the background: stop sending now, cleanly. */
  pause() {
    if (!this.busy) return;
    this.paused = true;
    if (
      this.tus &&
      (this.state === "uploading" || this.state === "retrying" || this.state === "connecting")
    ) {
      this.tus.pause();
    }
  }

  /** The network is back: retry now rather than after the wait, or again after giving up. */
  online() {
    if (this.state === "retrying" && this.tus) this.tus.wake();
    else if (this.state === "failed" && this.error && this.error.code === "NETWORK") this.send();
  }

  /** The app is back: go on from the server's offset. */
  resume() {
    if (!this.paused) return;
    this.paused = false;
    if (this.state === "paused") this.send();
    else if (this.tus) this.tus.wake();
  }

  async tryInstant(generation) {
    const file = this.file;
    const limit = this.options.hashLimitBytes || config.hashLimitBytes;
    if (file.size > limit || !file.path) return null; // bytes made as they are sent: no hash
    if (!this.sha256) {
      this.set("hashing", "正在校验文件… 0%");
      this.sha256 = await hashFile(file.path, file.size, {
        stopped: () => generation !== this.generation,
        onProgress: (done, total) => {
          if (generation === this.generation)
            this.set("hashing", `正在校验文件… ${formatPercent(done / total)}`);
        },
      });
      if (generation !== this.generation) return null;
    }
    try {
      const upload = await api.instantUpload(this.sha256, file.size, file.name);
      if (upload && upload.status === "ready") {
        this.instant = true;
        this.sent = file.size;
        return upload;
      }
    } catch (error) {
      // Not on the server (404), or the check failed: send the bytes, which retries by itself.
    }
    return null;
  }

  async sendTus(generation) {
    const file = this.file;
    if (!this.tus) {
      this.set("connecting", "正在连接…");
      this.tus = new TusUpload(
        {
          path: file.path,
          read: file.read,
          size: file.size,
          name: file.name,
          type: file.type,
          sha256: this.sha256,
        },
        {
          endpoint: api.absolute(`${api.PREFIX}/tus`),
          headers: () => api.headers(),
          chunkBytes: this.options.chunkBytes,
          minChunkBytes: this.options.minChunkBytes,
          maxChunkBytes: this.options.maxChunkBytes,
          retryDelays: this.options.retryDelays,
          fingerprint: [
            api.ownerId(),
            this.kind,
            file.size,
            this.sha256 || file.duration || "",
            file.name,
          ].join("|"),
          onProgress: (sent, total) => {
            if (generation === this.generation) this.progress(sent, total);
          },
          onResume: (offset) => {
            this.samples = [];
            if (generation === this.generation) {
              this.set("uploading", `从 ${formatPercent(offset / file.size)} 处继续上传`);
            }
          },
          onRetry: (delay, attempt) => {
            this.samples = [];
            this.speed = null;
            if (generation === this.generation) {
              this.set(
                "retrying",
                `网络中断，${Math.max(1, Math.ceil(delay / 1000))} 秒后从 ${formatPercent(this.fraction())} 处继续（第 ${attempt} 次）…`,
              );
            }
          },
        },
      );
    } else {
      this.samples = [];
      this.set("uploading", `从 ${formatPercent(this.fraction())} 处继续上传…`);
    }
    const url = await this.tus.start();
    const id = url.split("?")[0].split("/").filter(Boolean).pop();
    return api.upload(id);
  }

  async waitChecked(id, generation) {
    const deadline = Date.now() + CHECK_DEADLINE_MS;
    let wait = 300;
    for (;;) {
      const upload = await api.upload(id);
      if (
        upload.status !== "receiving" ||
        Date.now() > deadline ||
        generation !== this.generation
      ) {
        return upload;
      }
      await sleep(wait);
      wait = Math.min(wait * 1.5, 2000);
    }
  }

  progress(sent, total) {
    const now = Date.now();
    this.sent = sent;
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[0][0] > SPEED_WINDOW_MS)
      this.samples.shift();
    const first = this.samples[0];
    if (now > first[0] && sent > first[1])
      this.speed = ((sent - first[1]) * 1000) / (now - first[0]);
    const speed = this.speed == null ? "…" : formatSpeed(this.speed);
    this.set("uploading", `已上传 ${formatPercent(total ? sent / total : 0)} · ${speed}`);
  }

  fraction() {
    const size = this.file ? this.file.size : 0;
    return size ? Math.min(1, this.sent / size) : 0;
  }

  finish(upload) {
    this.upload = upload;
    if (upload.status === "ready") {
      this.sent = this.file.size;
      this.set("ready", this.instant ? "秒传完成：服务器上已有这个文件" : "上传完成");
    } else if (upload.status === "rejected") {
      this.error = describe(upload.error || { code: "INVALID_FORMAT" });
      this.set("rejected", "这个文件不能用");
    } else {
      this.error = describe({ code: "UPLOAD_INCOMPLETE" });
      this.set("failed", "上传失败");
    }
  }

  fail(error) {
    this.error = describe(error);
    this.set("failed", "上传失败");
  }

  set(state, status) {
    this.state = state;
    this.status = status;
    this.emit();
  }

  emit() {
    this.onChange(this.view(), this);
  }

  /** Everything the upload card shows, as plain data for setData. */
  view() {
    const file = this.file;
    const shown = this.video || file;
    const media = this.upload && this.upload.media;
    let duration = file ? file.duration : null;
    if (duration == null && media && media.duration_s) duration = media.duration_s;
    const fraction = this.state === "ready" ? 1 : this.fraction();
    return {
      kind: this.kind,
      title: TITLES[this.kind],
      hint: HINTS[this.kind],
      state: this.state,
      hasFile: Boolean(file),
      name: shown ? shown.name : "",
      sizeText: shown ? formatBytes(shown.size) : "",
      pathNote: this.pathNote,
      audioFirst: Boolean(this.local),
      durationText: file ? formatDuration(duration) : "",
      percent: Math.floor(fraction * 100),
      speedText: this.state === "uploading" && this.speed != null ? formatSpeed(this.speed) : "",
      statusText: this.status,
      error: this.error,
      busy: this.busy,
      ready: this.ready,
      canRetry: this.state === "failed" && Boolean(file),
      uploadId: this.uploadId,
    };
  }
}

module.exports = { TITLES, UploadSlot };
