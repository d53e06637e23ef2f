const { load, mount, tap, text } = require("../support/simulate.js");
const { jobSummary } = require("../../utils/job.js");

const id = load("components/job-item/job-item");

const base = {
  id: "job_1",
  created_at: "2026-11-29T04:34:32Z",
  options: { nudge_ms: 0 },
  result: null,
  error: null,
  stage: null,
  progress: 0,
};

test("a succeeded job shows its confidence and nudge", () => {
  const item = jobSummary(
    Object.assign({}, base, {
      status: "succeeded",
      options: { nudge_ms: 7 },
      result: { confidence: 0.7298 },
    }),
  );
  const row = mount(id, { item });
  expect(text(row, ".badge")).toBe("已完成");
  expect(text(row, ".detail")).toBe("可信度 72% · 微调 7 毫秒");
  const when = new Date("2026-11-29T04:34:32Z");
  expect(text(row, ".when")).toBe(
    `${when.getMonth() + 1}月${when.getDate()}日 ${String(when.getHours()).padStart(2, "0")}:34`,
  );
});

test("a failed job says why in plain words", () => {
  const item = jobSummary(
    Object.assign({}, base, {
      status: "failed",
      error: {
        code: "MUSIC_MISMATCH",
        message: "两个文件里的音乐对不上，请确认是同一首歌。",
        detail: null,
      },
    }),
  );
  const row = mount(id, { item });
  expect(text(row, ".badge")).toBe("失败");
  expect(text(row, ".detail")).toBe("两个文件里的音乐对不上，请确认是同一首歌。");
});

test("a running job shows its stage and progress", () => {
  const item = jobSummary(
    Object.assign({}, base, { status: "running", stage: "render", progress: 0.91 }),
  );
  expect(item.detail).toBe("生成视频 · 91%");
  expect(item.statusName).toBe("处理中");
});

test("taps open or delete the job by its id", async () => {
  const row = mount(id, { item: jobSummary(Object.assign({}, base, { status: "queued" })) });
  const events = [];
  row.addEventListener("open", (event) => events.push(["open", event.detail.id]));
  row.addEventListener("remove", (event) => events.push(["remove", event.detail.id]));
  await tap(row, ".body");
  await tap(row, ".remove");
  expect(events).toEqual([
    ["open", "job_1"],
    ["remove", "job_1"],
  ]);
});
