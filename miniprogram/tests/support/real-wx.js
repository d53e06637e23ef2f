// A `wx` whose network and files are real, for running the mini-program's own modules in Node
// against a running BeatSync service: wx.request is an HTTP request (60-second cap honoured),
// wx.downloadFile writes a real file, wx.connectSocket opens a real WebSocket, the file-system
// manager reads the disk. Pickers answer with files the test names; the album, permissions and
// sharing are recorded (the "album" is a folder). Faults make the network fail on purpose: a
// request cut off after part of its body (the phone lost its connection), sockets refused.
// WeChat's limits hold (wx-rules.js): readFile at most 100 MB at once, downloads at most
// 200 MB, the mini-program's own files (wx.env.USER_DATA_PATH, a folder here) 200 MB in all;
// wx.createVideoDecoder decodes with FFmpeg; wx.createMediaContainer copies whole tracks into a
// temporary file (outside the user folder, so not counted) with PyAV (mux-tracks.py).

const fs = require("fs");
const http = require("http");
const https = require("https");
const path = require("path");
const WebSocket = require("ws");
const { LIMITS, fail } = require("./wx-rules.js");
const { execFile } = require("child_process");
const { RealVideoDecoder } = require("./real-decoder.js");

const DEFAULT_TIMEOUT_MS = 60000;
const MUX = path.join(__dirname, "mux-tracks.py");

function python() {
  return process.env.BEATSYNC_PYTHON || path.resolve(__dirname, "../../../.venv/bin/python");
}

function toArrayBuffer(buffer) {
  return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength);
}

function isArrayBuffer(value) {
  return Object.prototype.toString.call(value) === "[object ArrayBuffer]";
}

function later(fn) {
  setImmediate(fn);
}

function finish(options, ok, result) {
  later(() => {
    if (ok) {
      if (options.success) options.success(result);
    } else if (options.fail) {
      options.fail(result);
    }
    if (options.complete) options.complete(result);
  });
}

function transport(url) {
  return url.protocol === "https:" ? https : http;
}

/** The request body as WeChat would send it: bytes, text, or an object as JSON / a query. */
function encodeBody(method, url, header, data) {
  if (data == null) return null;
  if (isArrayBuffer(data)) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (typeof data === "string") return Buffer.from(data, "utf8");
  if (method === "GET") {
    for (const [key, value] of Object.entries(data)) url.searchParams.append(key, String(value));
    return null;
  }
  const type = Object.keys(header).find((k) => k.toLowerCase() === "content-type");
  if (type && /x-www-form-urlencoded/i.test(header[type])) {
    return Buffer.from(new URLSearchParams(data).toString(), "utf8");
  }
  if (!type) header["Content-Type"] = "application/json";
  return Buffer.from(JSON.stringify(data), "utf8");
}

class RealSocketTask {
  constructor(url, header, timeout, refused) {
    this.handlers = { open: [], message: [], close: [], error: [] };
    this.url = url;
    if (refused) {
      later(() => {
        this.emit("error", { errMsg: "connectSocket:fail refused by the test" });
        this.emit("close", { code: 1006, reason: "" });
      });
      return;
    }
    this.socket = new WebSocket(url, { headers: header, handshakeTimeout: timeout });
    this.socket.on("open", () => this.emit("open", { header: {} }));
    this.socket.on("message", (data, isBinary) => {
      this.emit("message", {
        data: isBinary ? toArrayBuffer(Buffer.from(data)) : data.toString("utf8"),
      });
    });
    this.socket.on("error", (error) =>
      this.emit("error", { errMsg: `connectSocket:fail ${error.message}` }),
    );
    this.socket.on("close", (code, reason) =>
      this.emit("close", { code, reason: reason.toString() }),
    );
  }

  emit(event, payload) {
    for (const fn of this.handlers[event]) fn(payload);
  }

  onOpen(fn) {
    this.handlers.open.push(fn);
  }

  onMessage(fn) {
    this.handlers.message.push(fn);
  }

  onClose(fn) {
    this.handlers.close.push(fn);
  }

  onError(fn) {
    this.handlers.error.push(fn);
  }

  send(options) {
    this.socket.send(options.data, (error) =>
      finish(options, !error, error ? { errMsg: String(error) } : {}),
    );
  }

  close(options) {
    const opts = options || {};
    if (this.socket && this.socket.readyState <= WebSocket.OPEN)
      this.socket.close(opts.code || 1000, opts.reason);
    finish(opts, true, {});
  }
}

