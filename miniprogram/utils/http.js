// wx.request as a promise. Every request has the 60-second cap WeChat puts on it (networkTimeout
// in app.json), reports a lost network or a timeout as an ApiError with status 0, and hands its
// RequestTask to `onTask` so that a caller can abort it (the app went to the background).

const { fromFailure } = require("./errors.js");

const REQUEST_TIMEOUT_MS = 60 * 1000;

/**
 * @param {object} options url, method, header, data (object → JSON, string, ArrayBuffer),
 *   responseType ("text" | "arraybuffer"), timeout (ms, at most 60 s), onTask(task)
 * @returns {Promise<{statusCode: number, header: object, data: any}>} any HTTP status; only a
 *   failure to get an answer rejects
 */
function request(options) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const task = wx.request({
      url: options.url,
      method: options.method || "GET",
      header: options.header || {},
      data: options.data,
      dataType: options.responseType === "arraybuffer" ? "other" : "json",
      responseType: options.responseType || "text",
      timeout: Math.min(options.timeout || REQUEST_TIMEOUT_MS, REQUEST_TIMEOUT_MS),
      success(response) {
        settled = true;
        resolve({
          statusCode: response.statusCode,
          header: response.header || {},
          data: response.data,
        });
      },
      fail(failure) {
        settled = true;
        reject(fromFailure(failure));
      },
    });
    if (options.onTask && task && !settled) options.onTask(task);
  });
}

module.exports = { REQUEST_TIMEOUT_MS, request };
