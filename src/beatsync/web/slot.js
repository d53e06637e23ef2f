// One file picker: choose or drop a file, show its name, size and length, upload it (instant
// when the server already has the same bytes, else resumable over tus), wait until the server
// has checked it. The card's data-state tells the rest of the page (and tests) where it stands.

import { api, ApiError, API, baseHeaders, currentOwner, ensureSession, mark } from "./api.js";
import { formatBytes, formatClock, formatPercent, formatSpeed, t } from "./i18n.js";
import { prepareLocal, referenceSound } from "./audiofirst.js";
import { fingerprint, TusError, TusUpload } from "./tus.js";

const CHUNK_BYTES = 5 * 1024 * 1024;
const HASH_LIMIT_BYTES = 200 * 1024 * 1024; // hashing reads the whole file into memory
const CHECK_DEADLINE_MS = 180_000;
const SPEED_WINDOW_MS = 4000;

/** The file's length in seconds from its metadata, read by a detached <video>; null if unknown. */
export function readDuration(file, timeoutMs = 10_000) {
  return new Promise((resolve) => {
    const video = document.createElement("video");
    const url = URL.createObjectURL(file);
    let timer = 0;
    const finish = (value) => {
      clearTimeout(timer);
      video.removeAttribute("src");
      video.load();
      URL.revokeObjectURL(url);
      resolve(Number.isFinite(value) && value > 0 ? value : null);
    };
    timer = setTimeout(() => finish(null), timeoutMs);
    video.preload = "metadata";
    video.muted = true;
    video.addEventListener("loadedmetadata", () => finish(video.duration), { once: true });
    video.addEventListener("error", () => finish(null), { once: true });
    video.src = url;
  });
}

