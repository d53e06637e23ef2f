/**
 * @jest-environment node
 */
// The API client: the token kept in storage and renewed when the service no longer knows it,
// the headers every call carries, and refusals turned into plain Chinese.

const { createFakeWx } = require("../support/fake-wx.js");
const api = require("../../utils/api.js");
const { ApiError, describe, fromFailure, fromResponse } = require("../../utils/errors.js");

let fake;

beforeEach(() => {
  fake = createFakeWx();
  global.wx = fake.wx;
  api.setBase(fake.service.base);
});

function requests(path) {
  return fake.called("request").filter((r) => r.url === fake.service.base + path);
}

test("a first call creates an anonymous session and keeps its token in storage", async () => {
  const page = await api.jobs(5);
  expect(page).toEqual({ items: [], next_cursor: null });
  const token = fake.storage.get("beatsync.token");
  expect(token).toMatch(/^tok_/);
  expect(fake.storage.get("beatsync.owner")).toBe(fake.service.tokens.get(token));
  const call = requests("/api/v1/jobs?limit=5")[0];
  expect(call.header).toEqual({
    "Accept-Language": "zh-CN",
    Accept: "application/json",
    Authorization: `Bearer ${token}`,
  });
  await api.jobs(5);
  expect(requests("/api/v1/sessions").length).toBe(1);
});

test("a stored token is confirmed once per launch; one the service forgot is replaced", async () => {
  fake.storage.set("beatsync.token", "tok_from_a_reset_server");
  await api.jobs(5);
  expect(requests("/api/v1/sessions/me").length).toBe(1);
  expect(requests("/api/v1/sessions").length).toBe(1);
  expect(fake.storage.get("beatsync.token")).not.toBe("tok_from_a_reset_server");

  // After a restart a known token is confirmed once, then kept and not asked about again.
  api.setBase(fake.service.base); // the app starts again
  const kept = fake.storage.get("beatsync.token");
  await api.jobs(5);
  await api.jobs(5);
  expect(fake.storage.get("beatsync.token")).toBe(kept);
  expect(requests("/api/v1/sessions/me").length).toBe(2);
  expect(requests("/api/v1/sessions").length).toBe(1);
});

test("concurrent first calls share one session", async () => {
  await Promise.all([api.jobs(1), api.jobs(2), api.jobs(3)]);
  expect(requests("/api/v1/sessions").length).toBe(1);
});

test("offline at launch: the error says so, and the next call succeeds", async () => {
  const offline = fake.service.fault(() => ({
    fail: "request:fail net::ERR_INTERNET_DISCONNECTED",
  }));
  await expect(api.jobs(5)).rejects.toMatchObject({ status: 0, code: "NETWORK" });
  offline();
  await expect(api.jobs(5)).resolves.toEqual({ items: [], next_cursor: null });
});

test("refusals and failures in plain Chinese, whatever the service or the network sent", () => {
  const problem = fromResponse({
    statusCode: 422,
    header: {},
    data: { code: "MUSIC_MISMATCH", message: "两个文件里的音乐对不上，请确认是同一首歌。" },
  });
  expect(describe(problem)).toEqual({
    code: "MUSIC_MISMATCH",
    message: "两个文件里的音乐对不上，请确认是同一首歌。",
  });
  // A code this version does not know: the service's own (Chinese) message.
  const unknown = fromResponse({
    statusCode: 409,
    header: {},
    data: '{"code":"NEW_CODE","message":"新的错误。"}',
  });
  expect(describe(unknown)).toEqual({ code: "NEW_CODE", message: "新的错误。" });
  // A proxy's HTML page: no code, no message.
  const proxy = fromResponse({ statusCode: 502, header: {}, data: "<html>Bad Gateway</html>" });
  expect(describe(proxy)).toEqual({ code: "HTTP_502", message: "出了点问题，请稍后重试。" });
  expect(proxy.transient).toBe(true);
  expect(describe(fromFailure({ errMsg: "request:fail timeout" }))).toEqual({
    code: "REQUEST_TIMEOUT",
    message: "网络太慢，请求在 60 秒内没有完成，请换个网络后重试。",
  });
  expect(describe({ errMsg: "request:fail ssl hand shake error" }).code).toBe("NETWORK");
  // A job's error object as the API sends it.
  expect(
    describe({ code: "WORKER_LOST", message: "处理进程意外中断，请重试。", detail: null }),
  ).toEqual({
    code: "WORKER_LOST",
    message: "处理进程意外中断，请重试。",
  });
  expect(describe(new Error("boom"))).toEqual({
    code: "UNKNOWN",
    message: "出了点问题，请稍后重试。",
  });
  expect(new ApiError(409, "JOB_NOT_CANCELLABLE", null).transient).toBe(false);
});

test("URLs: paths the API gives become absolute; sockets use ws(s)", () => {
  api.setBase("https://api.example.com/");
  expect(api.absolute("/api/v1/files/job_1/output.mp4?exp=1&sig=x")).toBe(
    "https://api.example.com/api/v1/files/job_1/output.mp4?exp=1&sig=x",
  );
  expect(api.absolute("https://bucket.example.com/x.mp4")).toBe("https://bucket.example.com/x.mp4");
  expect(api.socketUrl("/api/v1/jobs/job_1/ws")).toBe("wss://api.example.com/api/v1/jobs/job_1/ws");
  api.setBase("http://127.0.0.1:8000");
  expect(api.socketUrl("/api/v1/jobs/job_1/ws")).toBe("ws://127.0.0.1:8000/api/v1/jobs/job_1/ws");
});
