// Keeping the result: download the video (wx.downloadFile through its signed URL) or take the
// file assembled on the phone, and save it to the photo album, asking for the album permission
// the way WeChat wants — once through wx.authorize; after a refusal WeChat will not ask again,
// so the page offers a button that opens the settings (open-type="openSetting") instead. A
// refusal of the privacy guide (errno 104) is another thing: the settings cannot undo it.

const { failureCode, localError } = require("./errors.js");
const { call } = require("./wxp.js");

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

/**
 * Ask for the album permission: "granted", "denied" (only the settings page can change it), or
 * "privacy" (the user did not agree to the privacy guide: not an album refusal, and the
 * settings page cannot help).
 */
async function ensureAlbumPermission() {
  const state = await albumPermission();
  if (state === "granted" || state === "denied") return state;
  try {
    await call("authorize", { scope: SCOPE });
    return "granted";
  } catch (error) {
    return failureCode(error) === "PRIVACY_DENIED" ? "privacy" : "denied";
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
        const code = failureCode(failure);
        reject(localError(code === "DOWNLOAD_TOO_LARGE" ? code : "DOWNLOAD_FAILED", {
          reason: failure && failure.errMsg,
        }));
      },
    });
    if (task && typeof task.onProgressUpdate === "function" && onProgress) {
      task.onProgressUpdate((event) => onProgress((Number(event.progress) || 0) / 100));
    }
  });
}

/**
 * Save a local video file to the album.
 * @returns {Promise<{saved: boolean, needsSetting?: boolean, privacy?: boolean}>}
 */
async function saveFile(filePath) {
  const permission = await ensureAlbumPermission();
  if (permission === "privacy") return { saved: false, privacy: true };
  if (permission === "denied") return { saved: false, needsSetting: true };
  try {
    await call("saveVideoToPhotosAlbum", { filePath });
  } catch (error) {
    const code = failureCode(error);
    if (code === "CANCELED") return { saved: false };
    if (code === "PRIVACY_DENIED") return { saved: false, privacy: true };
    if (code === "ALBUM_DENIED") return { saved: false, needsSetting: true };
    throw localError("SAVE_FAILED", { reason: error && error.errMsg });
  }
  return { saved: true };
}

/** Save the video at `url` (the service's render) to the album. */
async function saveVideo(url, onProgress) {
  const permission = await ensureAlbumPermission();
  if (permission === "privacy") return { saved: false, privacy: true };
  if (permission === "denied") return { saved: false, needsSetting: true };
  const filePath = await download(url, onProgress);
  return Object.assign(await saveFile(filePath), { filePath });
}

module.exports = { SCOPE, albumPermission, download, ensureAlbumPermission, saveFile, saveVideo };
