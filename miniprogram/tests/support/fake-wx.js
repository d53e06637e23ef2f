// A `wx` for component and page tests: requests go to a FakeService (asynchronously, like the
// real thing), files live in memory, pickers and dialogs answer what the test set, and every
// call the mini-program makes is recorded for the test to check.

const { FakeService } = require("./fake-service.js");

function toArrayBuffer(buffer) {
  return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength);
}

function later(fn) {
  setTimeout(fn, 0);
}

class FakeSocket {
  constructor(url, header) {
    this.url = url;
    this.header = header;
    this.jobId = (/\/jobs\/([\w-]+)\/ws/.exec(url) || [])[1];
    this.isOpen = false;
    this.closed = false;
    this.handlers = { open: [], message: [], close: [], error: [] };
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

  close() {
    if (this.closed) return;
    this.closed = true;
    this.isOpen = false;
    later(() => this.handlers.close.forEach((fn) => fn({ code: 1000, reason: "" })));
  }

  // The test's side of the socket.
  serverOpen() {
    this.isOpen = true;
    this.handlers.open.forEach((fn) => fn({ header: {} }));
  }

  serverSend(text) {
    this.handlers.message.forEach((fn) => fn({ data: text }));
  }

  serverFail() {
    this.isOpen = false;
    this.closed = true;
    this.handlers.error.forEach((fn) => fn({ errMsg: "connectSocket:fail" }));
    this.handlers.close.forEach((fn) => fn({ code: 1006, reason: "" }));
  }
}

/**
 * @param {object} [options] service (a FakeService), autoOpenSockets (default true: a socket
 *   opens and sends the job at once, as the service does)
 */
function createFakeWx(options) {
  const opts = options || {};
  const service = opts.service || new FakeService();
  const storage = new Map();
  const files = new Map();
  const calls = [];
  const answers = {
    chooseMedia: null,
    chooseMessageFile: null,
    getVideoInfo: null,
    authSetting: {},
    authorize: true,
    showModal: { confirm: true, cancel: false },
    saveVideo: null, // {errMsg} to fail
  };
  const sockets = [];
  const descriptors = new Map();
  let nextFd = 0;
  let downloads = 0;

  function record(name, args) {
    calls.push({ name, args });
  }

  function answer(settle, result, options) {
    later(() => {
      if (result && result.errMsg && /fail/.test(result.errMsg)) {
        if (options.fail) options.fail(result);
      } else if (options.success) {
        options.success(result);
      }
      if (options.complete) options.complete(result);
      if (settle) settle();
    });
  }

  const fs = {
    readFile(options) {
      record("readFile", {
        filePath: options.filePath,
        position: options.position,
        length: options.length,
      });
      const data = files.get(options.filePath);
      if (!data) {
        answer(null, { errMsg: "readFile:fail no such file or directory" }, options);
        return;
      }
      const start = options.position || 0;
      const end = options.length != null ? start + options.length : data.length;
      answer(null, { data: toArrayBuffer(data.subarray(start, end)) }, options);
    },
    // Descriptors: open, read and write by position, close; a written file grows as needed.
    open(options) {
      record("open", { filePath: options.filePath, flag: options.flag });
      const flag = options.flag || "r";
      if (flag === "w") files.set(options.filePath, Buffer.alloc(0));
      if (!files.has(options.filePath)) {
        answer(null, { errMsg: "open:fail no such file or directory" }, options);
        return;
      }
      const fd = `fd${(nextFd += 1)}`;
      descriptors.set(fd, { path: options.filePath, position: 0 });
      answer(null, { fd }, options);
    },
    fstat(options) {
      const d = descriptors.get(options.fd);
      const data = d && files.get(d.path);
      answer(
        null,
        data ? { stats: { size: data.length } } : { errMsg: "fstat:fail bad file descriptor" },
        options,
      );
    },
    read(options) {
      record("read", { fd: options.fd, position: options.position, length: options.length });
      const d = descriptors.get(options.fd);
      if (!d) {
        answer(null, { errMsg: "read:fail bad file descriptor" }, options);
        return;
      }
      const data = files.get(d.path);
      const start = options.position != null ? options.position : d.position;
      const piece = data.subarray(start, Math.min(data.length, start + options.length));
      new Uint8Array(options.arrayBuffer, options.offset || 0, piece.length).set(piece);
      d.position = start + piece.length;
      answer(null, { bytesRead: piece.length, arrayBuffer: options.arrayBuffer }, options);
    },
    write(options) {
      record("write", { fd: options.fd, length: options.data.byteLength });
      const d = descriptors.get(options.fd);
      if (!d) {
        answer(null, { errMsg: "write:fail bad file descriptor" }, options);
        return;
      }
      const bytes = Buffer.from(options.data);
      const start = options.position != null ? options.position : d.position;
      const data = files.get(d.path);
      const grown = Buffer.alloc(Math.max(data.length, start + bytes.length));
      data.copy(grown);
      bytes.copy(grown, start);
      files.set(d.path, grown);
      d.position = start + bytes.length;
      answer(null, { bytesWritten: bytes.length }, options);
    },
    close(options) {
      record("close", { fd: options.fd });
      const known = descriptors.delete(options.fd);
      answer(null, known ? {} : { errMsg: "close:fail bad file descriptor" }, options);
    },
    stat(options) {
      const data = files.get(options.path);
      answer(
        null,
        data ? { stats: { size: data.length } } : { errMsg: "stat:fail no such file" },
        options,
      );
    },
  };

  const wx = {
    request(options) {
      record("request", {
        method: options.method,
        url: options.url,
        header: options.header,
        data: options.data,
        timeout: options.timeout,
      });
      let done = false;
      const task = {
        abort() {
          if (done) return;
          done = true;
          later(() => options.fail && options.fail({ errMsg: "request:fail abort" }));
        },
      };
      later(() => {
        if (done) return;
        const outcome = service.handle({
          method: options.method || "GET",
          url: options.url,
          header: options.header || {},
          data: options.data,
        });
        if (done) return;
        done = true;
        if (outcome.fail) options.fail && options.fail({ errMsg: outcome.fail });
        else {
          let data = outcome.data;
          if (options.dataType === "json" && typeof data === "string" && data) {
            try {
              data = JSON.parse(data);
            } catch (error) {
              // Stays text, as WeChat leaves it.
            }
          }
          options.success &&
            options.success({ statusCode: outcome.statusCode, header: outcome.header, data });
        }
      });
      return task;
    },
    connectSocket(options) {
      record("connectSocket", { url: options.url, header: options.header });
      const socket = new FakeSocket(options.url, options.header);
      sockets.push(socket);
      service.sockets.push(socket);
      if (opts.autoOpenSockets !== false) {
        later(() => {
          socket.serverOpen();
          const job = service.jobs.get(socket.jobId);
          if (job) socket.serverSend(JSON.stringify(service.jobJson(job)));
        });
      }
      return socket;
    },
    getFileSystemManager() {
      return fs;
    },
    getStorageSync(key) {
      return storage.has(key) ? storage.get(key) : "";
    },
    setStorageSync(key, value) {
      storage.set(key, value);
    },
    removeStorageSync(key) {
      storage.delete(key);
    },
    chooseMedia(options) {
      record("chooseMedia", options);
      answer(null, answers.chooseMedia || { errMsg: "chooseMedia:fail cancel" }, options);
    },
    chooseMessageFile(options) {
      record("chooseMessageFile", options);
      answer(
        null,
        answers.chooseMessageFile || { errMsg: "chooseMessageFile:fail cancel" },
        options,
      );
    },
    getVideoInfo(options) {
      record("getVideoInfo", options);
      answer(null, answers.getVideoInfo || { errMsg: "getVideoInfo:fail" }, options);
    },
    getSetting(options) {
      record("getSetting", {});
      answer(null, { authSetting: Object.assign({}, answers.authSetting) }, options);
    },
    authorize(options) {
      record("authorize", { scope: options.scope });
      answers.authSetting[options.scope] = Boolean(answers.authorize);
      answer(
        null,
        answers.authorize ? { errMsg: "authorize:ok" } : { errMsg: "authorize:fail auth deny" },
        options,
      );
    },
    downloadFile(options) {
      record("downloadFile", { url: options.url, timeout: options.timeout });
      downloads += 1;
      const progress = [];
      const task = { onProgressUpdate: (fn) => progress.push(fn) };
      later(() => {
        progress.forEach((fn) =>
          fn({ progress: 100, totalBytesWritten: 10, totalBytesExpectedToWrite: 10 }),
        );
        answer(
          null,
          { statusCode: 200, tempFilePath: `wxfile://tmp/download-${downloads}.mp4` },
          options,
        );
      });
      return task;
    },
    saveVideoToPhotosAlbum(options) {
      record("saveVideoToPhotosAlbum", { filePath: options.filePath });
      answer(null, answers.saveVideo || { errMsg: "saveVideoToPhotosAlbum:ok" }, options);
    },
    shareVideoMessage(options) {
      record("shareVideoMessage", { videoPath: options.videoPath });
      answer(null, { errMsg: "shareVideoMessage:ok" }, options);
    },
    showModal(options) {
      record("showModal", { title: options.title, content: options.content });
      answer(null, answers.showModal, options);
    },
    showToast(options) {
      record("showToast", { title: options.title });
    },
    navigateTo(options) {
      record("navigateTo", { url: options.url });
    },
    previewImage(options) {
      record("previewImage", { urls: options.urls });
    },
    stopPullDownRefresh() {
      record("stopPullDownRefresh", {});
    },
  };

  return {
    wx,
    service,
    storage,
    files,
    calls,
    answers,
    sockets,
    /** The calls of one wx function, in order. */
    called(name) {
      return calls.filter((call) => call.name === name).map((call) => call.args);
    },
    /** Put a file "on the phone". */
    addFile(path, buffer) {
      files.set(path, buffer);
    },
  };
}

/** Wait until `condition()` is true (asynchronous work settles), or fail after `ms`. */
async function waitFor(condition, ms) {
  const deadline = Date.now() + (ms || 5000);
  for (;;) {
    const value = condition();
    if (value) return value;
    if (Date.now() > deadline)
      throw new Error(`condition not met in ${ms || 5000} ms: ${condition}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

module.exports = { FakeSocket, createFakeWx, waitFor };