async function sha256Hex(file) {
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The plain-words error of anything thrown while uploading. */
function describe(error) {
  if (error instanceof ApiError) return { code: error.code, message: error.message };
  if (error instanceof TusError) {
    if (error.response?.message) {
      return { code: error.response.code || `HTTP_${error.status}`, message: error.response.message };
    }
    if (error.status === 0) return { code: "NETWORK", message: t("error.network") };
    return { code: `HTTP_${error.status}`, message: t("error.unknown") };
  }
  return { code: "CLIENT_ERROR", message: t("error.unknown") };
}

export class UploadSlot {
  constructor(card, { onChange }) {
    this.card = card;
    this.kind = card.dataset.kind;
    this.onChange = onChange;
    this.storeKey = `beatsync.upload.${this.kind}`;
    this.el = {};
    for (const node of card.querySelectorAll("[data-role]")) this.el[node.dataset.role] = node;
    this.reset();
    this.#wire();
  }

  reset() {
    this.controller?.abort();
    this.controller = null;
    this.state = "empty";
    this.name = null;
    this.size = null;
    this.duration = null;
    this.durationRead = false;
    this.sent = 0;
    this.samples = [];
    this.status = null; // [key, vars]
    this.error = null;
    this.upload = null;
    // Audio-first (class video only): the video kept here, what was sent in its place, and
    // why not when the whole video goes to the server.
    this.local = null;
    this.total = null;
    this.path = null; // null | "audio" | "server" | "sound" (the reference's sound alone)
    this.reason = null;
    this.sound = null; // {sent, whole} bytes when the reference's sound alone is sent
    this.render();
  }

  get ready() {
    return this.state === "ready" && this.upload?.id;
  }

  get uploadId() {
    return this.upload?.id ?? null;
  }

  #wire() {
    this.el.input.addEventListener("change", () => {
      const file = this.el.input.files?.[0];
      // Cleared, so that choosing the same file again (to resume it) is a change too.
      this.el.input.value = "";
      if (file) this.choose(file);
    });
    const zone = this.card;
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      zone.classList.add("is-dragging");
    });
    zone.addEventListener("dragleave", (event) => {
      if (!zone.contains(event.relatedTarget)) zone.classList.remove("is-dragging");
    });
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("is-dragging");
      const file = event.dataTransfer.files?.[0];
      if (file) this.choose(file);
    });
  }

  /**
   * Upload `file`, replacing whatever this slot held. `serverReason`: upload the whole video
   * (why, as a `path.reason.*` key) even if this browser could keep it.
   */
  async choose(file, { serverReason = null } = {}) {
    this.reset();
    const controller = new AbortController();
    this.controller = controller;
    this.name = file.name;
    this.size = file.size;
    this.#set("reading", ["upload.reading"]);
    forgetUpload(this.storeKey);
    readDuration(file).then((seconds) => {
      if (this.controller !== controller) return;
      if (seconds != null) this.duration = seconds;
      this.durationRead = true;
      this.render();
    });
    try {
      await ensureSession();
      const sent = await this.#audioFirst(file, controller, serverReason);
      mark(`${this.kind}:read`);
      const instant = await this.#instant(sent, controller.signal);
      mark(`${this.kind}:hashed`);
      let upload = instant ?? (await this.#tus(sent, controller.signal));
      mark(`${this.kind}:sent`);
      if (upload.status === "receiving") {
        this.#set("checking", ["upload.checking"]);
        upload = await this.#waitChecked(upload.id, controller.signal);
      }
      mark(`${this.kind}:checked`);
      this.#finish(upload, instant ? "upload.instant" : "upload.ready");
    } catch (error) {
      if (error.name === "AbortError" || this.controller !== controller) return;
      this.error = describe(error);
      this.#set("failed", ["upload.failed"]);
    }
  }

  /**
   * The file to send: for the class video, its sound alone when this browser can read the
   * picture itself; else the whole file.
   */
  async #audioFirst(file, controller, serverReason) {
    this.total = file.size;
    if (this.kind === "bgm") return this.#referenceSound(file, controller);
    if (this.kind !== "dance") return file;
    if (serverReason) {
      this.path = "server";
      this.reason = serverReason;
      return file;
    }
    this.#set("reading", ["path.reading"]);
    const { local, reason } = await prepareLocal(file);
    if (this.controller !== controller) throw new DOMException("aborted", "AbortError");
    if (!local) {
      this.path = "server";
      this.reason = reason;
      return file;
    }
    this.local = local;
    this.path = "audio";
    this.total = local.audio.size;
    // While the sounds go up (the link is the bound, not the device): the picture's slices
    // the assembly will need, made ahead.
    local.prepareSlices().catch((error) => console.warn(error));
    return local.audio;
  }

  /** The reference to send: its sound alone when it is an MP4/MOV with AAC, else the file. */
  async #referenceSound(file, controller) {
    this.#set("reading", ["path.sound.reading"]);
    const sound = await referenceSound(file);
    if (this.controller !== controller) throw new DOMException("aborted", "AbortError");
    if (!sound) return file;
    this.path = "sound";
    this.sound = { sent: sound.size, whole: file.size };
    this.total = sound.size;
    return sound;
  }

  /** Show an upload the server still has from an earlier visit, if it is still usable. */
  async restore() {
    const id = readUpload(this.storeKey);
    if (!id) return;
    try {
      const upload = await api.upload(id);
      if (upload.status !== "ready" || this.state !== "empty") return;
      this.name = upload.filename;
      this.size = upload.size;
      this.durationRead = true;
      this.#finish(upload, "upload.restored");
    } catch {
      forgetUpload(this.storeKey);
    }
  }

  async #instant(file, signal) {
    if (!globalThis.crypto?.subtle || file.size > HASH_LIMIT_BYTES || file.size === 0) return null;
    this.#set("hashing", ["upload.hashing"]);
    const digest = await sha256Hex(file);
    if (signal.aborted) throw new DOMException("aborted", "AbortError");
    try {
      const upload = await api.instantUpload(digest, file.size, file.name);
      this.sent = file.size;
      return upload;
    } catch {
      // Not on the server (404), or the check failed: send the bytes, which retries on its own.
      return null;
    }
  }

  async #tus(file, signal) {
    this.#set("uploading", ["upload.connecting"]);
    const tus = new TusUpload(file, {
      endpoint: `${API}/tus`,
      headers: baseHeaders,
      chunkSize: CHUNK_BYTES,
      fingerprint: fingerprint(file, currentOwner() || ""),
      onProgress: (sent, total) => this.#progress(sent, total),
      onResume: (offset) => {
        this.samples = [];
        this.#set("uploading", ["upload.resumed", { percent: formatPercent(offset / file.size) }]);
      },
      onRetry: (delay, attempt) => {
        this.samples = [];
        this.#set("retrying", ["upload.retrying", { seconds: Math.round(delay / 1000), attempt }]);
      },
    });
    const url = await tus.start(signal);
    const id = new URL(url).pathname.split("/").filter(Boolean).pop();
    return api.upload(id);
  }

  async #waitChecked(id, signal) {
    const deadline = Date.now() + CHECK_DEADLINE_MS;
    let wait = 300;
    for (;;) {
      const upload = await api.upload(id);
      if (upload.status !== "receiving") return upload;
      if (Date.now() > deadline) return upload;
      await sleep(wait);
      if (signal.aborted) throw new DOMException("aborted", "AbortError");
      wait = Math.min(wait * 1.5, 2000);
    }
  }

  #progress(sent, total) {
    const now = performance.now();
    this.sent = sent;
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[0][0] > SPEED_WINDOW_MS) this.samples.shift();
    const [t0, b0] = this.samples[0];
    const speed = now - t0 > 400 ? ((sent - b0) * 1000) / (now - t0) : null;
    const percent = formatPercent(total ? sent / total : 0);
    const vars = { percent, speed: speed == null ? "…" : formatSpeed(Math.max(0, speed)) };
    this.#set("uploading", ["upload.progress", vars]);
  }

  #finish(upload, readyKey) {
    this.upload = upload;
    if (upload.size != null && !this.local && !this.sound) this.size = upload.size;
    if (this.duration == null && upload.media?.duration_s) this.duration = upload.media.duration_s;
    if (upload.status === "rejected") this.durationRead = true;
    if (upload.status === "ready") {
      this.sent = this.total ?? this.size ?? 0;
      // The sound alone is no use after a reload: the video it stands for is gone with it.
      // The reference's sound stands for the reference whole: kept like any upload.
      if (this.local) forgetUpload(this.storeKey);
      else rememberUpload(this.storeKey, upload.id);
      this.#set("ready", [readyKey]);
    } else {
      this.error = upload.error
        ? { code: upload.error.code, message: upload.error.message }
        : { code: "UPLOAD_INCOMPLETE", message: t("error.unknown") };
      this.#set("rejected", ["upload.rejected"]);
    }
  }

  #set(state, status) {
    this.state = state;
    this.status = status;
    this.render();
    this.onChange(this);
  }

  render() {
    const { el } = this;
    this.card.dataset.state = this.state;
    this.card.dataset.uploadId = this.upload?.id ?? "";
    el.choose.textContent = t(this.state === "empty" ? "pick.choose" : "pick.change");
    el.file.hidden = this.state === "empty";
    el.name.textContent = this.name ?? "";
    el.size.textContent = formatBytes(this.size);
    let duration = t(this.durationRead ? "duration.unknown" : "duration.reading");
    if (this.duration != null) duration = formatClock(this.duration);
    el.duration.textContent = duration;
    const total = this.total ?? this.size;
    const fraction = total ? Math.min(1, this.sent / total) : 0;
    el.progress.value = this.state === "ready" ? 1 : fraction;
    el.progress.hidden = this.state === "empty" || this.state === "rejected";
    el.status.textContent = this.status ? t(this.status[0], this.status[1]) : "";
    if (el.path) {
      el.path.hidden = !this.path;
      el.path.dataset.path = this.path ?? "";
      el.path.textContent = pathNote(this);
    }
    el.error.hidden = !this.error;
    el["error-message"].textContent = this.error?.message ?? "";
    el["error-code"].textContent = this.error ? t("error.code", { code: this.error.code }) : "";
  }
}

/** Which path the class video takes, in words (with the bytes it saves). */
export function pathNote(slot) {
  if (slot.path === "audio") {
    return t("path.audio", { sent: formatBytes(slot.local.audio.size), whole: formatBytes(slot.local.file.size) });
  }
  if (slot.path === "sound") {
    return t("path.sound", { sent: formatBytes(slot.sound.sent), whole: formatBytes(slot.sound.whole) });
  }
  if (slot.path === "server") return t("path.server", { reason: t(`path.reason.${slot.reason}`) });
  return "";
}

function readUpload(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function rememberUpload(key, id) {
  try {
    localStorage.setItem(key, id);
  } catch {
    // Not restored after a reload; nothing else depends on it.
  }
}

function forgetUpload(key) {
  try {
    localStorage.removeItem(key);
  } catch {
    // Nothing to clean.
  }
}
