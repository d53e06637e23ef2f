// The app shell: a session token early (so "my jobs" are there at once), and the trips to the
// background told to whatever is uploading, so it stops cleanly and resumes on return.

const api = require("./utils/api.js");
const background = require("./utils/background.js");

App({
  onLaunch() {
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
