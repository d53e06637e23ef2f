// One job: its stages live while it runs (WebSocket, else polling), then the result — the
// video to preview, how sure the match is, the alignment plot, another candidate, a nudge in
// milliseconds, saving to the album and sharing. Retry or cancel while it is not done.

const album = require("../../utils/album.js");
const api = require("../../utils/api.js");
const { describe } = require("../../utils/errors.js");
const {
  JobWatcher,
  STATUS_NAMES,
  isTerminal,
  stageView,
  statusLine,
} = require("../../utils/job.js");
const { choiceRequest, choices, resultView } = require("../../utils/result.js");
const { formatPercent } = require("../../utils/format.js");
const { isCancel } = require("../../utils/wxp.js");

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
  },
  methods: {
    onLoad(query) {
      this.watcher = null;
      this.peak = null;
      this.ancestors = {};
      const id = query && query.id ? decodeURIComponent(query.id) : "";
      this.setData({ jobId: id });
      return this.load(id);
    },

    onUnload() {
      if (this.watcher) this.watcher.stop();
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
      if (result) this.showChoices(job);
      else if (this.data.choices.length) this.setData({ choices: [] });
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

    async onSave() {
      const result = this.data.result;
      if (!result || this.data.saving) return null;
      this.setData({ saving: true, saveText: "正在下载… 0%", notice: "", error: null });
      try {
        const outcome = await album.saveVideo(result.videoUrl, (fraction) =>
          this.setData({ saveText: `正在下载… ${formatPercent(fraction)}` }),
        );
        if (outcome.needsSetting) {
          this.setData({
            needsSetting: true,
            notice: "需要“保存到相册”的权限，请点下面的按钮去设置中打开。",
          });
        } else if (outcome.saved) {
          this.setData({ needsSetting: false, notice: "已保存到相册。" });
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

    /** Back from the settings page (button open-type="openSetting"): save if now allowed. */
    onOpenSetting(event) {
      const setting = (event.detail && event.detail.authSetting) || {};
      if (setting[album.SCOPE]) {
        this.setData({ needsSetting: false, notice: "" });
        return this.onSave();
      }
      return null;
    },

    async onShareVideo() {
      const result = this.data.result;
      if (!result || this.data.saving) return;
      this.setData({ saving: true, saveText: "正在准备分享…", error: null });
      try {
        const shared = await album.shareVideo(result.videoUrl);
        if (!shared) this.setData({ notice: "可以点右上角“…”把小程序分享给朋友。" });
      } catch (error) {
        if (!isCancel(error)) this.setData({ error: describe(error) });
      } finally {
        this.setData({ saving: false, saveText: "" });
      }
    },

    onShareAppMessage() {
      const result = this.data.result;
      return {
        title: "舞蹈课视频配上了干净的音乐，对得很准",
        path: "/pages/index/index",
        imageUrl: result && result.posterUrl ? result.posterUrl : undefined,
      };
    },
  },
});
