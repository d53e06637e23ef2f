// Keeping the result: download the video (wx.downloadFile through its signed URL) and save it
// to the photo album, asking for the album permission the way WeChat wants — once through
// wx.authorize; after a refusal WeChat will not ask again, so the page offers a button that
// opens the settings (open-type="openSetting") instead. Also sharing the video to a chat.

const { localError } = require("./errors.js");
const { call, has, isCancel } = require("./wxp.js");

const SCOPE = "scope.writePhotosAlbum";
// A result can be a few hundred MB on a slow network: the download gets longer than a request.
const DOWNLOAD_TIMEOUT_MS = 10 * 60 * 1000;

/** "granted", "denied" (ask through the settings page) or "unknown" (wx.authorize will ask). */
async function albumPermission() {
  try {
    const setting = await call("getSetting", {});
    const value = setting.authSetting ? setting.authSetting[SCOPE] : undefined;
    if (value === true) return "granted";
    if (value === false) return "denied";
  } catch (error) {
    // Unknown: asking finds out.
  }
  return "unknown";
}

/** Ask for the album permission; true when it is granted. */
async function ensureAlbumPermission() {
  const state = await albumPermission();
  if (state === "granted") return true;
  if (state === "denied") return false;
  try {
    await call("authorize", { scope: SCOPE });
    return true;
  } catch (error) {
    return false;
  }
}

/** Download a result file to a local temporary path; `onProgress(fraction)` while it comes. */
function download(url, onProgress) {
  return new Promise((resolve, reject) => {
    const task = wx.downloadFile({
      url,
      timeout: DOWNLOAD_TIMEOUT_MS,
      success(result) {
        if (result.statusCode === 200 && result.tempFilePath) resolve(result.tempFilePath);
        else
          reject(
            localError(result.statusCode === 403 ? "LINK_EXPIRED" : "DOWNLOAD_FAILED", {
              status: result.statusCode,
            }),
          );
      },
      fail(failure) {
        reject(localError("DOWNLOAD_FAILED", { reason: failure && failure.errMsg }));
      },
    });
    if (task && typeof task.onProgressUpdate === "function" && onProgress) {
      task.onProgressUpdate((event) => onProgress((Number(event.progress) || 0) / 100));
    }
  });
}

/**
 * Save the video at `url` to the album.
 * @returns {Promise<{saved: boolean, needsSetting?: boolean, filePath?: string}>}
 */
async function saveVideo(url, onProgress) {
  if (!(await ensureAlbumPermission())) return { saved: false, needsSetting: true };
  const filePath = await download(url, onProgress);
  try {
    await call("saveVideoToPhotosAlbum", { filePath });
  } catch (error) {
    if (isCancel(error)) return { saved: false, filePath };
    if (/auth|deny|denied/i.test(String(error && error.errMsg))) {
      return { saved: false, needsSetting: true, filePath };
    }
    throw localError("SAVE_FAILED", { reason: error && error.errMsg });
  }
  return { saved: true, filePath };
}

/** Send the video to a chat (wx.shareVideoMessage); false where this WeChat cannot. */
async function shareVideo(url, posterPath) {
  if (!has("shareVideoMessage")) return false;
  const videoPath = await download(url);
  try {
    const options = { videoPath };
    if (posterPath) options.thumbPath = posterPath;
    await call("shareVideoMessage", options);
  } catch (error) {
    if (isCancel(error)) return false;
    throw localError("SHARE_FAILED", { reason: error && error.errMsg });
  }
  return true;
}

module.exports = { SCOPE, albumPermission, download, ensureAlbumPermission, saveVideo, shareVideo };
