// A tus 1.0 client (core + creation) for a mini-program. wx.request cannot send PATCH, so each
// chunk is a POST with `X-HTTP-Method-Override: PATCH` and an ArrayBuffer body read from the
// file a few MB at a time. After a failure — the network dropped, a request hit the 60-second
// cap, the app went to the background — the client asks the server how much it has (HEAD) and
// goes on from there; the server keeps what arrived of a cut-off chunk, so the offset it
// answers need not be a chunk boundary. A chunk that times out halves the next one, a fast one
// doubles it, so a slow phone network stays under the cap. The upload's URL is remembered per
// file fingerprint, so the same file chosen again after the app was closed resumes.

const config = require("../config.js");
const { ApiError, fromResponse } = require("./errors.js");
const { readChunk } = require("./files.js");
const { request } = require("./http.js");
const { encodeText } = require("./base64.js");
const { headerValue, wakeableSleep } = require("./wxp.js");

const TUS_VERSION = "1.0.0";
const OCTETS = "application/offset+octet-stream";
const STORE_PREFIX = "beatsync.tus.";
const REMEMBER_MS = 23 * 3600 * 1000; // a little under the server's expiry of unfinished uploads
const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000, 30000, 30000];
const SLOW_CHUNK_MS = 25 * 1000; // a chunk slower than this halves the next
const FAST_CHUNK_MS = 6 * 1000; // a full chunk faster than this doubles the next

/** A refusal that sending again cannot fix (bad request, too large, forbidden). */
function isFatal(error) {
  return (
    error instanceof ApiError &&
    error.status >= 400 &&
    error.status < 500 &&
    [408, 409, 423, 429, 460].indexOf(error.status) < 0
  );
}

function paused() {
  return new ApiError(0, "PAUSED", null);
}

