// One job: its stages live while it runs (WebSocket, else polling), then the result — the
// video to preview, how sure the match is, the alignment plot, another candidate, a nudge in
// milliseconds, saving to the album and sharing. Retry or cancel while it is not done.
// An audio-first job answers its frame requests from the video on this phone and assembles
// its result here as soon as it is known, shown in the player and kept for saving and sharing
// until the page closes. A result too large for the mini-program's 200 MB is made by WeChat's
// MediaContainer instead, whole and not trimmed; without it, or for a server render over
// WeChat's 200 MB download cap, the service renders it at 720p.

const album = require("../../utils/album.js");
const { DOWNLOAD_LIMIT_BYTES, PATHS, ResultFile } = require("./result-file.js");
const api = require("../../utils/api.js");
const { appShare } = require("../../utils/share.js");
const audiofirst = require("../../utils/audiofirst.js");
const { describe, localError } = require("../../utils/errors.js");
const { UploadSlot } = require("../../utils/slot.js");
const {
  JobWatcher,
  STATUS_NAMES,
  isTerminal,
  stageView,
  statusLine,
} = require("../../utils/job.js");
const { choiceRequest, choices, resultView } = require("../../utils/result.js");
const { formatBytes, formatPercent } = require("../../utils/format.js");
const { isCancel } = require("../../utils/wxp.js");

const SHARE_READY = "视频已准备好，点“发送给朋友”选择聊天。";

