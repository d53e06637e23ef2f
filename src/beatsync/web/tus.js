// A small tus 1.0 client (core + creation): create, send the file in chunks, and after a network
// error ask the server where it stands (HEAD) and go on from there. The upload URL is remembered
// per file fingerprint, so choosing the same file again after a reload resumes it.

const TUS_VERSION = "1.0.0";
const STORE_PREFIX = "beatsync.tus.";
const REMEMBER_MS = 23 * 3600 * 1000; // a little under the server's expiry of unfinished uploads

export class TusError extends Error {
  constructor(message, { status = 0, response = null } = {}) {
    super(message);
    this.name = "TusError";
    this.status = status;
    this.response = response;
  }

  /** A refusal that sending again cannot fix (bad request, too large, gone, forbidden). */
  get fatal() {
    return this.status >= 400 && this.status < 500 && ![408, 409, 423, 429, 460].includes(this.status);
  }
}

function base64Utf8(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new DOMException("aborted", "AbortError"));
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    function onAbort() {
      clearTimeout(timer);
      reject(new DOMException("aborted", "AbortError"));
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The key a file is remembered by: the same pick of the same file gives the same key. */
export function fingerprint(file, scope = "") {
  return [scope, file.name, file.size, file.lastModified, file.type].join("|");
}

function recall(key) {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE_PREFIX + key) || "null");
    if (saved && Date.now() - saved.at < REMEMBER_MS) return saved.url;
  } catch {
    // Unreadable or no storage: start afresh.
  }
  forget(key);
  return null;
}

function remember(key, url) {
  try {
    localStorage.setItem(STORE_PREFIX + key, JSON.stringify({ url, at: Date.now() }));
  } catch {
    // Resuming after a reload is a convenience; uploading works without it.
  }
}

function forget(key) {
  try {
    localStorage.removeItem(STORE_PREFIX + key);
  } catch {
    // Nothing to clean.
  }
}

export class TusUpload {
  /**
   * @param {File} file
   * @param {object} options endpoint, headers() (extra headers per request), chunkSize,
   *   fingerprint (storage key or null), retryDelays (ms), onProgress(sent, total),
   *   onRetry(delayMs, attempt, error), onResume(offset)
   */
  constructor(file, options) {
    this.file = file;
    this.endpoint = options.endpoint;
    this.headers = options.headers || (() => ({}));
    this.chunkSize = options.chunkSize || 5 * 1024 * 1024;
    this.key = options.fingerprint || null;
    this.retryDelays = options.retryDelays || [1000, 2000, 4000, 8000, 15000, 30000, 30000];
    this.onProgress = options.onProgress || (() => {});
    this.onRetry = options.onRetry || (() => {});
    this.onResume = options.onResume || (() => {});
    this.url = null;
    this.offset = 0;
  }

  /** Upload the whole file; resolves to the upload URL. Abort with `signal`. */
  async start(signal) {
    let failures = 0;
    for (;;) {
      try {
        if (!this.url) await this.#open(signal);
        while (this.offset < this.file.size) {
          await this.#patch(signal);
          failures = 0;
        }
        if (this.key) forget(this.key);
        return this.url;
      } catch (error) {
        if (error.name === "AbortError") throw error;
        if (error instanceof TusError && error.status === 404 && this.url) {
          // The server no longer has the partial upload (expired or swept): begin again.
          if (this.key) forget(this.key);
          this.url = null;
          this.offset = 0;
        } else if (error instanceof TusError && error.fatal) {
          throw error;
        }
        if (failures >= this.retryDelays.length) throw error;
        const delay = this.retryDelays[failures];
        failures += 1;
        this.onRetry(delay, failures, error);
        await sleep(delay, signal);
        if (this.url) await this.#syncOffset(signal).catch(() => {});
      }
    }
  }

  async #open(signal) {
    const remembered = this.key ? recall(this.key) : null;
    if (remembered) {
      this.url = remembered;
      try {
        await this.#syncOffset(signal);
        if (this.offset > 0) this.onResume(this.offset);
        return;
      } catch (error) {
        if (error instanceof TusError && error.status >= 400 && error.status < 500) {
          forget(this.key);
          this.url = null;
        } else {
          throw error;
        }
      }
    }
    const response = await this.#fetch(this.endpoint, {
      method: "POST",
      headers: {
        "Upload-Length": String(this.file.size),
        "Upload-Metadata": [
          `filename ${base64Utf8(this.file.name)}`,
          `filetype ${base64Utf8(this.file.type || "application/octet-stream")}`,
        ].join(","),
      },
      signal,
    });
    if (response.status !== 201) throw await this.#error(response);
    const location = response.headers.get("Location");
    if (!location) throw new TusError("no Location in the creation answer", { status: 500 });
    this.url = new URL(location, window.location.href).href;
    this.offset = 0;
    if (this.key) remember(this.key, this.url);
    this.onProgress(0, this.file.size);
  }

  async #syncOffset(signal) {
    const response = await this.#fetch(this.url, { method: "HEAD", signal });
    if (!response.ok) throw await this.#error(response);
    const offset = Number(response.headers.get("Upload-Offset"));
    if (!Number.isFinite(offset) || offset < 0) {
      throw new TusError("no Upload-Offset in the answer", { status: 500 });
    }
    this.offset = offset;
    this.onProgress(offset, this.file.size);
  }

  // XMLHttpRequest rather than fetch: it reports the bytes sent while a chunk is on its way.
  #patch(signal) {
    const start = this.offset;
    const end = Math.min(start + this.chunkSize, this.file.size);
    const chunk = this.file.slice(start, end);
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PATCH", this.url);
      const headers = {
        ...this.headers(),
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": String(start),
        "Content-Type": "application/offset+octet-stream",
      };
      for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (event) => this.onProgress(start + event.loaded, this.file.size);
      const onAbort = () => xhr.abort();
      signal?.addEventListener("abort", onAbort, { once: true });
      const done = () => signal?.removeEventListener("abort", onAbort);
      xhr.onload = () => {
        done();
        if (xhr.status === 204 || xhr.status === 200) {
          const offset = Number(xhr.getResponseHeader("Upload-Offset"));
          this.offset = Number.isFinite(offset) && offset >= start ? offset : end;
          this.onProgress(this.offset, this.file.size);
          resolve();
        } else {
          let body = null;
          try {
            body = JSON.parse(xhr.responseText);
          } catch {
            body = null;
          }
          reject(new TusError(`PATCH answered ${xhr.status}`, { status: xhr.status, response: body }));
        }
      };
      xhr.onerror = () => {
        done();
        reject(new TusError("network error while sending a chunk"));
      };
      xhr.onabort = () => {
        done();
        reject(new DOMException("aborted", "AbortError"));
      };
      xhr.send(chunk);
    });
  }

  async #fetch(url, init) {
    try {
      return await fetch(url, {
        ...init,
        headers: { ...this.headers(), "Tus-Resumable": TUS_VERSION, ...(init.headers || {}) },
        credentials: "same-origin",
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new TusError("network error");
    }
  }

  async #error(response) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    return new TusError(`answered ${response.status}`, { status: response.status, response: body });
  }
}
