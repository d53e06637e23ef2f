// A `wx` for component and page tests: requests go to a FakeService (asynchronously, like the
// real thing), files live in memory, pickers and dialogs answer what the test set, and every
// call the mini-program makes is recorded for the test to check. WeChat's limits hold here as
// on a phone (wx-rules.js): reads over 100 MB, downloads over 200 MB, a request past its
// timeout, user files past 200 MB, sharing outside a tap and calls the user has not agreed to
// in the privacy guide all fail with WeChat's errMsg and errno; an 11th request at once waits
// until one of the ten ends.

const { FakeService } = require("./fake-service.js");
const { LIMITS, PRIVACY_APIS, USER_DATA_PATH, fail } = require("./wx-rules.js");

let activeFake = null;

/** Mark what runs now, until the next task, as inside a user's tap (for the active fake wx). */
function userTap() {
  if (!activeFake) return;
  activeFake.gesture = true;
  setTimeout(() => {
    if (activeFake) activeFake.gesture = false;
  }, 0);
}

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
 * WeChat's VideoDecoder over pictures a test gives: `frames(path)` lists a video's decoded
 * pictures as {pts (ms), width, height, rgba}, in presentation order. seek(ms) goes back to
 * the keyframe at or before that time (where decoding must start); getFrameData hands out the
 * pictures from there one by one, null after the last.
 */
class FakeVideoDecoder {
  constructor(frames) {
    this.source = frames;
    this.frames = null;
    this.next = 0;
    this.removed = false;
  }

  start(options) {
    this.frames = this.source ? this.source(options.source) : null;
    if (!this.frames) return Promise.reject({ errMsg: "VideoDecoder.start:fail no video" });
    this.next = 0;
    return Promise.resolve();
  }

  seek(ms) {
    let at = 0;
    this.frames.forEach((frame, i) => {
      if (frame.key && frame.pts <= ms + 1e-6) at = i;
    });
    this.next = at;
    return new Promise((resolve) => setTimeout(resolve, 0));
  }

  getFrameData() {
    if (!this.frames || this.next >= this.frames.length) return null;
    const frame = this.frames[this.next];
    this.next += 1;
    return { width: frame.width, height: frame.height, data: frame.rgba, pkPts: frame.pts, pkDts: frame.pts };
  }

  remove() {
    this.removed = true;
    return Promise.resolve();
  }
}

/**
 * WeChat's MediaContainer over the fake's files: extractDataSource lists a local file's tracks
 * (an .m4a holds sound only, anything else a picture and a sound), addTrack takes them, export
 * writes a temporary file (not a user file, so not counted against the 200 MB) that records
 * which tracks of which files it holds.
 */
class FakeMediaContainer {
  constructor(files, record, answers) {
    this.files = files;
    this.record = record;
    this.answers = answers || {};
    this.tracks = [];
    this.destroyed = false;
  }

  extractDataSource(options) {
    this.record("extractDataSource", { source: options.source });
    const data = this.files.get(options.source);
    later(() => {
      if (!data) {
        options.fail(fail.noSuchFile("extractDataSource", options.source));
        return;
      }
      const kinds = /\.m4a$/.test(options.source) ? ["audio"] : ["video", "audio"];
      options.success({ tracks: kinds.map((kind) => ({ kind, duration: 1, source: options.source })) });
    });
  }

  addTrack(track) {
    this.tracks.push(track);
  }

  removeTrack(track) {
    this.tracks = this.tracks.filter((t) => t !== track);
  }

  export(options) {
    const tracks = this.tracks.map((t) => ({ kind: t.kind, source: t.source }));
    this.record("export", { tracks });
    FakeMediaContainer.count += 1;
    const path = `wxfile://tmp/export-${FakeMediaContainer.count}.mp4`;
    const answer = () => {
      this.files.set(path, Buffer.from(JSON.stringify(tracks)));
      options.success({ tempFilePath: path });
    };
    // Some WeChat builds never call an export back; `exportAfterMs` answers that late instead.
    if (this.answers.exportHangs) return;
    if (this.answers.exportAfterMs) setTimeout(answer, this.answers.exportAfterMs);
    else later(answer);
  }

  destroy() {
    this.destroyed = true;
    this.record("destroyMediaContainer", {});
  }
}
FakeMediaContainer.count = 0;

/**
 * @param {object} [options] service (a FakeService), autoOpenSockets (default true: a socket
 *   opens and sends the job at once, as the service does), limits (some of wx-rules' LIMITS
 *   made smaller for a test), timeScale (request timeouts run this much faster; default 1),
 *   privacy ("agreed", the default, or "pending": the privacy APIs wait for the user)
 */