Component({
  data: {
    loading: true,
    jobId: "",
    status: "",
    statusName: "",
    line: "",
    stages: [],
    percent: 0,
    canCancel: false,
    canRetry: false,
    error: null,
    result: null,
    choices: [],
    acting: false,
    saving: false,
    saveText: "",
    needsSetting: false,
    notice: "",
    pathText: "",
    offer720: false,
    shareReady: false,
    localVideo: "",
  },
  methods: {
    onLoad(query) {
      this.watcher = null;
      this.peak = null;
      this.ancestors = {};
      this.answered = new Set();
      this.sharePath = null;
      this.file = new ResultFile({
        set: (data) => this.setData(data),
        local: () => this.local,
        videoUrl: () => (this.data.result ? this.data.result.videoUrl : ""),
      });
      const id = query && query.id ? decodeURIComponent(query.id) : "";
      this.local = id ? audiofirst.recall(id) : null;
      this.setData({ jobId: id });
      return this.load(id);
    },

    onUnload() {
      if (this.watcher) this.watcher.stop();
      this.dropShare();
      this.file.release();
    },


    async load(id) {
      try {
        const job = await api.job(id);
        this.follow(job, { restart: true });
      } catch (error) {
        this.setData({ loading: false, error: describe(error) });
      }
    },

    /** Show `job` and keep it up to date until it finishes. */
    follow(job, options) {
      if (this.watcher) this.watcher.stop();
      if ((options && options.restart) || !this.current || this.current.id !== job.id)
        this.peak = null;
      this.current = job;
      this.watcher = new JobWatcher(job.id, {
        onJob: (next) => this.show(next),
        onEnd: (next) => this.show(next),
        onError: (error) => this.setData({ error: describe(error) }),
      });
      this.watcher.start(job);
    },

    show(job) {
      if (this.current && job.id !== this.current.id) return;
      this.current = job;
      const view = stageView(job, this.peak);
      this.peak = view.peak;
      const failed = job.status === "failed" && job.error;
      const result = job.status === "succeeded" ? resultView(job) : null;
      this.setData({
        loading: false,
        jobId: job.id,
        status: job.status,
        statusName: STATUS_NAMES[job.status] || job.status,
        line: statusLine(job, view),
        stages: view.stages,
        percent: view.percent,
        canCancel: !isTerminal(job),
        canRetry: job.status === "failed" || job.status === "canceled",
        error: failed ? describe(job.error) : null,
        result,
      });
      if (!this.file.isFor(job.id)) this.file.release();
      if (result) {
        this.showChoices(job);
        this.showPath(job);
        if (job.result.assembly && this.local && !this.file.made) this.preview();
      } else if (this.data.choices.length) this.setData({ choices: [] });
      if (job.audio_first && job.frames_request && this.local) this.answerFrames(job);
    },

    async answerFrames(job) {
      try {
        await audiofirst.answerFrames(job, this.local, this.answered);
      } catch (error) {
        // The run goes on without the picture check after its wait; say why it may be late.
        this.setData({ notice: "无法读取视频画面，结果的首尾可能多出黑屏或静止画面。" });
      }
    },

    /** Which path makes the file, and whether it can be made on this phone at all. */
    showPath(job) {
      const result = job.result || {};
      const assembly = result.assembly;
      const size = result.output && result.output.size_bytes;
      if (assembly) {
        this.setData({
          pathText: !this.local
            ? "这个任务的视频不在这台手机上，可以改由服务器合成 720p。"
            : this.file.wholeFor === job.id
              ? PATHS.phoneWhole
              : PATHS.phone,
          offer720: !this.local,
        });
      } else {
        const small = job.options && job.options.max_height === 720;
        const tooLarge = Number(size) > DOWNLOAD_LIMIT_BYTES;
        this.setData({
          pathText: small ? PATHS.server720 : PATHS.server,
          offer720: tooLarge,
          notice: tooLarge
            ? `结果有 ${formatBytes(size)}，超过微信能下载的 200 MB，可以生成 720p 版本。`
            : this.data.notice,
        });
      }
    },

    async showChoices(job) {
      const fetchJob = async (id) => {
        if (!this.ancestors[id]) this.ancestors[id] = await api.job(id);
        return this.ancestors[id];
      };
      const list = await choices(job, fetchJob);
      if (this.current && this.current.id === job.id)
        this.setData({ choices: list.length > 1 ? list : [] });
    },

    /** Run an action that answers with a job, one at a time (a double tap must not queue two). */
    async act(run, options) {
      if (this.data.acting || !this.current) return null;
      this.setData({ acting: true, notice: "" });
      try {
        const job = await run(this.current.id);
        this.follow(job, options);
        return job;
      } catch (error) {
        this.setData({ error: describe(error) });
        return null;
      } finally {
        this.setData({ acting: false });
      }
    },

    onCancel() {
      return this.act((id) => api.cancel(id));
    },

    onRetry() {
      // A retried job keeps its id and starts again from nothing.
      return this.act((id) => api.retry(id), { restart: true });
    },

    onNudge(event) {
      return this.act((id) => api.render(id, { nudge_ms: event.detail.nudgeMs }));
    },

    onChoice(event) {
      const choice = this.data.choices[Number(event.currentTarget.dataset.index)];
      if (!choice || choice.current) return null;
      const request = choiceRequest(choice, this.current.id);
      return this.act(() => api.render(request.jobId, request.body));
    },

    onPreviewPlot() {
      const result = this.data.result;
      if (result && result.plotUrl)
        wx.previewImage({ urls: [result.plotUrl], current: result.plotUrl });
    },

    /** Make the result on this phone as soon as it is known, and show it in the player. */
    preview() {
      return this.produce((fraction) =>
        this.setData({ saveText: `正在合成视频… ${formatPercent(fraction)}` }),
      )
        .catch((error) => this.setData({ error: describe(error) }))
        .finally(() => {
          if (!this.data.saving) this.setData({ saveText: "" });
        });
    },

    /**
     * The result as a file on this phone (see result-file.js); null when it cannot be made
     * here (the page then offers the 720p render and says why).
     */
    produce(onProgress) {
      return this.file.produce(this.current, onProgress);
    },

    async onSave() {
      if (!this.data.result || this.data.saving) return null;
      this.setData({ saving: true, saveText: "正在准备… 0%", notice: "", error: null });
      let file = null;
      try {
        const permission = await album.ensureAlbumPermission();
        if (permission !== "granted") return this.refused(permission);
        file = await this.produce((fraction) =>
          this.setData({ saveText: `正在准备… ${formatPercent(fraction)}` }),
        );
        if (!file) return null;
        const outcome = await album.saveFile(file.path);
        if (!outcome.saved && (outcome.privacy || outcome.needsSetting)) {
          return this.refused(outcome.privacy ? "privacy" : "denied");
        }
        if (outcome.saved) {
          this.setData({ needsSetting: false, notice: `已保存到相册。${this.data.pathText}` });
          wx.showToast({ title: "已保存到相册", icon: "success" });
        }
        return outcome;
      } catch (error) {
        this.setData({ error: describe(error) });
        return null;
      } finally {
        this.setData({ saving: false, saveText: "" });
      }
    },

    /** The album cannot be written: by the privacy guide's refusal, or the permission's. */
    refused(reason) {
      if (reason === "privacy") {
        this.setData({
          needsSetting: false,
          notice: "你没有同意隐私保护指引，所以不能保存到相册。再点一次保存可以重新选择。",
        });
        return { saved: false, privacy: true };
      }
      this.setData({
        needsSetting: true,
        notice: "需要“保存到相册”的权限，请点下面的按钮去设置中打开。",
      });
      return { saved: false, needsSetting: true };
    },

    /** Back from the settings page (button open-type="openSetting"): save if now allowed. */
    onOpenSetting(event) {
      const setting = (event.detail && event.detail.authSetting) || {};
      if (setting[album.SCOPE]) {
        this.setData({ needsSetting: false, notice: "" });
        return this.onSave();
      }
      return null;
    },

    /** First tap: make the file to share (WeChat shares only from a tap, so a second tap sends). */
    async onPrepareShare() {
      if (!this.data.result || this.data.saving) return;
      this.dropShare();
      this.setData({ saving: true, saveText: "正在准备分享…", notice: "", error: null });
      try {
        const file = await this.produce((fraction) =>
          this.setData({ saveText: `正在准备分享… ${formatPercent(fraction)}` }),
        );
        if (!file) return;
        this.sharePath = file;
        this.setData({ shareReady: true, notice: SHARE_READY });
      } catch (error) {
        this.setData({ error: describe(error) });
      } finally {
        this.setData({ saving: false, saveText: "" });
      }
    },

    /** Second tap: send it. Nothing is awaited before the call, as WeChat requires. */
    onShareVideo() {
      const file = this.sharePath;
      if (!file) return;
      if (typeof wx.shareVideoMessage !== "function") {
        this.setData({ notice: "这个微信版本不能直接分享视频，可以先保存到相册。" });
        return;
      }
      wx.shareVideoMessage({
        videoPath: file.path,
        success: () => this.setData({ notice: "已发送。" }),
        fail: (error) => {
          if (!isCancel(error)) this.setData({ error: describe(localError("SHARE_FAILED", {})) });
        },
        complete: () => this.dropShare(),
      });
    },

    dropShare() {
      this.sharePath = null;
      if (this.data.shareReady) this.setData({ shareReady: false });
    },

    /**
     * Render on the service at 720p. A video only on this phone is sent: the span its result
     * keeps, with the clean sound (stream-copied here as it is sent), or the whole video when
     * there is no result.
     */
    async onServer720() {
      const job = this.current;
      if (!job || this.data.acting) return null;
      this.setData({ acting: true, error: null, notice: "" });
      try {
        let danceId = job.dance_upload_id;
        let kept = null;
        if (job.audio_first) {
          if (!this.local) throw localError("FILE_READ_FAILED", {});
          const slot = new UploadSlot("dance", {
            audioFirst: false,
            onChange: (view) => this.setData({ saveText: view.statusText }),
          });
          const name = this.local.videoPath.split("/").pop();
          const assembly = job.result && job.result.assembly;
          // Only what the result keeps goes up, its sound already the clean one; the whole
          // video when there is no result yet.
          kept = assembly
            ? await audiofirst
                .keptSpan(this.local, assembly, name.replace(/\.[^.]*$/, ""))
                .catch(() => null)
            : null;
          await slot.use(kept || { path: this.local.videoPath, size: this.local.videoSize, name, type: "video" });
          const { ready, error, uploadId } = slot;
          slot.destroy();
          if (!ready) throw error || localError("UPLOAD_INCOMPLETE", {});
          danceId = uploadId;
        }
        const created = await api.createJob(danceId, job.bgm_upload_id, {
          reencode: true,
          max_height: 720,
          // A kept span's sound is nudged already.
          nudge_ms: kept ? 0 : Number(job.options && job.options.nudge_ms) || 0,
        });
        this.file.release();
        this.local = null;
        this.setData({ offer720: false, pathText: PATHS.server720 });
        this.follow(created, { restart: true });
        return created;
      } catch (error) {
        this.setData({ error: describe(error) });
        return null;
      } finally {
        this.setData({ acting: false, saveText: "" });
      }
    },

    onShareAppMessage() {
      const result = this.data.result;
      return appShare(result && result.posterUrl ? result.posterUrl : undefined);
    },
  },
});
