// The first page with a fake network: choosing, checking, uploading (tus, instant, paused in
// the background and resumed), refusals in words, and starting the job.

const crypto = require("crypto");
const { load, mount, tap } = require("../support/simulate.js");
const { createFakeWx, waitFor } = require("../support/fake-wx.js");
const api = require("../../utils/api.js");
const background = require("../../utils/background.js");
const limits = require("../../utils/limits.js");

const id = load("pages/index/index");

let fake;
let page;

function bytes(size, seed) {
  const out = Buffer.alloc(size);
  let state = seed;
  for (let i = 0; i < size; i += 1) {
    state = (state * 1103515245 + 12345) >>> 0;
    out[i] = state >>> 24;
  }
  return out;
}

function album(path, size, duration) {
  fake.answers.chooseMedia = {
    type: "video",
    tempFiles: [{ tempFilePath: path, size, duration, width: 320, height: 240, fileType: "video" }],
  };
}

function chat(path, size, name) {
  fake.answers.chooseMessageFile = { tempFiles: [{ path, size, name, type: "file", time: 0 }] };
}

function requests(predicate) {
  return fake.called("request").filter(predicate);
}

const isPatch = (r) => r.method === "POST" && r.header["X-HTTP-Method-Override"] === "PATCH";

beforeEach(() => {
  fake = createFakeWx();
  global.wx = fake.wx;
  api.setBase(fake.service.base);
  limits.forgetLimits();
  page = mount(id);
  page.instance.onLoad({});
});

afterEach(() => {
  page.instance.onUnload();
});

async function pick(kind, source) {
  await tap(page.querySelector(`.card-${kind}`), source === "chat" ? ".pick-chat" : ".pick-album");
}

test("both files upload over tus with progress, then the job starts", async () => {
  const dance = bytes(700 * 1024, 1);
  fake.addFile("wxfile://tmp/dance.mp4", dance);
  album("wxfile://tmp/dance.mp4", dance.length, 14.2);
  const views = [];
  const show = page.instance.show.bind(page.instance);
  page.instance.show = (kind, view) => {
    views.push(view);
    show(kind, view);
  };
  await pick("dance", "album");
  await waitFor(() => page.data.dance.state === "ready");

  const card = page.data.dance;
  expect(card.name).toBe("课堂视频.mp4");
  expect(card.sizeText).toBe("700 KB");
  expect(card.durationText).toBe("14 秒");
  expect(card.percent).toBe(100);
  expect(card.statusText).toBe("上传完成");
  // Hashed first; the server did not have it; then tus, chunk by chunk, in ArrayBuffers.
  const upload = fake.service.uploads.get(card.uploadId);
  expect(Buffer.compare(upload.bytes, dance)).toBe(0);
  expect(upload.expectedSha).toBe(crypto.createHash("sha256").update(dance).digest("hex"));
  expect(upload.filename).toBe("课堂视频.mp4");
  expect(requests((r) => r.url.endsWith("/uploads/instant")).length).toBe(1);
  const patches = requests(isPatch);
  expect(patches.length).toBeGreaterThanOrEqual(1);
  for (const patch of patches) {
    expect(Object.prototype.toString.call(patch.data)).toBe("[object ArrayBuffer]");
    expect(patch.header["Content-Type"]).toBe("application/offset+octet-stream");
    expect(patch.header["Tus-Resumable"]).toBe("1.0.0");
    expect(patch.header["Accept-Language"]).toBe("zh-CN");
    expect(patch.timeout).toBe(60000);
  }
  const progress = views
    .filter((v) => v.kind === "dance" && v.state === "uploading")
    .map((v) => v.percent);
  expect(progress.length).toBeGreaterThan(0);
  expect(progress).toEqual([...progress].sort((a, b) => a - b));
  expect(page.data.canStart).toBe(false);

  const reference = bytes(300 * 1024, 2);
  fake.addFile("wxfile://tmp/ref.m4a", reference);
  chat("wxfile://tmp/ref.m4a", reference.length, "练习音乐.m4a");
  await pick("bgm", "chat");
  await waitFor(() => page.data.bgm.state === "ready");
  expect(page.data.bgm.name).toBe("练习音乐.m4a");
  expect(page.data.bgm.durationText).toBe("14 秒"); // from the server's probe
  expect(fake.called("chooseMessageFile")[0].type).toBe("file");
  expect(page.data.canStart).toBe(true);
  expect(page.data.startHint).toBe("准备好了，点击开始。");

  await tap(page, ".start");
  await waitFor(() => fake.called("navigateTo").length === 1);
  const created = requests((r) => r.method === "POST" && r.url.endsWith("/api/v1/jobs"));
  expect(JSON.parse(created[0].data)).toEqual({
    dance_upload_id: page.data.dance.uploadId,
    bgm_upload_id: page.data.bgm.uploadId,
    options: {},
  });
  const jobId = Array.from(fake.service.jobs.keys())[0];
  expect(fake.called("navigateTo")[0].url).toBe(`/pages/job/job?id=${jobId}`);
});