/**
 * @param {object} options tempDir (downloads, saved files and the "album" go under it)
 */
function createRealWx(options) {
  const tempDir = options.tempDir;
  const albumDir = path.join(tempDir, "album");
  const userDir = path.join(tempDir, "usr");
  fs.mkdirSync(albumDir, { recursive: true });
  fs.mkdirSync(userDir, { recursive: true });
  const descriptors = new Map();
  const storage = new Map();
  const calls = [];
  const faults = [];
  const picks = { album: [], chat: [] };
  const state = { authSetting: {}, authorizeAnswer: true, refuseSockets: false, counter: 0 };

  function record(name, args) {
    calls.push(Object.assign({ name, at: Date.now() }, args));
  }

  function tempPath(ext) {
    state.counter += 1;
    return path.join(tempDir, `wxfile-${process.pid}-${state.counter}${ext}`);
  }

  function request(options) {
    const method = String(options.method || "GET").toUpperCase();
    const url = new URL(options.url);
    const header = Object.assign({}, options.header || {});
    const body = encodeBody(method, url, header, options.data);
    const timeout = options.timeout || DEFAULT_TIMEOUT_MS;
    const info = { method, url: url.href, header, bytes: body ? body.length : 0 };
    record("request", info);
    const fault = faults.map((fn) => fn(info)).find(Boolean) || null;
    if (body) header["Content-Length"] = String(body.length);
    let settled = false;
    const settle = (ok, result) => {
      if (settled) return;
      settled = true;
      finish(options, ok, result);
    };
    // A connection of its own per request: Node would otherwise reuse one the server may have
    // closed while idle (its keep-alive is 5 s), which no phone's network layer lets through.
    const req = transport(url).request(url, { method, headers: header, agent: false });
    req.setTimeout(timeout, () => {
      req.destroy();
      settle(false, { errMsg: "request:fail timeout" });
    });
    req.on("error", (error) => settle(false, { errMsg: `request:fail ${error.message}` }));
    req.on("response", (res) => {
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("error", (error) => settle(false, { errMsg: `request:fail ${error.message}` }));
      res.on("end", () => {
        const raw = Buffer.concat(chunks);
        let data;
        if (options.responseType === "arraybuffer") data = toArrayBuffer(raw);
        else {
          data = raw.toString("utf8");
          if ((options.dataType || "json") === "json" && data) {
            try {
              data = JSON.parse(data);
            } catch (error) {
              // Left as text, as WeChat leaves a body that is not JSON.
            }
          }
        }
        settle(true, {
          statusCode: res.statusCode,
          header: Object.assign({}, res.headers),
          data,
          errMsg: "request:ok",
        });
      });
    });
    if (fault && fault.cutAfter != null && body) {
      // The connection drops after the first bytes are on the wire.
      info.cutAfter = fault.cutAfter;
      req.write(body.subarray(0, fault.cutAfter), () => {
        setTimeout(() => {
          req.destroy();
          settle(false, { errMsg: "request:fail socket hang up" });
        }, 50);
      });
    } else {
      req.end(body || undefined);
    }
    return {
      abort() {
        if (settled) return;
        req.destroy();
        settle(false, { errMsg: "request:fail abort" });
      },
    };
  }

  function download(options) {
    const progress = [];
    let req = null;
    let settled = false;
    const settle = (ok, result) => {
      if (settled) return;
      settled = true;
      finish(options, ok, result);
    };
    const target =
      options.filePath || tempPath(path.extname(new URL(options.url).pathname) || ".tmp");
    record("downloadFile", { url: options.url, filePath: target });
    const get = (address, redirects) => {
      const url = new URL(address);
      req = transport(url).get(url, { headers: options.header || {}, agent: false }, (res) => {
        if (
          [301, 302, 303, 307, 308].includes(res.statusCode) &&
          res.headers.location &&
          redirects < 5
        ) {
          res.resume();
          get(new URL(res.headers.location, url).href, redirects + 1);
          return;
        }
        const total = Number(res.headers["content-length"]) || 0;
        if (total > LIMITS.downloadFileBytes) {
          res.destroy();
          settle(false, fail.downloadTooLarge());
          return;
        }
        let written = 0;
        const out = fs.createWriteStream(target);
        res.on("data", (chunk) => {
          written += chunk.length;
          const event = {
            progress: total ? Math.floor((written / total) * 100) : 0,
            totalBytesWritten: written,
            totalBytesExpectedToWrite: total,
          };
          progress.forEach((fn) => fn(event));
        });
        res.pipe(out);
        out.on("finish", () => {
          const result = { statusCode: res.statusCode, errMsg: "downloadFile:ok" };
          if (options.filePath) result.filePath = target;
          else result.tempFilePath = target;
          settle(true, result);
        });
        out.on("error", (error) => settle(false, { errMsg: `downloadFile:fail ${error.message}` }));
      });
      req.setTimeout(options.timeout || DEFAULT_TIMEOUT_MS, () => {
        req.destroy();
        settle(false, { errMsg: "downloadFile:fail timeout" });
      });
      req.on("error", (error) => settle(false, { errMsg: `downloadFile:fail ${error.message}` }));
    };
    get(options.url, 0);
    return {
      onProgressUpdate: (fn) => progress.push(fn),
      abort() {
        if (req) req.destroy();
        settle(false, { errMsg: "downloadFile:fail abort" });
      },
    };
  }

  /** Bytes under the user folder, with `filePath` counted as `size`. */
  function userBytesWith(filePath, size) {
    let total = 0;
    const walk = (dir) => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else if (full !== filePath) total += fs.statSync(full).size;
      }
    };
    walk(userDir);
    return total + (path.resolve(filePath).startsWith(userDir + path.sep) ? size : 0);
  }

  function fdCall(name, options, work) {
    try {
      finish(options, true, Object.assign({ errMsg: `${name}:ok` }, work()));
    } catch (error) {
      finish(options, false, error.wx || { errMsg: `${name}:fail ${error.message}` });
    }
  }

  function descriptor(name, fd) {
    const d = descriptors.get(fd);
    if (!d) throw Object.assign(new Error("bad fd"), { wx: fail.badFd(name) });
    return d;
  }

  const fileSystem = {
    open(options) {
      fdCall("open", options, () => {
        const flag = options.flag || "r";
        let real;
        try {
          real = fs.openSync(options.filePath, flag === "w" ? "w+" : flag === "a" ? "a+" : flag);
        } catch (error) {
          throw Object.assign(error, { wx: fail.noSuchFile("open", options.filePath) });
        }
        const fd = `fd-${(state.counter += 1)}`;
        descriptors.set(fd, { real, path: options.filePath });
        return { fd };
      });
    },
    fstat(options) {
      fdCall("fstat", options, () => {
        const stats = fs.fstatSync(descriptor("fstat", options.fd).real);
        return { stats: { size: stats.size, isFile: () => true, isDirectory: () => false } };
      });
    },
    read(options) {
      fdCall("read", options, () => {
        const d = descriptor("read", options.fd);
        const view = Buffer.from(options.arrayBuffer, options.offset || 0, options.length);
        let got = 0;
        while (got < options.length) {
          const n = fs.readSync(d.real, view, got, options.length - got, options.position + got);
          if (n === 0) break;
          got += n;
        }
        return { bytesRead: got, arrayBuffer: options.arrayBuffer };
      });
    },
    write(options) {
      fdCall("write", options, () => {
        const d = descriptor("write", options.fd);
        const bytes = Buffer.from(options.data);
        const size = Math.max(fs.fstatSync(d.real).size, options.position + bytes.length);
        if (userBytesWith(path.resolve(d.path), size) > LIMITS.userDataBytes) {
          throw Object.assign(new Error("full"), { wx: fail.storageFull("write") });
        }
        fs.writeSync(d.real, bytes, 0, bytes.length, options.position);
        return { bytesWritten: bytes.length };
      });
    },
    close(options) {
      fdCall("close", options, () => {
        fs.closeSync(descriptor("close", options.fd).real);
        descriptors.delete(options.fd);
        return {};
      });
    },
    unlink(options) {
      fdCall("unlink", options, () => {
        fs.unlinkSync(options.filePath);
        return {};
      });
    },
    readdir(options) {
      fdCall("readdir", options, () => {
        try {
          return { files: fs.readdirSync(options.dirPath) };
        } catch (error) {
          throw Object.assign(error, { wx: fail.noSuchFile("readdir", options.dirPath) });
        }
      });
    },
    mkdir(options) {
      fdCall("mkdir", options, () => {
        fs.mkdirSync(options.dirPath, { recursive: Boolean(options.recursive) });
        return {};
      });
    },
    readFile(options) {
      const size = fs.existsSync(options.filePath) ? fs.statSync(options.filePath).size : 0;
      const length = options.length != null ? options.length : size - (options.position || 0);
      if (length > LIMITS.readFileBytes) {
        finish(options, false, fail.readTooLarge("readFile"));
        return;
      }
      try {
        const data = fileSystem.readFileSync(
          options.filePath,
          options.encoding,
          options.position,
          options.length,
        );
        finish(options, true, { data, errMsg: "readFile:ok" });
      } catch (error) {
        finish(options, false, { errMsg: `readFile:fail ${error.message}` });
      }
    },
    readFileSync(filePath, encoding, position, length) {
      const fd = fs.openSync(filePath, "r");
      try {
        const size = fs.fstatSync(fd).size;
        const start = position || 0;
        const count = Math.max(0, Math.min(length != null ? length : size - start, size - start));
        const buffer = Buffer.alloc(count);
        let read = 0;
        while (read < count) {
          const got = fs.readSync(fd, buffer, read, count - read, start + read);
          if (got === 0) break;
          read += got;
        }
        const bytes = buffer.subarray(0, read);
        return encoding
          ? bytes.toString(encoding === "utf-8" ? "utf8" : encoding)
          : toArrayBuffer(bytes);
      } finally {
        fs.closeSync(fd);
      }
    },
    stat(options) {
      fs.stat(options.path, (error, stats) => {
        if (error) finish(options, false, { errMsg: `stat:fail ${error.message}` });
        else if (stats.isDirectory() && options.recursive) {
          const list = [];
          const walk = (dir) => {
            for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
              const full = path.join(dir, entry.name);
              const st = fs.statSync(full);
              list.push({
                path: full.slice(options.path.length),
                stats: { size: st.size, isFile: () => st.isFile(), isDirectory: () => st.isDirectory() },
              });
              if (entry.isDirectory()) walk(full);
            }
          };
          walk(options.path);
          finish(options, true, { stats: list });
        } else
          finish(options, true, {
            stats: {
              size: stats.size,
              lastModifiedTime: Math.floor(stats.mtimeMs / 1000),
              isFile: () => stats.isFile(),
              isDirectory: () => stats.isDirectory(),
            },
          });
      });
    },
    getFileInfo(options) {
      fs.stat(options.filePath, (error, stats) => {
        if (error) finish(options, false, { errMsg: `getFileInfo:fail ${error.message}` });
        else finish(options, true, { size: stats.size, errMsg: "getFileInfo:ok" });
      });
    },
    saveFile(options) {
      const saved = options.filePath || tempPath(path.extname(options.tempFilePath));
      fs.copyFile(options.tempFilePath, saved, (error) => {
        if (error) finish(options, false, { errMsg: `saveFile:fail ${error.message}` });
        else finish(options, true, { savedFilePath: saved, errMsg: "saveFile:ok" });
      });
    },
  };

  function choose(kind, options, shape) {
    record(kind === "album" ? "chooseMedia" : "chooseMessageFile", {
      options: Object.assign({}, options, { success: undefined, fail: undefined }),
    });
    const file = picks[kind].shift();
    if (!file) {
      finish(options, false, {
        errMsg: `${kind === "album" ? "chooseMedia" : "chooseMessageFile"}:fail cancel`,
      });
      return;
    }
    finish(options, true, shape(file));
  }

  /** MediaContainer: tracks of local files, exported whole into a temporary file. */
  function createMediaContainer() {
    record("createMediaContainer", {});
    let tracks = [];
    return {
      extractDataSource(options) {
        record("extractDataSource", { source: options.source });
        execFile(python(), [MUX, "probe", options.source], (error, stdout) => {
          if (error) finish(options, false, fail.noSuchFile("extractDataSource", options.source));
          else {
            const found = JSON.parse(stdout).map((t) => Object.assign(t, { source: options.source }));
            finish(options, true, { tracks: found, errMsg: "extractDataSource:ok" });
          }
        });
      },
      addTrack(track) {
        tracks.push(track);
      },
      removeTrack(track) {
        tracks = tracks.filter((t) => t !== track);
      },
      export(options) {
        const out = tempPath(".mp4");
        const sources = tracks.map((t) => `${t.source}:${t.kind}`);
        record("export", { tracks: sources, out });
        execFile(python(), [MUX, "export", out, ...sources], (error) =>
          finish(
            options,
            !error,
            error ? { errMsg: `export:fail ${error.message}` } : { tempFilePath: out },
          ),
        );
      },
      destroy() {
        tracks = [];
      },
    };
  }

  const wx = {
    createMediaContainer,
    request,
    downloadFile: download,
    connectSocket(options) {
      record("connectSocket", {
        url: options.url,
        header: options.header,
        refused: state.refuseSockets,
      });
      return new RealSocketTask(
        options.url,
        options.header || {},
        options.timeout || DEFAULT_TIMEOUT_MS,
        state.refuseSockets,
      );
    },
    getFileSystemManager() {
      return fileSystem;
    },
    getStorageSync(key) {
      return storage.has(key) ? JSON.parse(storage.get(key)) : "";
    },
    setStorageSync(key, value) {
      storage.set(key, JSON.stringify(value));
    },
    removeStorageSync(key) {
      storage.delete(key);
    },
    chooseMedia(options) {
      choose("album", options, (file) => ({
        type: "video",
        tempFiles: [
          {
            tempFilePath: file.path,
            size: fs.statSync(file.path).size,
            duration: file.duration,
            width: file.width,
            height: file.height,
            fileType: "video",
          },
        ],
      }));
    },
    chooseMessageFile(options) {
      choose("chat", options, (file) => ({
        tempFiles: [
          {
            path: file.path,
            size: fs.statSync(file.path).size,
            name: file.name,
            type: file.type || "file",
            time: Math.floor(Date.now() / 1000),
          },
        ],
      }));
    },
    getVideoInfo(options) {
      const known = options.src && state.videoInfo ? state.videoInfo[options.src] : null;
      if (known) finish(options, true, known);
      else finish(options, false, { errMsg: "getVideoInfo:fail" });
    },
    getSetting(options) {
      record("getSetting", {});
      finish(options, true, {
        authSetting: Object.assign({}, state.authSetting),
        errMsg: "getSetting:ok",
      });
    },
    authorize(options) {
      record("authorize", { scope: options.scope });
      state.authSetting[options.scope] = Boolean(state.authorizeAnswer);
      finish(options, state.authorizeAnswer, {
        errMsg: state.authorizeAnswer ? "authorize:ok" : "authorize:fail auth deny",
      });
    },
    saveVideoToPhotosAlbum(options) {
      record("saveVideoToPhotosAlbum", { filePath: options.filePath });
      if (!state.authSetting["scope.writePhotosAlbum"]) {
        finish(options, false, { errMsg: "saveVideoToPhotosAlbum:fail auth deny" });
        return;
      }
      const saved = path.join(albumDir, `${calls.length}-${path.basename(options.filePath)}`);
      fs.copyFile(options.filePath, saved, (error) => {
        if (error)
          finish(options, false, { errMsg: `saveVideoToPhotosAlbum:fail ${error.message}` });
        else {
          record("album", { path: saved });
          finish(options, true, { errMsg: "saveVideoToPhotosAlbum:ok" });
        }
      });
    },
    env: { USER_DATA_PATH: userDir },
    createVideoDecoder() {
      record("createVideoDecoder", {});
      return new RealVideoDecoder();
    },
    setKeepScreenOn(options) {
      record("setKeepScreenOn", { keepScreenOn: options.keepScreenOn });
      finish(options, true, { errMsg: "setKeepScreenOn:ok" });
    },
    shareVideoMessage(options) {
      record("shareVideoMessage", {
        videoPath: options.videoPath,
        exists: fs.existsSync(options.videoPath),
      });
      finish(options, true, { errMsg: "shareVideoMessage:ok" });
    },
    showModal(options) {
      record("showModal", { title: options.title, content: options.content });
      finish(options, true, { confirm: true, cancel: false });
    },
    showToast(options) {
      record("showToast", { title: options.title });
      finish(options, true, {});
    },
    navigateTo(options) {
      record("navigateTo", { url: options.url });
      finish(options, true, {});
    },
  };

  return {
    wx,
    calls,
    storage,
    albumDir,
    userDir,
    state,
    /** The next picker of `kind` ("album" | "chat") answers with `file` ({path, name, duration…}). */
    willPick(kind, file) {
      picks[kind].push(file);
    },
    /** fn(request {method, url, header, bytes}) → {cutAfter: n} to drop the connection; returns a remover. */
    fault(fn) {
      faults.push(fn);
      return () => faults.splice(faults.indexOf(fn), 1);
    },
    called(name) {
      return calls.filter((call) => call.name === name);
    },
  };
}

module.exports = { createRealWx };
