// The app shell: the scratch files a crashed run left deleted; a session token early (so
// "my jobs" are there at once); the trips to the
// background and the network's return told to whatever is uploading; a new version of the
// mini-program applied when WeChat has downloaded it (the update manager).

const api = require("./utils/api.js");
const audiofirst = require("./utils/audiofirst.js");
const background = require("./utils/background.js");

function watchUpdates() {
  if (typeof wx.getUpdateManager !== "function") return;
  const manager = wx.getUpdateManager();
  manager.onUpdateReady(() => {
    wx.showModal({
      title: "有新版本",
      content: "新版本已经准备好，重启小程序使用新版本？",
      success: (answer) => {
        if (answer.confirm) manager.applyUpdate();
      },
    });
  });
  manager.onUpdateFailed(() => {
    // The old version keeps working; WeChat tries again at the next cold start.
  });
}

App({
  onLaunch() {
    audiofirst.cleanScratch().catch(() => {
      // Left for the next launch.
    });
    watchUpdates();
    if (typeof wx.onNetworkStatusChange === "function") {
      wx.onNetworkStatusChange((status) => background.network(status));
    }
    api.ensureSession().catch(() => {
      // Offline at launch: the first call that needs a token tries again.
    });
  },
  onShow() {
    background.shown();
  },
  onHide() {
    background.hidden();
  },
});