function createFakeWx(options) {
  const opts = options || {};
  const limits = Object.assign({}, LIMITS, opts.limits || {});
  const timeScale = opts.timeScale || 1;
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
    downloadBytes: 10, // the size of every file wx.downloadFile fetches
    stall: null, // (url, method) => true: that request never gets an answer
    privacyChoice: "agree", // WeChat's own privacy popup, when the page shows none
    subscribe: "accept", // the answer to wx.requestSubscribeMessage
    exportHangs: false, // MediaContainer.export never calls back
    exportAfterMs: 0, // MediaContainer.export answers this late
  };
  const state = {
    privacy: opts.privacy || "agreed",
    privacyHandler: null,
    inFlight: 0,
    waiting: [],
    keepScreenOn: false,
    networkHandlers: [],
    gesture: false,
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

  // At most ten requests and downloads run at once; more wait, in order, for a free slot.
  function startTask(run) {
    if (state.inFlight < limits.concurrentRequests) {
      state.inFlight += 1;
      run();
    } else {
      state.waiting.push(run);
    }
  }

  function finishTask() {
    const next = state.waiting.shift();
    if (next) next();
    else state.inFlight -= 1;
  }

  function isUserFile(path) {
    return String(path).startsWith(`${USER_DATA_PATH}/`);
  }

  /** Bytes of the user files, with `path` counted as `size` bytes. */
  function userBytesWith(path, size) {
    let total = 0;
    for (const [name, data] of files) {
      if (isUserFile(name) && name !== path) total += data.length;
    }
    return total + (isUserFile(path) ? size : 0);
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
        answer(null, fail.noSuchFile("readFile", options.filePath), options);
        return;
      }
      const start = options.position || 0;
      const end = options.length != null ? start + options.length : data.length;
      if (end - start > limits.readFileBytes) {
        answer(null, fail.readTooLarge("readFile"), options);
        return;
      }
      answer(null, { data: toArrayBuffer(data.subarray(start, end)) }, options);
    },
    writeFile(options) {
      record("writeFile", { filePath: options.filePath });
      const bytes = Buffer.from(options.data);
      if (userBytesWith(options.filePath, bytes.length) > limits.userDataBytes) {
        answer(null, fail.storageFull("writeFile"), options);
        return;
      }
      files.set(options.filePath, bytes);
      answer(null, {}, options);
    },
    unlink(options) {
      record("unlink", { filePath: options.filePath });
      const known = files.delete(options.filePath);
      answer(null, known ? {} : fail.noSuchFile("unlink", options.filePath), options);
    },
    // Descriptors: open, read and write by position, close; a written file grows as needed.
    open(options) {
      record("open", { filePath: options.filePath, flag: options.flag });
      const flag = options.flag || "r";
      if (flag === "w") files.set(options.filePath, Buffer.alloc(0));
      if (!files.has(options.filePath)) {
        answer(null, fail.noSuchFile("open", options.filePath), options);
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
        data ? { stats: { size: data.length } } : fail.badFd("fstat"),
        options,
      );
    },
    read(options) {
      record("read", { fd: options.fd, position: options.position, length: options.length });
      const d = descriptors.get(options.fd);
      if (!d) {
        answer(null, fail.badFd("read"), options);
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
        answer(null, fail.badFd("write"), options);
        return;
      }
      const bytes = Buffer.from(options.data);
      const start = options.position != null ? options.position : d.position;
      const data = files.get(d.path);
      const size = Math.max(data.length, start + bytes.length);
      if (userBytesWith(d.path, size) > limits.userDataBytes) {
        answer(null, fail.storageFull("write"), options);
        return;
      }
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
      answer(null, known ? {} : fail.badFd("close"), options);
    },
    stat(options) {
      const data = files.get(options.path);
      if (!data && options.recursive) {
        // A directory: every file under it, as WeChat lists them ({path, stats}).
        const prefix = `${String(options.path).replace(/\/+$/, "")}/`;
        const stats = [];
        for (const [name, bytes] of files) {
          if (name.startsWith(prefix))
            stats.push({ path: name.slice(prefix.length - 1), stats: fileStats(bytes.length) });
        }
        answer(null, { stats }, options);
        return;
      }
      answer(
        null,
        data ? { stats: fileStats(data.length) } : fail.noSuchFile("stat", options.path),
        options,
      );
    },
    mkdir(options) {
      record("mkdir", { dirPath: options.dirPath });
      answer(null, {}, options);
    },
    readdir(options) {
      record("readdir", { dirPath: options.dirPath });
      const prefix = `${String(options.dirPath).replace(/\/+$/, "")}/`;
      const names = new Set();
      for (const name of files.keys()) {
        if (name.startsWith(prefix)) names.add(name.slice(prefix.length).split("/")[0]);
      }
      answer(
        null,
        names.size ? { files: Array.from(names) } : fail.noSuchFile("readdir", options.dirPath),
        options,
      );
    },
  };

  function fileStats(size) {
    return { size, isFile: () => true, isDirectory: () => false };
  }

  /**
   * Run `proceed` once the user agreed to the privacy guide. Until then WeChat calls the page's
   * onNeedPrivacyAuthorization handler (else shows its own popup, answered by
   * answers.privacyChoice); a refusal fails the call with errno 104.
   */
  function withPrivacy(api, options, proceed) {
    if (state.privacy === "agreed" || !PRIVACY_APIS.has(api)) {
      proceed();
      return;
    }
    const decide = (choice) => {
      if (choice && choice.event === "agree") {
        state.privacy = "agreed";
        proceed();
      } else {
        answer(null, fail.privacy(api), options);
      }
    };
    if (state.privacyHandler) {
      later(() => state.privacyHandler((choice) => decide(choice), { referrer: api }));
    } else {
      later(() => decide({ event: answers.privacyChoice }));
    }
  }

  const wx = {
    env: { USER_DATA_PATH },
    request(options) {
      record("request", {
        method: options.method,
        url: options.url,
        header: options.header,
        data: options.data,
        timeout: options.timeout,
      });
      let done = false;
      let running = false;
      let timer = null;
      const settle = (fn, result) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (running) finishTask();
        else state.waiting = state.waiting.filter((start) => start !== run);
        if (fn) fn(result);
      };
      const task = {
        abort() {
          later(() => settle(options.fail, { errMsg: "request:fail abort" }));
        },
      };
      const run = () => {
        running = true;
        const timeoutMs = Math.min(options.timeout || limits.requestTimeoutMs, limits.requestTimeoutMs);
        timer = setTimeout(() => settle(options.fail, fail.timeout("request")), timeoutMs * timeScale);
        later(() => serve());
      };
      const serve = () => {
        if (done) return;
        const method = options.method || "GET";
        if (answers.stall && answers.stall(options.url, method)) return;
        const outcome = service.handle({
          method,
          url: options.url,
          header: options.header || {},
          data: options.data,
        });
        if (outcome.fail) {
          settle(options.fail, { errMsg: outcome.fail, errno: outcome.errno });
          return;
        }
        let data = outcome.data;
        if (options.dataType === "json" && typeof data === "string" && data) {
          try {
            data = JSON.parse(data);
          } catch (error) {
            // Stays text, as WeChat leaves it.
          }
        }
        settle(options.success, { statusCode: outcome.statusCode, header: outcome.header, data });
      };
      startTask(run);
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
      withPrivacy("chooseMedia", options, () =>
        answer(null, answers.chooseMedia || fail.cancel("chooseMedia"), options),
      );
    },
    chooseMessageFile(options) {
      record("chooseMessageFile", options);
      withPrivacy("chooseMessageFile", options, () =>
        answer(null, answers.chooseMessageFile || fail.cancel("chooseMessageFile"), options),
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
      withPrivacy("authorize", options, () => {
        answers.authSetting[options.scope] = Boolean(answers.authorize);
        answer(
          null,
          answers.authorize ? { errMsg: "authorize:ok" } : fail.authDeny("authorize"),
          options,
        );
      });
    },
    downloadFile(options) {
      record("downloadFile", { url: options.url, timeout: options.timeout });
      downloads += 1;
      const progress = [];
      const task = { onProgressUpdate: (fn) => progress.push(fn) };
      const served = fake.served.get(options.url.replace(/^https?:\/\/[^/]+/, ""));
      const size = served ? served.length : answers.downloadBytes;
      const path = `wxfile://tmp/download-${downloads}.mp4`;
      startTask(() =>
        later(() => {
          finishTask();
          if (size > limits.downloadFileBytes) {
            answer(null, fail.downloadTooLarge(), options);
            return;
          }
          progress.forEach((fn) =>
            fn({ progress: 100, totalBytesWritten: size, totalBytesExpectedToWrite: size }),
          );
          // Temporary files are not the mini-program's own: they do not count against its quota.
          files.set(path, served || Buffer.alloc(Math.min(size, 1024)));
          answer(null, { statusCode: 200, tempFilePath: path }, options);
        }),
      );
      return task;
    },
    saveVideoToPhotosAlbum(options) {
      record("saveVideoToPhotosAlbum", { filePath: options.filePath });
      withPrivacy("saveVideoToPhotosAlbum", options, () => {
        if (!files.has(options.filePath)) {
          answer(null, fail.noSuchFile("saveVideoToPhotosAlbum", options.filePath), options);
          return;
        }
        answer(null, answers.saveVideo || { errMsg: "saveVideoToPhotosAlbum:ok" }, options);
      });
    },
    shareVideoMessage(options) {
      record("shareVideoMessage", { videoPath: options.videoPath, gesture: state.gesture });
      if (!state.gesture) {
        answer(null, fail.notTap("shareVideoMessage"), options);
        return;
      }
      answer(
        null,
        files.has(options.videoPath)
          ? { errMsg: "shareVideoMessage:ok" }
          : fail.noSuchFile("shareVideoMessage", options.videoPath),
        options,
      );
    },
    createMediaContainer() {
      record("createMediaContainer", {});
      return new FakeMediaContainer(files, (name, args) => record(name, args), answers);
    },
    createVideoDecoder() {
      record("createVideoDecoder", {});
      return new FakeVideoDecoder(fake.videoFrames);
    },
    login(options) {
      record("login", {});
      const code = `code-${calls.length}`;
      if (fake.wechatUser && service.wechatCodes) service.wechatCodes.set(code, fake.wechatUser);
      answer(null, { errMsg: "login:ok", code }, options);
    },
    setKeepScreenOn(options) {
      record("setKeepScreenOn", { keepScreenOn: options.keepScreenOn });
      state.keepScreenOn = Boolean(options.keepScreenOn);
      answer(null, { errMsg: "setKeepScreenOn:ok" }, options);
    },
    onNeedPrivacyAuthorization(handler) {
      state.privacyHandler = handler;
    },
    getPrivacySetting(options) {
      record("getPrivacySetting", {});
      answer(
        null,
        { needAuthorization: state.privacy !== "agreed", privacyContractName: "《BeatSync 隐私保护指引》" },
        options,
      );
    },
    requirePrivacyAuthorize(options) {
      record("requirePrivacyAuthorize", {});
      withPrivacy("requirePrivacyAuthorize", options, () =>
        answer(null, { errMsg: "requirePrivacyAuthorize:ok" }, options),
      );
    },
    openPrivacyContract(options) {
      record("openPrivacyContract", {});
      answer(null, { errMsg: "openPrivacyContract:ok" }, options);
    },
    requestSubscribeMessage(options) {
      record("requestSubscribeMessage", { tmplIds: options.tmplIds, gesture: state.gesture });
      if (!state.gesture) {
        answer(null, fail.notTap("requestSubscribeMessage"), options);
        return;
      }
      const result = { errMsg: "requestSubscribeMessage:ok" };
      for (const id of options.tmplIds || []) result[id] = answers.subscribe;
      answer(null, result, options);
    },
    onNetworkStatusChange(handler) {
      state.networkHandlers.push(handler);
    },
    offNetworkStatusChange(handler) {
      state.networkHandlers = state.networkHandlers.filter((fn) => fn !== handler);
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

  const fake = {
    wx,
    videoFrames: null, // (path) => the video's pictures, for wx.createVideoDecoder
    served: new Map(), // URL path → the bytes wx.downloadFile fetches from it
    wechatUser: null, // the openid whose wx.login codes the fake service knows
    limits,
    state,
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
    /** Bytes the mini-program's own files take (its 200 MB quota). */
    userBytes() {
      return userBytesWith("", 0);
    },
    /** The phone's network changes (wx.onNetworkStatusChange). */
    setNetwork(isConnected, networkType) {
      state.networkHandlers.forEach((fn) =>
        fn({ isConnected, networkType: networkType || (isConnected ? "wifi" : "none") }),
      );
    },
    /** Whether a user's tap is in progress (set by userTap()). */
    get gesture() {
      return state.gesture;
    },
    set gesture(value) {
      state.gesture = value;
    },
  };
  activeFake = fake;
  return fake;
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

module.exports = { FakeSocket, FakeVideoDecoder, createFakeWx, userTap, waitFor };
