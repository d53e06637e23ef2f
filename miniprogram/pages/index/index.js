// The first page: choose the class video and the reference, watch both upload, start the job.
// Built with Component() (a page may be), so that it can be rendered and tapped in tests.

const config = require("../../config.js");
const api = require("../../utils/api.js");
const { appShare } = require("../../utils/share.js");
const audiofirst = require("../../utils/audiofirst.js");
const { describe } = require("../../utils/errors.js");
const { UploadSlot } = require("../../utils/slot.js");

const HINT_WAIT = "两个文件都上传完成后就可以开始。";
const HINT_READY = "准备好了，点击开始。";

Component({
  data: {
    dance: {},
    bgm: {},
    canStart: false,
    starting: false,
    startHint: HINT_WAIT,
    compact: false,
    error: null,
  },
  methods: {
    onShareAppMessage() {
      return appShare();
    },

    onLoad() {
      this.slots = {};
      for (const kind of ["dance", "bgm"]) {
        this.slots[kind] = new UploadSlot(kind, { onChange: (view) => this.show(kind, view) });
      }
    },

    onUnload() {
      for (const kind of Object.keys(this.slots || {})) this.slots[kind].destroy();
    },

    show(kind, view) {
      const other = kind === "dance" ? this.slots.bgm : this.slots.dance;
      const both = view.ready && Boolean(other && other.ready);
      this.setData({
        [kind]: view,
        canStart: both && !this.data.starting,
        startHint: both ? HINT_READY : HINT_WAIT,
      });
    },

    onPick(event) {
      const kind = event.currentTarget.dataset.kind;
      this.setData({ error: null });
      return this.slots[kind].pick(event.detail.source);
    },

    /** Upload the whole class video instead of its sound and wait until it is there. */
    async wholeVideo(slot) {
      this.setData({ startHint: "正在上传整个视频…" });
      await slot.useWholeVideo();
      if (!slot.ready) throw slot.error ? { code: slot.error.code, message: slot.error.message } : new Error("upload");
    },

    onRetry(event) {
      return this.slots[event.currentTarget.dataset.kind].send();
    },

    onCompact(event) {
      this.setData({ compact: Boolean(event.detail.value) });
    },

    /**
     * Ask for the "job finished" notice. WeChat allows this only from a tap, so it is the first
     * thing the start button does, before anything is awaited.
     */
    askForNotice() {
      if (!config.notifyTemplateId || typeof wx.requestSubscribeMessage !== "function") return;
      wx.requestSubscribeMessage({ tmplIds: [config.notifyTemplateId], fail: () => {} });
    },

    async onStart() {
      const { dance, bgm } = this.slots;
      if (this.data.starting || !dance.ready || !bgm.ready) return null;
      this.askForNotice();
      this.setData({ starting: true, canStart: false, error: null });
      const options = this.data.compact ? { reencode: true, max_height: 720 } : {};
      try {
        // 720p is a re-encode, which only the service can do: it needs the whole video.
        if (dance.local && this.data.compact) await this.wholeVideo(dance);
        let job = null;
        if (dance.local) {
          const extra = audiofirst.jobFields(dance.local);
          try {
            job = await api.createJob(dance.uploadId, bgm.uploadId, {}, extra);
            audiofirst.remember(job.id, dance.local);
          } catch (error) {
            // The service cannot use this video's tables and sound alone: send it whole.
            if (error.code !== "INVALID_MANIFEST") throw error;
            await this.wholeVideo(dance);
          }
        }
        if (!job) job = await api.createJob(dance.uploadId, bgm.uploadId, options);
        wx.navigateTo({ url: `/pages/job/job?id=${encodeURIComponent(job.id)}` });
        return job;
      } catch (error) {
        this.setData({ error: describe(error) });
        return null;
      } finally {
        this.setData({ starting: false, canStart: dance.ready && bgm.ready });
      }
    },
  },
});
