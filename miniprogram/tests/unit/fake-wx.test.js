// The fake wx keeps WeChat's limits and failure shapes, and the mini-program reads those
// failures by their errno.

const { createFakeWx, userTap } = require("../support/fake-wx.js");
const { ERRNO, LIMITS, MB, USER_DATA_PATH } = require("../support/wx-rules.js");
const { describe: describeError, failureCode, fromFailure } = require("../../utils/errors.js");
const { call } = require("../../utils/wxp.js");

function fsCall(fake, name, options) {
  return new Promise((resolve, reject) =>
    fake.wx.getFileSystemManager()[name]({ ...options, success: resolve, fail: reject }),
  );
}

function requestOf(fake, url) {
  return new Promise((resolve, reject) =>
    fake.wx.request({ url, method: "GET", success: resolve, fail: reject }),
  );
}

let fake;

function use(options) {
  fake = createFakeWx(options);
  global.wx = fake.wx;
  return fake;
}

test("the limits are WeChat's", () => {
  expect(LIMITS).toEqual({
    readFileBytes: 100 * 1024 * 1024,
    downloadFileBytes: 200 * 1024 * 1024,
    concurrentRequests: 10,
    requestTimeoutMs: 60000,
    userDataBytes: 200 * 1024 * 1024,
  });
  expect(use().limits).toEqual(LIMITS);
  expect(fake.wx.env.USER_DATA_PATH).toBe(USER_DATA_PATH);
});

test("readFile refuses more than its limit at once; a descriptor reads any part", async () => {
  use({ limits: { readFileBytes: 1000 } });
  fake.addFile("wxfile://tmp/v.mp4", Buffer.alloc(1500, 7));
  await expect(fsCall(fake, "readFile", { filePath: "wxfile://tmp/v.mp4" })).rejects.toEqual({
    errMsg: "readFile:fail the maximum size of the file storage limit is exceeded",
    errno: ERRNO.STORAGE_FULL,
  });
  const part = await fsCall(fake, "readFile", {
    filePath: "wxfile://tmp/v.mp4",
    position: 1000,
    length: 500,
  });
  expect(part.data.byteLength).toBe(500);
  const { fd } = await fsCall(fake, "open", { filePath: "wxfile://tmp/v.mp4" });
  const read = await fsCall(fake, "read", {
    fd,
    arrayBuffer: new ArrayBuffer(1500),
    length: 1500,
    position: 0,
  });
  expect(read.bytesRead).toBe(1500);
  await expect(fsCall(fake, "open", { filePath: "wxfile://tmp/none" })).rejects.toMatchObject({
    errno: ERRNO.NO_SUCH_FILE,
  });
});

test("the mini-program's own files hold 200 MB in all; temporary files do not count", async () => {
  use({ limits: { userDataBytes: 1000 } });
  fake.addFile("wxfile://tmp/big.mp4", Buffer.alloc(5000)); // an API's file: not counted
  const { fd } = await fsCall(fake, "open", { filePath: `${USER_DATA_PATH}/a.mp4`, flag: "w" });
  await fsCall(fake, "write", { fd, data: new ArrayBuffer(600), position: 0 });
  await fsCall(fake, "writeFile", { filePath: `${USER_DATA_PATH}/b.m4a`, data: new ArrayBuffer(300) });
  expect(fake.userBytes()).toBe(900);
  const full = await fsCall(fake, "write", { fd, data: new ArrayBuffer(200), position: 600 }).catch(
    (error) => error,
  );
  expect(full).toEqual({
    errMsg: "write:fail the maximum size of the file storage limit is exceeded",
    errno: ERRNO.STORAGE_FULL,
  });
  expect(failureCode(full)).toBe("PHONE_STORAGE_FULL");
  await fsCall(fake, "unlink", { filePath: `${USER_DATA_PATH}/b.m4a` });
  await fsCall(fake, "write", { fd, data: new ArrayBuffer(200), position: 600 });
  expect(fake.userBytes()).toBe(800);
});

