// "My jobs": the jobs of this phone's token (kept in storage), newest first, read again each
// time the page shows; open one, or delete it with its files.

const api = require("../../utils/api.js");
const { appShare } = require("../../utils/share.js");
const { describe } = require("../../utils/errors.js");
const { jobSummary } = require("../../utils/job.js");
const { call } = require("../../utils/wxp.js");

const LIMIT = 30;

Component({
  data: {
    items: [],
    loaded: false,
    loading: false,
    error: null,
  },
  methods: {
    onShareAppMessage() {
      return appShare();
    },

    onShow() {
      return this.refresh();
    },

    async onPullDownRefresh() {
      await this.refresh();
      wx.stopPullDownRefresh();
    },

    async refresh() {
      if (this.loading) return this.loading;
      this.setData({ loading: true });
      this.loading = (async () => {
        try {
          const page = await api.jobs(LIMIT);
          this.setData({ items: (page.items || []).map(jobSummary), error: null });
        } catch (error) {
          this.setData({ error: describe(error) });
        } finally {
          this.setData({ loading: false, loaded: true });
          this.loading = null;
        }
      })();
      return this.loading;
    },

    onOpen(event) {
      wx.navigateTo({ url: `/pages/job/job?id=${encodeURIComponent(event.detail.id)}` });
    },

    async onRemove(event) {
      const id = event.detail.id;
      const answer = await call("showModal", {
        title: "删除任务",
        content: "结果视频也会一起删除，确定吗？",
        confirmText: "删除",
        confirmColor: "#e11d48",
      }).catch(() => ({ confirm: false }));
      if (!answer.confirm) return false;
      try {
        await api.remove(id);
        this.setData({ items: this.data.items.filter((item) => item.id !== id) });
        return true;
      } catch (error) {
        this.setData({ error: describe(error) });
        return false;
      }
    },
  },
});
