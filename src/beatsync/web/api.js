// The API client: the anonymous token, JSON requests in the page's language, problem documents
// turned into ApiError (code + localized message, shown to the user in plain words).

import { getLang, t } from "./i18n.js";

const TOKEN_KEY = "beatsync.token";
const OWNER_KEY = "beatsync.owner";
export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, code, message, body = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.body = body;
  }

  /** Worth trying again later: the network or the server, not the request. */
  get transient() {
    return this.status === 0 || this.status >= 500 || this.status === 429 || this.body?.retryable;
  }
}

function readStore(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function writeStore(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    // Without storage the token lives for this visit only.
  }
}

let token = readStore(TOKEN_KEY);
let ownerId = readStore(OWNER_KEY);
let pendingSession = null;

/** A named moment on the page's performance timeline (the phone benchmark reads them). */
export function mark(name) {
  performance.mark?.(`beatsync:${name}`);
}

export function currentOwner() {
  return ownerId;
}

export function currentToken() {
  return token;
}

/** A token for this browser: the remembered one, else a new anonymous session. */
export async function ensureSession() {
  if (token) return token;
  if (!pendingSession) {
    pendingSession = (async () => {
      const body = await send("POST", `${API}/sessions`, { auth: false });
      token = body.token;
      ownerId = body.owner_id;
      writeStore(TOKEN_KEY, token);
      writeStore(OWNER_KEY, ownerId);
      return token;
    })().finally(() => {
      pendingSession = null;
    });
  }
  return pendingSession;
}

function forgetSession() {
  token = null;
  ownerId = null;
  writeStore(TOKEN_KEY, null);
  writeStore(OWNER_KEY, null);
}

/** Headers every request carries: the language, and the token when there is one. */
export function baseHeaders() {
  const headers = { "Accept-Language": getLang(), Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

/** An ApiError from a failed fetch Response (problem+json when the API answered it). */
export async function errorFromResponse(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const code = body?.code || `HTTP_${response.status}`;
  const message = body?.message || t("error.unknown");
  return new ApiError(response.status, code, message, body);
}

export function networkError() {
  return new ApiError(0, "NETWORK", t("error.network"));
}

async function send(method, path, { json, auth = true, signal } = {}) {
  const headers = auth ? baseHeaders() : { "Accept-Language": getLang() };
  const init = { method, headers, signal, credentials: "same-origin" };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw networkError();
  }
  if (!response.ok) throw await errorFromResponse(response);
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : null;
}

/**
 * A JSON request with the token. A token the server no longer knows (its data was reset) is
 * replaced by a new session once; what belonged to the old one is gone anyway.
 */
export async function request(method, path, options = {}) {
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

export const api = {
  upload: (id) => request("GET", `${API}/uploads/${encodeURIComponent(id)}`),
  instantUpload: (sha256, size, filename) =>
    request("POST", `${API}/uploads/instant`, { json: { sha256, size, filename } }),
  createJob: (danceId, bgmId, options = {}, extra = {}) =>
    request("POST", `${API}/jobs`, {
      json: { dance_upload_id: danceId, bgm_upload_id: bgmId, options, ...extra },
    }),
  answerFrames: (url, requestId, thumbnails) =>
    request("POST", url, { json: { request_id: requestId, thumbnails } }),
  job: (id) => request("GET", `${API}/jobs/${encodeURIComponent(id)}`),
  // A minute-long ticket for the job's event stream: EventSource cannot send the token in a
  // header, and a token in a URL would end up in logs.
  ticket: (id) => request("POST", `${API}/jobs/${encodeURIComponent(id)}/ticket`),
  jobs: (limit = 10) => request("GET", `${API}/jobs?limit=${limit}`),
  render: (id, body) =>
    request("POST", `${API}/jobs/${encodeURIComponent(id)}/render`, { json: body }),
  cancel: (id) => request("POST", `${API}/jobs/${encodeURIComponent(id)}/cancel`),
  retry: (id) => request("POST", `${API}/jobs/${encodeURIComponent(id)}/retry`),
  remove: (id) => request("DELETE", `${API}/jobs/${encodeURIComponent(id)}`),
};