test("an eleventh request at once waits until one of the ten ends", async () => {
  use();
  fake.answers.stall = (url) => url.endsWith("/stall");
  const tasks = [];
  const stalled = [];
  for (let i = 0; i < 10; i += 1) {
    stalled.push(
      new Promise((resolve) =>
        tasks.push(fake.wx.request({ url: "https://api.test/stall", fail: resolve })),
      ),
    );
  }
  let eleventhDone = false;
  const eleventh = requestOf(fake, "https://api.test/api/v1/health").then((answer) => {
    eleventhDone = true;
    return answer;
  });
  for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setTimeout(resolve, 0));
  // Queued, not refused: nothing has answered it while the ten are running.
  expect(eleventhDone).toBe(false);
  expect(fake.calls.filter((c) => c.name === "request")).toHaveLength(11);
  tasks[3].abort();
  expect(await stalled[3]).toEqual({ errMsg: "request:fail abort" });
  expect((await eleventh).statusCode).toBeLessThan(500);
  tasks.forEach((task) => task.abort());
  await Promise.all(stalled);
});

test("a stalled request times out at 60 s", async () => {
  use({ timeScale: 0.001 });
  fake.answers.stall = (url) => url.endsWith("/stall");
  const stalled = [];
  for (let i = 0; i < 10; i += 1) stalled.push(requestOf(fake, "https://api.test/stall").catch((e) => e));
  const timeouts = await Promise.all(stalled);
  expect(timeouts[0]).toEqual({ errMsg: "request:fail timeout", errno: ERRNO.TIMEOUT });
  expect(fromFailure(timeouts[0]).code).toBe("REQUEST_TIMEOUT");
  // A longer timeout than WeChat's is cut to 60 s: 60 ms at this time scale.
  const started = Date.now();
  const late = await new Promise((resolve) =>
    fake.wx.request({ url: "https://api.test/stall", timeout: 600000, fail: resolve }),
  );
  expect(late.errno).toBe(ERRNO.TIMEOUT);
  expect(Date.now() - started).toBeLessThan(5000);
  // Slots are free again.
  const ok = await requestOf(fake, "https://api.test/api/v1/health");
  expect(ok.statusCode).toBeLessThan(500);
});

test("downloadFile refuses a file over 200 MB", async () => {
  use();
  fake.answers.downloadBytes = 200 * MB + 1;
  const refused = await call("downloadFile", { url: "https://api.test/x.mp4" }).catch((e) => e);
  expect(refused).toEqual({ errMsg: "downloadFile:fail exceed max file size" });
  expect(describeError(fromFailure(refused)).code).toBe("DOWNLOAD_TOO_LARGE");
  fake.answers.downloadBytes = 200 * MB;
  const done = await call("downloadFile", { url: "https://api.test/x.mp4" });
  expect(done.tempFilePath).toMatch(/^wxfile:\/\/tmp\//);
});

test("shareVideoMessage works only from a tap", async () => {
  use();
  fake.addFile("wxfile://tmp/out.mp4", Buffer.alloc(10));
  const refused = await call("shareVideoMessage", { videoPath: "wxfile://tmp/out.mp4" }).catch((e) => e);
  expect(refused.errMsg).toBe("shareVideoMessage:fail can only be invoked by user TAP gesture.");
  userTap();
  await expect(call("shareVideoMessage", { videoPath: "wxfile://tmp/out.mp4" })).resolves.toEqual({
    errMsg: "shareVideoMessage:ok",
  });
  // The tap is over once the handler waited for something.
  await new Promise((resolve) => setTimeout(resolve, 1));
  await expect(call("shareVideoMessage", { videoPath: "wxfile://tmp/out.mp4" })).rejects.toBeTruthy();
});

test("privacy: the page's popup decides; a refusal is errno 104, not an album refusal", async () => {
  use({ privacy: "pending" });
  const asked = [];
  fake.wx.onNeedPrivacyAuthorization((resolve, info) => {
    asked.push(info.referrer);
    resolve({ event: "disagree" });
  });
  const refused = await call("saveVideoToPhotosAlbum", { filePath: "x" }).catch((e) => e);
  expect(refused).toEqual({
    errMsg: "saveVideoToPhotosAlbum:fail privacy permission is not authorized",
    errno: ERRNO.PRIVACY_NOT_AUTHORIZED,
  });
  expect(failureCode(refused)).toBe("PRIVACY_DENIED");
  expect(failureCode({ errMsg: "saveVideoToPhotosAlbum:fail auth deny", errno: 103 })).toBe(
    "ALBUM_DENIED",
  );
  fake.wx.onNeedPrivacyAuthorization((resolve) => resolve({ event: "agree", buttonId: "agree" }));
  fake.answers.chooseMedia = { tempFiles: [] };
  await expect(call("chooseMedia", {})).resolves.toEqual({ tempFiles: [] });
  expect(asked).toEqual(["saveVideoToPhotosAlbum"]);
  expect(fake.state.privacy).toBe("agreed");
});