test("the 720p switch asks for a re-encode", async () => {
  for (const kind of ["dance", "bgm"]) {
    const data = bytes(1000, kind === "dance" ? 3 : 4);
    fake.addFile(`wxfile://tmp/${kind}.mp4`, data);
    album(`wxfile://tmp/${kind}.mp4`, data.length, 10);
    await pick(kind, "album");
    await waitFor(() => page.data[kind].state === "ready");
  }
  page.instance.onCompact({ detail: { value: true } });
  await page.instance.onStart();
  const created = requests((r) => r.method === "POST" && r.url.endsWith("/api/v1/jobs"));
  expect(JSON.parse(created[0].data).options).toEqual({ reencode: true, max_height: 720 });
});

test("the same file again is sent instantly (sha256) without a byte of upload", async () => {
  const data = bytes(64 * 1024, 5);
  fake.addFile("wxfile://tmp/a.mp4", data);
  album("wxfile://tmp/a.mp4", data.length, 12);
  await pick("dance", "album");
  await waitFor(() => page.data.dance.state === "ready");
  const first = page.data.dance.uploadId;
  const patchesBefore = requests(isPatch).length;

  fake.addFile("wxfile://tmp/b.mp4", data); // the same bytes, picked again
  album("wxfile://tmp/b.mp4", data.length, 12);
  await pick("dance", "album");
  await waitFor(() => page.data.dance.statusText === "秒传完成：服务器上已有这个文件");
  expect(page.data.dance.state).toBe("ready");
  expect(page.data.dance.uploadId).toBe(first);
  expect(requests(isPatch).length).toBe(patchesBefore);
  expect(requests((r) => r.url.endsWith("/api/v1/tus") && r.method === "POST").length).toBe(1);
});

test("going to the background stops the upload; coming back resumes from the server's offset", async () => {
  const data = bytes(1200 * 1024, 6);
  fake.addFile("wxfile://tmp/long.mp4", data);
  album("wxfile://tmp/long.mp4", data.length, 30);
  // The app is hidden while the second chunk is on its way (it still reaches the server).
  let patches = 0;
  fake.service.fault((request) => {
    if (request.header["X-HTTP-Method-Override"] === "PATCH" && ++patches === 2)
      background.hidden();
  });
  // Chunks of the minimum size, so the file takes several.
  page.instance.slots.dance.options.chunkBytes = 256 * 1024;
  page.instance.slots.dance.options.maxChunkBytes = 256 * 1024;
  await pick("dance", "album");
  await waitFor(() => page.data.dance.state === "paused");
  expect(page.data.dance.statusText).toMatch(/^已暂停（\d+%），回到小程序后继续$/);
  const upload = Array.from(fake.service.uploads.values())[0];
  expect(upload.bytes.length).toBe(512 * 1024); // the server kept the chunk the phone never heard of
  const heads = () => requests((r) => r.method === "HEAD").length;
  expect(heads()).toBe(0);

  background.shown();
  await waitFor(() => page.data.dance.state === "ready");
  expect(heads()).toBe(1);
  const offsets = requests(isPatch).map((r) => Number(r.header["Upload-Offset"]));
  expect(offsets).toEqual([0, 256 * 1024, 512 * 1024, 768 * 1024, 1024 * 1024]);
  expect(Buffer.compare(upload.bytes, data)).toBe(0);
});

test("a file over the size limit is refused before anything is sent", async () => {
  fake.service.maxSize = 400 * 1024 * 1024;
  album("wxfile://tmp/huge.mp4", 600 * 1024 * 1024, 60);
  await pick("dance", "album");
  await waitFor(() => page.data.dance.state === "invalid");
  expect(page.data.dance.error).toEqual({
    code: "LOCAL_TOO_LARGE",
    message: "文件太大（600 MB），最大 400 MB，请剪短或压缩后再试。",
  });
  // Only the limits were asked for.
  expect(fake.called("request").map((r) => r.method)).toEqual(["OPTIONS"]);
  const card = page.querySelector(".card-dance");
  expect(card.querySelector(".error-message").dom.textContent).toBe(
    "文件太大（600 MB），最大 400 MB，请剪短或压缩后再试。",
  );
});

test("a video over ten minutes is refused in words", async () => {
  fake.addFile("wxfile://tmp/long.mp4", bytes(1000, 7));
  album("wxfile://tmp/long.mp4", 1000, 725);
  await pick("dance", "album");
  await waitFor(() => page.data.dance.state === "invalid");
  expect(page.data.dance.error.message).toBe(
    "视频太长（12 分 05 秒），最长 10 分 00 秒，请剪短后再试。",
  );
});

test("a class video must be a video; an audio file from a chat is refused", async () => {
  chat("wxfile://tmp/song.mp3", 5000, "歌.mp3");
  fake.answers.chooseMessageFile.tempFiles[0].type = "file";
  await pick("dance", "chat");
  await waitFor(() => page.data.dance.state === "invalid");
  expect(page.data.dance.error.code).toBe("NEEDS_VIDEO");
  expect(fake.called("chooseMessageFile")[0].type).toBe("video");
});

