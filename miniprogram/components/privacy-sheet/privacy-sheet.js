// WeChat's privacy authorization: before a call that collects what the privacy guide declares
// (choosing media or files, writing to the album), WeChat asks the page through
// wx.onNeedPrivacyAuthorization; this sheet shows the guide's name, a link to it
// (wx.openPrivacyContract) and a button with open-type="agreePrivacyAuthorization". Agreeing
// lets the waiting call go on; refusing makes it fail with errno 104, which the pages tell apart
// from a refused album permission. One handler is WeChat-wide, so each page's sheet takes it
// over when the page shows.

const AGREE_ID = "privacy-agree";

Component({
  data: { shown: false, contractName: "《用户隐私保护指引》" },
  lifetimes: {
    attached() {
      this.listen();
    },
    detached() {
      this.settle("disagree");
    },
  },
  pageLifetimes: {
    show() {
      this.listen();
    },
  },
  methods: {
    listen() {
      if (typeof wx.onNeedPrivacyAuthorization !== "function") return;
      wx.onNeedPrivacyAuthorization((resolve) => {
        this.settle("disagree");
        this.pending = resolve;
        this.setData({ shown: true });
      });
      if (typeof wx.getPrivacySetting === "function") {
        wx.getPrivacySetting({
          success: (res) => {
            if (res.privacyContractName) this.setData({ contractName: res.privacyContractName });
          },
        });
      }
    },

    settle(event) {
      const resolve = this.pending;
      this.pending = null;
      if (resolve) resolve(event === "agree" ? { event, buttonId: AGREE_ID } : { event });
      if (this.data.shown) this.setData({ shown: false });
    },

    onAgree() {
      this.settle("agree");
    },

    onRefuse() {
      this.settle("disagree");
      this.triggerEvent("refuse", {});
    },

    onContract() {
      if (typeof wx.openPrivacyContract === "function") wx.openPrivacyContract({});
    },
  },
});
