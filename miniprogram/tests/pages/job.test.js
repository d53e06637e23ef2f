// The job page with a fake network: live stages over the socket, polling when the socket
// fails, the result, saving to the album (with and without the permission), another candidate,
// a nudge, a failure in words and a retry.

const { load, mount, tap, text } = require("../support/simulate.js");
const { createFakeWx, waitFor } = require("../support/fake-wx.js");
const { sampleResult } = require("../support/fake-service.js");
const api = require("../../utils/api.js");

const id = load("pages/job/job");

let fake;
let page;
let job;

async function startJob(options) {
  fake = createFakeWx(options);
  global.wx = fake.wx;
  api.setBase(fake.service.base);
  await api.ensureSession();
  const owner = fake.service.tokens.get(api.token());
  job = fake.service.newJob(
    { dance_upload_id: "upl_d", bgm_upload_id: "upl_b", options: {} },
    owner,
  );
  page = mount(id);
  await page.instance.onLoad({ id: job.id });
}

afterEach(() => {
  if (page) page.instance.onUnload();
});

function stepStates() {
  return page
    .querySelector(".steps")
    .querySelectorAll(".step")
    .map((node) => node.dom.dataset.state);
}

function succeed(overrides) {
  return fake.service.advance(job.id, {
    status: "succeeded",
    stage: "done",
    progress: 1,
    result: sampleResult(job.id, overrides),
  });
}

test("stages arrive live over the socket, then the result is shown", async () => {
  await startJob();
  await waitFor(() => fake.sockets.length === 1 && fake.sockets[0].isOpen);
  const socket = fake.called("connectSocket")[0];
  expect(socket.url).toBe(`wss://api.test/api/v1/jobs/${job.id}/ws`);
  expect(socket.header.Authorization).toBe(`Bearer ${api.token()}`);
  expect(socket.header["Accept-Language"]).toBe("zh-CN");

  fake.service.advance(job.id, { status: "running", stage: "align", progress: 0.45 });
  await waitFor(() => page.data.line === "对齐音乐… 45%");
  expect(stepStates()).toEqual(["done", "done", "active", "pending", "pending"]);
  expect(text(page, ".status-badge")).toBe("处理中");
  const pollsWhileRunning = fake
    .called("request")
    .filter((r) => r.url.endsWith(`/jobs/${job.id}`)).length;
  expect(pollsWhileRunning).toBe(1); // only the first read: the socket carried the rest

  succeed();
  await waitFor(() => page.data.result !== null);
  expect(stepStates()).toEqual(["done", "done", "done", "done", "done"]);
  expect(text(page, ".status-badge")).toBe("已完成");
  const video = page.querySelector(".player");
  expect(video.data.src).toBe(`https://api.test/api/v1/files/${job.id}/output.mp4?exp=1&sig=v`);
  expect(video.data.poster).toBe(`https://api.test/api/v1/files/${job.id}/poster.jpg?exp=1&sig=q`);
  expect(text(page, ".confidence-value")).toBe("72%");
  expect(text(page, ".confidence-words")).toBe("非常可靠，音乐已对齐。");
  expect(text(page, ".fact-offset")).toBe("+3.000 秒 · 课堂视频从参考音乐的 0:03.00 处开始");
  expect(text(page, ".fact-drift")).toBe("-0.4 ppm");
  expect(text(page, ".fact-cut")).toBe("0:02 – 0:13（共 0:11）");
  expect(page.querySelector(".plot-image").data.src).toBe(
    `https://api.test/api/v1/files/${job.id}/plot.png?exp=1&sig=p`,
  );
  // The finished job was read once more over HTTP: the poll answer is the truth.
  await waitFor(
    () => fake.called("request").filter((r) => r.url.endsWith(`/jobs/${job.id}`)).length === 2,
  );
  await waitFor(() => page.data.choices.length === 2);
  expect(page.querySelectorAll(".choice").map((node) => node.dom.textContent.trim())).toEqual([
    "最佳匹配 · 72%（当前）",
    "候选 2 · 20%（从 0:06.84 开始）",
  ]);
});

test("when the socket fails, polling carries the job to its end", async () => {
  await startJob({ autoOpenSockets: false });
  await waitFor(() => fake.sockets.length === 1);
  fake.sockets[0].serverFail();
  fake.service.advance(job.id, { status: "running", stage: "render", progress: 0.9 });
  await waitFor(() => page.data.line === "生成视频… 90%", 4000);
  succeed();
  await waitFor(() => page.data.result !== null, 8000);
  expect(page.data.status).toBe("succeeded");
  expect(
    fake.called("request").filter((r) => r.url.endsWith(`/jobs/${job.id}`)).length,
  ).toBeGreaterThanOrEqual(3);
});