test("a file the server finds unusable shows the server's reason", async () => {
  fake.service.rejectNext = "NO_AUDIO_TRACK";
  const data = bytes(2000, 8);
  fake.addFile("wxfile://tmp/silent.mp4", data);
  album("wxfile://tmp/silent.mp4", data.length, 5);
  await pick("dance", "album");
  await waitFor(() => page.data.dance.state === "rejected");
  expect(page.data.dance.error).toEqual({
    code: "NO_AUDIO_TRACK",
    message: "文件里没有声音，请选择带声音的视频或音频。",
  });
  expect(page.data.canStart).toBe(false);
});

test("closing the picker changes nothing", async () => {
  await pick("dance", "album");
  await new Promise((resolve) => setTimeout(resolve, 20));
  expect(page.data.dance.state).toBe("empty");
  expect(fake.called("request")).toEqual([]);
});

test("a refused start is explained, and the button comes back", async () => {
  for (const kind of ["dance", "bgm"]) {
    const data = bytes(1000, kind === "dance" ? 9 : 10);
    fake.addFile(`wxfile://tmp/${kind}.mp4`, data);
    album(`wxfile://tmp/${kind}.mp4`, data.length, 10);
    await pick(kind, "album");
    await waitFor(() => page.data[kind].state === "ready");
  }
  fake.service.fault((request) =>
    request.method === "POST" && request.url.endsWith("/api/v1/jobs")
      ? {
          statusCode: 429,
          header: {},
          data: { code: "QUOTA_EXCEEDED", message: "任务数量已达上限，请等待当前任务完成。" },
        }
      : undefined,
  );
  await page.instance.onStart();
  expect(page.data.error).toEqual({
    code: "QUOTA_EXCEEDED",
    message: "任务数量已达上限，请等当前任务完成后再开始。",
  });
  expect(page.data.canStart).toBe(true);
  expect(fake.called("navigateTo")).toEqual([]);
});

test("a lost connection is shown, and the upload goes on by itself from the server's offset", async () => {
  const data = bytes(600 * 1024, 11);
  fake.addFile("wxfile://tmp/net.mp4", data);
  album("wxfile://tmp/net.mp4", data.length, 20);
  const slot = page.instance.slots.dance;
  Object.assign(slot.options, {
    chunkBytes: 256 * 1024,
    maxChunkBytes: 256 * 1024,
    retryDelays: [30, 30],
  });
  let cut = false;
  fake.service.fault((request) => {
    if (!cut && request.header["Upload-Offset"] === String(256 * 1024)) {
      cut = true;
      return { partial: 1000, fail: "request:fail net::ERR_NETWORK_CHANGED" };
    }
    return undefined;
  });
  const statuses = [];
  const show = page.instance.show.bind(page.instance);
  page.instance.show = (kind, view) => {
    statuses.push(view.statusText);
    show(kind, view);
  };
  await pick("dance", "album");
  await waitFor(() => page.data.dance.state === "ready");
  expect(statuses).toContain("网络中断，1 秒后从 42% 处继续（第 1 次）…");
  const offsets = requests(isPatch).map((r) => Number(r.header["Upload-Offset"]));
  expect(offsets).toEqual([0, 256 * 1024, 256 * 1024 + 1000, 512 * 1024 + 1000]);
  expect(Buffer.compare(Array.from(fake.service.uploads.values())[0].bytes, data)).toBe(0);
});

test("with the network gone for good the card says so, and 继续上传 picks up where it stopped", async () => {
  const data = bytes(300 * 1024, 12);
  fake.addFile("wxfile://tmp/off.mp4", data);
  album("wxfile://tmp/off.mp4", data.length, 20);
  const slot = page.instance.slots.dance;
  Object.assign(slot.options, {
    chunkBytes: 256 * 1024,
    maxChunkBytes: 256 * 1024,
    retryDelays: [10],
  });
  const offline = fake.service.fault((request) =>
    request.header["Upload-Offset"] === String(256 * 1024)
      ? { fail: "request:fail timeout" }
      : undefined,
  );
  await pick("dance", "album");
  await waitFor(() => page.data.dance.state === "failed");
  expect(page.data.dance.error).toEqual({
    code: "REQUEST_TIMEOUT",
    message: "网络太慢，请求在 60 秒内没有完成，请换个网络后重试。",
  });
  expect(page.data.dance.canRetry).toBe(true);
  const card = page.querySelector(".card-dance");
  expect(card.querySelector(".retry").dom.textContent.trim()).toBe("继续上传");

  offline();
  await tap(card, ".retry");
  await waitFor(() => page.data.dance.state === "ready");
  const offsets = requests(isPatch).map((r) => Number(r.header["Upload-Offset"]));
  expect(offsets[0]).toBe(0);
  expect(offsets[offsets.length - 1]).toBe(256 * 1024);
  expect(requests((r) => r.method === "POST" && r.url.endsWith("/api/v1/tus")).length).toBe(1);
  expect(Buffer.compare(Array.from(fake.service.uploads.values())[0].bytes, data)).toBe(0);
});