/** `location` (absolute, or a path) as an absolute URL on the endpoint's origin. */
function resolveUrl(endpoint, location) {
  if (/^https?:\/\//i.test(location)) return location;
  const origin = endpoint.match(/^(https?:\/\/[^/]+)/i);
  return (origin ? origin[1] : "") + (location.charAt(0) === "/" ? location : `/${location}`);
}

function recall(key) {
  if (!key) return null;
  try {
    const saved = wx.getStorageSync(STORE_PREFIX + key);
    if (saved && saved.url && Date.now() - saved.at < REMEMBER_MS) return saved.url;
  } catch (error) {
    // Unreadable storage: start afresh.
  }
  forget(key);
  return null;
}

function remember(key, url) {
  if (!key) return;
  try {
    wx.setStorageSync(STORE_PREFIX + key, { url, at: Date.now() });
  } catch (error) {
    // Resuming after a restart is a convenience; the upload works without it.
  }
}

function forget(key) {
  if (!key) return;
  try {
    wx.removeStorageSync(STORE_PREFIX + key);
  } catch (error) {
    // Nothing to clean.
  }
}

class TusUpload {
  /**
   * @param {object} file path, size, name, type ("video"/"audio"/MIME), sha256 (hex or null);
   *   or, for bytes that are made as they are sent, read(position, length) → ArrayBuffer
   *   instead of path
   * @param {object} options endpoint (absolute URL of /api/v1/tus), headers() (per request),
   *   chunkBytes, minChunkBytes, maxChunkBytes, fingerprint (storage key or null),
   *   retryDelays (ms), onProgress(sent, total), onRetry(delayMs, attempt, error),
   *   onResume(offset)
   */
  constructor(file, options) {
    const opts = options || {};
    this.file = file;
    this.endpoint = opts.endpoint;
    this.headers = opts.headers || (() => ({}));
    this.minChunkBytes = opts.minChunkBytes || config.minChunkBytes;
    this.maxChunkBytes = Math.max(opts.maxChunkBytes || config.maxChunkBytes, this.minChunkBytes);
    this.chunkBytes = Math.min(
      Math.max(opts.chunkBytes || config.chunkBytes, this.minChunkBytes),
      this.maxChunkBytes,
    );
    this.key = opts.fingerprint || null;
    this.retryDelays = opts.retryDelays || RETRY_DELAYS_MS;
    this.onProgress = opts.onProgress || (() => {});
    this.onRetry = opts.onRetry || (() => {});
    this.onResume = opts.onResume || (() => {});
    this.url = null;
    this.offset = 0;
    this.stale = false; // the offset must be asked of the server before the next chunk
    this.generation = 0; // a pause ends the run of the generation it saw
    this.runGeneration = -1;
    this.running = null;
    this.task = null;
    this.sleeper = null;
    this.stats = { chunks: 0, heads: 0, retries: 0, timeouts: 0, resumedAt: [] };
  }

  /** Upload (or go on uploading) the whole file; resolves to the upload's URL. */
  start() {
    if (this.running && this.runGeneration === this.generation) return this.running;
    const before = this.running ? this.running.catch(() => null) : Promise.resolve();
    const generation = this.generation;
    this.runGeneration = generation;
    const run = before.then(() => this.run(generation));
    this.running = run;
    const clear = () => {
      if (this.running === run) this.running = null;
    };
    run.then(clear, clear);
    return run;
  }

  /** Stop now (the app goes to the background); `start()` goes on from the server's offset. */
  pause() {
    this.generation += 1;
    this.stale = this.url !== null;
    if (this.task) this.task.abort();
    if (this.sleeper) this.sleeper.wake();
  }

  /** End a wait between retries early: the network is back. */
  wake() {
    if (this.sleeper) this.sleeper.wake();
  }

  alive(generation) {
    if (generation !== this.generation) throw paused();
  }

  async run(generation) {
    let failures = 0;
    for (;;) {
      this.alive(generation);
      try {
        if (!this.url) await this.open(generation);
        else if (this.stale) await this.sync(generation);
        while (this.offset < this.file.size) {
          await this.patch(generation);
          failures = 0;
        }
        forget(this.key);
        return this.url;
      } catch (error) {
        if (generation !== this.generation) throw paused();
        if (!(error instanceof ApiError)) throw error;
        if ((error.status === 404 || error.status === 410) && this.url) {
          // The server no longer has the partial upload (expired or swept): begin again.
          forget(this.key);
          this.url = null;
          this.offset = 0;
        } else if (isFatal(error)) {
          throw error;
        }
        if (error.code === "REQUEST_TIMEOUT") {
          this.stats.timeouts += 1;
          this.chunkBytes = Math.max(this.minChunkBytes, Math.floor(this.chunkBytes / 2));
        }
        if (failures >= this.retryDelays.length) throw error;
        this.stale = this.url !== null;
        if (error.status === 409 && Number.isFinite(error.offset)) {
          // The server says where it stands: go on from there at once.
          this.offset = error.offset;
          this.stale = false;
          failures += 1;
          continue;
        }
        const delay = this.retryDelays[failures];
        failures += 1;
        this.stats.retries += 1;
        this.onRetry(delay, failures, error);
        this.sleeper = wakeableSleep(delay);
        await this.sleeper.promise;
        this.sleeper = null;
      }
    }
  }

  tusHeaders(extra) {
    return Object.assign({}, this.headers(), { "Tus-Resumable": TUS_VERSION }, extra);
  }

  metadata() {
    const pairs = [
      `filename ${encodeText(this.file.name || "video.mp4")}`,
      `filetype ${encodeText(this.file.type || "application/octet-stream")}`,
    ];
    // The server checks the whole file against it when the last byte arrives.
    if (this.file.sha256) pairs.push(`sha256 ${encodeText(this.file.sha256)}`);
    return pairs.join(",");
  }

  async open(generation) {
    const remembered = recall(this.key);
    if (remembered) {
      this.url = remembered;
      try {
        await this.sync(generation);
        if (this.offset > 0) {
          this.stats.resumedAt.push(this.offset);
          this.onResume(this.offset);
        }
        return;
      } catch (error) {
        if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
          forget(this.key);
          this.url = null;
        } else {
          throw error;
        }
      }
    }
    const response = await request({
      url: this.endpoint,
      method: "POST",
      header: this.tusHeaders({
        "Upload-Length": String(this.file.size),
        "Upload-Metadata": this.metadata(),
      }),
      onTask: (task) => {
        this.task = task;
      },
    });
    this.task = null;
    this.alive(generation);
    if (response.statusCode !== 201) throw fromResponse(response);
    const location = headerValue(response.header, "Location");
    if (!location) throw new ApiError(502, "INTERNAL_ERROR", null);
    this.url = resolveUrl(this.endpoint, location);
    const offset = Number(headerValue(response.header, "Upload-Offset"));
    this.offset = Number.isFinite(offset) && offset >= 0 ? offset : 0;
    this.stale = false;
    remember(this.key, this.url);
    this.onProgress(this.offset, this.file.size);
  }

  /** Ask the server for its offset (HEAD) and go on from it. */
  async sync(generation) {
    this.stats.heads += 1;
    const response = await request({
      url: this.url,
      method: "HEAD",
      header: this.tusHeaders(),
      onTask: (task) => {
        this.task = task;
      },
    });
    this.task = null;
    this.alive(generation);
    if (response.statusCode !== 200 && response.statusCode !== 204) throw fromResponse(response);
    const offset = Number(headerValue(response.header, "Upload-Offset"));
    const length = headerValue(response.header, "Upload-Length");
    if (length != null && Number(length) !== this.file.size) {
      // Another file under a remembered URL: that upload is not this one.
      throw new ApiError(410, "NOT_FOUND", null);
    }
    if (!Number.isFinite(offset) || offset < 0 || offset > this.file.size) {
      throw new ApiError(502, "INTERNAL_ERROR", null);
    }
    if (offset !== this.offset) this.stats.resumedAt.push(offset);
    this.offset = offset;
    this.stale = false;
    this.onProgress(offset, this.file.size);
  }

  async patch(generation) {
    const start = this.offset;
    const length = Math.min(this.chunkBytes, this.file.size - start);
    const data = this.file.read
      ? await this.file.read(start, length)
      : await readChunk(this.file.path, start, length);
    this.alive(generation);
    const began = Date.now();
    const response = await request({
      url: this.url,
      method: "POST",
      header: this.tusHeaders({
        "X-HTTP-Method-Override": "PATCH",
        "Upload-Offset": String(start),
        "Content-Type": OCTETS,
      }),
      data,
      onTask: (task) => {
        this.task = task;
      },
    });
    this.task = null;
    this.alive(generation);
    if (response.statusCode !== 204 && response.statusCode !== 200) {
      const error = fromResponse(response);
      const offset = headerValue(response.header, "Upload-Offset");
      if (offset != null && offset !== "") error.offset = Number(offset);
      throw error;
    }
    const offset = Number(headerValue(response.header, "Upload-Offset"));
    this.offset =
      Number.isFinite(offset) && offset >= start && offset <= this.file.size
        ? offset
        : start + length;
    this.stats.chunks += 1;
    const elapsed = Date.now() - began;
    if (elapsed > SLOW_CHUNK_MS) {
      this.chunkBytes = Math.max(this.minChunkBytes, Math.floor(this.chunkBytes / 2));
    } else if (elapsed < FAST_CHUNK_MS && length === this.chunkBytes) {
      this.chunkBytes = Math.min(this.maxChunkBytes, this.chunkBytes * 2);
    }
    this.onProgress(this.offset, this.file.size);
  }
}

module.exports = { OCTETS, STORE_PREFIX, TUS_VERSION, TusUpload, isFatal, resolveUrl };
