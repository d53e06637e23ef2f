// "My jobs" with a fake network: the token in storage finds the jobs again, rows say how each
// stands, opening and deleting.

const { load, mount, tap, text } = require("../support/simulate.js");
const { createFakeWx, waitFor } = require("../support/fake-wx.js");
const { sampleResult } = require("../support/fake-service.js");
const api = require("../../utils/api.js");

const id = load("pages/history/history");

let fake;
let page;

beforeEach(async () => {
  fake = createFakeWx();
  global.wx = fake.wx;
  api.setBase(fake.service.base);
  page = mount(id);
});

test("the jobs of the stored token are listed newest first, in words", async () => {
  await api.ensureSession();
  const token = fake.storage.get("beatsync.token");
  expect(token).toBe(api.token());
  const owner = fake.service.tokens.get(token);
  const done = fake.service.newJob({ dance_upload_id: "a", bgm_upload_id: "b" }, owner);
  Object.assign(done, { status: "succeeded", result: sampleResult(done.id) });
  const failed = fake.service.newJob({ dance_upload_id: "a", bgm_upload_id: "b" }, owner);
  Object.assign(failed, {
    status: "failed",
    error: { code: "WORKER_LOST", message: "处理进程意外中断，请重试。", detail: null },
  });
  // Another phone's job is not mine.
  fake.service.newJob({ dance_upload_id: "x", bgm_upload_id: "y" }, "someone-else");

  // The app is opened again: the token comes from storage, not a new session.
  api.setBase(fake.service.base);
  await page.instance.onShow();
  expect(fake.called("request").filter((r) => r.url.endsWith("/api/v1/sessions")).length).toBe(1);
  const rows = page.querySelectorAll(".job-row");
  expect(rows.length).toBe(2);
  expect(rows.map((row) => text(row, ".badge"))).toEqual(["失败", "已完成"]);
  expect(text(rows[0], ".detail")).toBe("处理进程意外中断，请重试。");
  expect(text(rows[1], ".detail")).toBe("可信度 72%");
  expect(page.querySelector(".empty")).toBeUndefined();

  await tap(rows[1], ".body");
  expect(fake.called("navigateTo")).toEqual([{ url: `/pages/job/job?id=${done.id}` }]);
});

test("deleting asks first, then removes the job and its row", async () => {
  await api.ensureSession();
  const owner = fake.service.tokens.get(api.token());
  const first = fake.service.newJob({ dance_upload_id: "a", bgm_upload_id: "b" }, owner);
  const second = fake.service.newJob({ dance_upload_id: "a", bgm_upload_id: "b" }, owner);
  await page.instance.onShow();

  fake.answers.showModal = { confirm: false, cancel: true };
  expect(await page.instance.onRemove({ detail: { id: first.id } })).toBe(false);
  expect(fake.service.jobs.has(first.id)).toBe(true);

  fake.answers.showModal = { confirm: true, cancel: false };
  expect(await page.instance.onRemove({ detail: { id: first.id } })).toBe(true);
  expect(fake.called("showModal")[1]).toEqual({
    title: "删除任务",
    content: "结果视频也会一起删除，确定吗？",
  });
  expect(fake.service.jobs.has(first.id)).toBe(false);
  expect(page.data.items.map((item) => item.id)).toEqual([second.id]);
});

test("no jobs yet says so; a lost network says so in words", async () => {
  await page.instance.onShow();
  expect(text(page, ".empty")).toBe("还没有任务。回到“对齐”页选两个文件开始吧。");

  fake.service.fault(() => ({ fail: "request:fail net::ERR_INTERNET_DISCONNECTED" }));
  await page.instance.onPullDownRefresh();
  expect(page.data.error).toEqual({
    code: "NETWORK",
    message: "无法连接服务器，请检查网络后重试。",
  });
  expect(fake.called("stopPullDownRefresh").length).toBe(1);
  await waitFor(() => text(page, ".error-message") === "无法连接服务器，请检查网络后重试。");
});
