// The service's API: the anonymous client token (kept in storage, so "my jobs" survive a
// restart of the app), JSON calls in Chinese (Accept-Language: zh-CN) turned into ApiError on
// refusal, and the absolute URLs of the service for requests, sockets and result files.

const config = require("../config.js");
const { ApiError, fromResponse } = require("./errors.js");
const { request } = require("./http.js");

const TOKEN_KEY = "beatsync.token";
const OWNER_KEY = "beatsync.owner";
const PREFIX = "/api/v1";

let base = config.apiBase;
let checked = false; // the stored token was confirmed by the server since the app started
let pendingSession = null;

/** Point the client at another service (the one in config.js by default). */
function setBase(url) {
  base = String(url).replace(/\/+$/, "");
  checked = false;
}

/** An absolute http(s) URL for a path the API gave (`/api/v1/files/…`) or a full URL. */
function absolute(pathOrUrl) {
  if (/^https?:\/\//i.test(pathOrUrl)) return pathOrUrl;
  return base + (pathOrUrl.charAt(0) === "/" ? pathOrUrl : `/${pathOrUrl}`);
}

/** The ws(s) URL of a socket path (`links.ws`). */
function socketUrl(pathOrUrl) {
  return absolute(pathOrUrl).replace(/^http/i, "ws");
}

function read(key) {
  try {
    return wx.getStorageSync(key) || null;
  } catch (error) {
    return null;
  }
}

function write(key, value) {
  try {
    if (value == null) wx.removeStorageSync(key);
    else wx.setStorageSync(key, value);
  } catch (error) {
    // Without storage the token lives until the app is closed.
  }
}

function token() {
  return read(TOKEN_KEY);
}

function ownerId() {
  return read(OWNER_KEY);
}

function forgetSession() {
  write(TOKEN_KEY, null);
  write(OWNER_KEY, null);
  checked = false;
}

/** Headers of every call: Chinese messages, JSON, and the token when there is one. */
function headers(extra) {
  const result = { "Accept-Language": "zh-CN", Accept: "application/json" };
  const current = token();
  if (current) result.Authorization = `Bearer ${current}`;
  return Object.assign(result, extra || {});
}

async function send(method, path, options) {
  const opts = options || {};
  const header =
    opts.auth === false ? { "Accept-Language": "zh-CN", Accept: "application/json" } : headers();
  if (opts.json !== undefined) header["Content-Type"] = "application/json";
  const response = await request({
    url: absolute(path),
    method,
    header,
    data: opts.json !== undefined ? JSON.stringify(opts.json) : undefined,
  });
  if (response.statusCode < 200 || response.statusCode >= 300) throw fromResponse(response);
  if (response.statusCode === 204) return null;
  let data = response.data;
  if (typeof data === "string" && data) {
    try {
      data = JSON.parse(data);
    } catch (error) {
      throw new ApiError(response.statusCode, "INTERNAL_ERROR", null);
    }
  }
  return data === "" ? null : data;
}

/** The code of wx.login, or null where there is none (not in WeChat, or it failed). */
function loginCode() {
  if (!config.wechatLogin || typeof wx.login !== "function") return Promise.resolve(null);
  return new Promise((resolve) => {
    wx.login({
      success: (result) => resolve(result && result.code ? result.code : null),
      fail: () => resolve(null),
    });
  });
}

/**
 * A new token: the WeChat user's (the same owner on every phone of that user) when the service
 * signs WeChat users in, else an anonymous one.
 */
async function createSession() {
  const code = await loginCode();
  let body = null;
  if (code) {
    try {
      body = await send("POST", `${PREFIX}/sessions/wechat`, { auth: false, json: { code } });
    } catch (error) {
      // Not configured or refused: an anonymous token still works on this phone; WeChat being
      // away is worth another try later.
      if (error instanceof ApiError && error.code === "WECHAT_UNAVAILABLE") throw error;
    }
  }
  if (!body) body = await send("POST", `${PREFIX}/sessions`, { auth: false });
  write(TOKEN_KEY, body.token);
  write(OWNER_KEY, body.owner_id);
  checked = true;
  return body.token;
}

/**
 * A token for this phone: the stored one (confirmed once per launch, since the service may
 * have been reset), else a new anonymous session.
 */
function ensureSession() {
  if (token() && checked) return Promise.resolve(token());
  if (!pendingSession) {
    pendingSession = (async () => {
      if (token()) {
        try {
          const me = await send("GET", `${PREFIX}/sessions/me`);
          write(OWNER_KEY, me.owner_id);
          checked = true;
          return token();
        } catch (error) {
          if (!(error instanceof ApiError && error.code === "UNAUTHORIZED")) throw error;
          forgetSession();
        }
      }
      return createSession();
    })();
    pendingSession.then(
      () => {
        pendingSession = null;
      },
      () => {
        pendingSession = null;
      },
    );
  }
  return pendingSession;
}

/**
 * A JSON call with the token. A token the service no longer knows is replaced by a new session
 * once; what belonged to the old one is gone anyway.
 */
async function call(method, path, options) {
  await ensureSession();
  try {
    return await send(method, path, options);
  } catch (error) {
    if (error instanceof ApiError && error.code === "UNAUTHORIZED") {
      forgetSession();
      await ensureSession();
      return send(method, path, options);
    }
    throw error;
  }
}

function id(value) {
  return encodeURIComponent(value);
}

module.exports = {
  PREFIX,
  absolute,
  ensureSession,
  forgetSession,
  headers,
  ownerId,
  setBase,
  socketUrl,
  token,
  upload: (uploadId) => call("GET", `${PREFIX}/uploads/${id(uploadId)}`),
  instantUpload: (sha256, size, filename) =>
    call("POST", `${PREFIX}/uploads/instant`, { json: { sha256, size, filename } }),
  createJob: (danceId, bgmId, options, extra) =>
    call("POST", `${PREFIX}/jobs`, {
      json: Object.assign(
        { dance_upload_id: danceId, bgm_upload_id: bgmId, options: options || {} },
        extra || {},
      ),
    }),
  answerFrames: (url, requestId, thumbnails) =>
    call("POST", url, { json: { request_id: requestId, thumbnails } }),
  job: (jobId) => call("GET", `${PREFIX}/jobs/${id(jobId)}`),
  jobs: (limit) => call("GET", `${PREFIX}/jobs?limit=${limit || 20}`),
  render: (jobId, body) => call("POST", `${PREFIX}/jobs/${id(jobId)}/render`, { json: body || {} }),
  cancel: (jobId) => call("POST", `${PREFIX}/jobs/${id(jobId)}/cancel`),
  retry: (jobId) => call("POST", `${PREFIX}/jobs/${id(jobId)}/retry`),
  remove: (jobId) => call("DELETE", `${PREFIX}/jobs/${id(jobId)}`),
};