test("saving asks for the album permission once, downloads the video and saves it", async () => {
  await startJob();
  succeed();
  await waitFor(() => page.data.result !== null);
  await tap(page, ".save");
  await waitFor(() => page.data.notice === "已保存到相册。由服务器合成。");
  expect(fake.called("authorize")).toEqual([{ scope: "scope.writePhotosAlbum" }]);
  expect(fake.called("downloadFile")[0].url).toBe(
    `https://api.test/api/v1/files/${job.id}/output.mp4?exp=1&sig=v`,
  );
  expect(fake.called("saveVideoToPhotosAlbum")).toEqual([
    { filePath: "wxfile://tmp/download-1.mp4" },
  ]);
  expect(fake.called("showToast")).toEqual([{ title: "已保存到相册" }]);
  expect(page.querySelector(".setting")).toBeUndefined();
});

test("after a refusal the page offers the settings, and saves once allowed there", async () => {
  await startJob();
  fake.answers.authSetting = { "scope.writePhotosAlbum": false };
  succeed();
  await waitFor(() => page.data.result !== null);
  await tap(page, ".save");
  await waitFor(() => page.data.needsSetting === true);
  expect(fake.called("authorize")).toEqual([]); // WeChat would not ask again
  expect(fake.called("downloadFile")).toEqual([]);
  expect(text(page, ".setting")).toBe("去设置中允许保存到相册");
  expect(page.data.notice).toBe("需要“保存到相册”的权限，请点下面的按钮去设置中打开。");

  fake.answers.authSetting = { "scope.writePhotosAlbum": true };
  await page.instance.onOpenSetting({
    detail: { authSetting: { "scope.writePhotosAlbum": true } },
  });
  expect(fake.called("saveVideoToPhotosAlbum").length).toBe(1);
  expect(page.data.notice).toBe("已保存到相册。由服务器合成。");
});

test("a nudge renders the job again and follows the new one", async () => {
  await startJob();
  succeed();
  await waitFor(() => page.data.result !== null);
  const nudge = page.querySelector(".nudge");
  await tap(nudge, ".step-plus10");
  await tap(nudge, ".step-minus1");
  await tap(nudge, ".apply");
  await waitFor(() => page.data.jobId !== job.id);
  const render = fake.called("request").filter((r) => r.url.endsWith(`/jobs/${job.id}/render`));
  expect(JSON.parse(render[0].data)).toEqual({ nudge_ms: 9 });
  const child = fake.service.jobs.get(page.data.jobId);
  expect(child.parent_id).toBe(job.id);
  expect(page.data.status).toBe("queued");
  expect(page.data.result).toBeNull();
});

test("another candidate renders that answer without the nudge", async () => {
  await startJob();
  succeed();
  await waitFor(() => page.data.choices.length === 2);
  await tap(page, ".choice");
  // The first chip is the current answer: tapping it does nothing.
  expect(fake.called("request").filter((r) => r.url.endsWith("/render")).length).toBe(0);
  await page.instance.onChoice({ currentTarget: { dataset: { index: 1 } } });
  const render = fake.called("request").filter((r) => r.url.endsWith(`/jobs/${job.id}/render`));
  expect(JSON.parse(render[0].data)).toEqual({ candidate: 0, nudge_ms: 0 });
});

test("a failed job says why in words and can be retried", async () => {
  await startJob();
  fake.service.advance(job.id, {
    status: "failed",
    stage: "align",
    progress: 0.4,
    error: {
      code: "MUSIC_MISMATCH",
      message: "两个文件里的音乐对不上，请确认是同一首歌。",
      detail: null,
    },
  });
  await waitFor(() => page.data.status === "failed");
  expect(text(page, ".error-message")).toBe("两个文件里的音乐对不上，请确认是同一首歌。");
  expect(text(page, ".error-code")).toBe("错误代码：MUSIC_MISMATCH");
  expect(stepStates()).toEqual(["done", "done", "failed", "pending", "pending"]);
  expect(page.querySelector(".result")).toBeUndefined();
  await tap(page, ".retry");
  await waitFor(() => page.data.status === "queued");
  expect(fake.called("request").filter((r) => r.url.endsWith(`/jobs/${job.id}/retry`)).length).toBe(
    1,
  );
  expect(page.data.error).toBeNull();
  expect(stepStates()).toEqual(["pending", "pending", "pending", "pending", "pending"]);
});

test("a job that is not there says so", async () => {
  fake = createFakeWx();
  global.wx = fake.wx;
  api.setBase(fake.service.base);
  page = mount(id);
  await page.instance.onLoad({ id: "job_missing" });
  expect(page.data.error).toEqual({
    code: "NOT_FOUND",
    message: "找不到这个任务或文件，可能已过期被删除。",
  });
  expect(page.data.loading).toBe(false);
});
