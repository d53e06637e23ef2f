const { load, mount, text } = require("../support/simulate.js");
const { stageView, statusLine } = require("../../utils/job.js");

const id = load("components/stage-steps/stage-steps");

function states(component) {
  return component
    .querySelectorAll(".step")
    .map((node) => [node.dom.dataset.stage, node.dom.dataset.state]);
}

test("a running job shows the stages before it done, its own active, the rest pending", () => {
  const job = { status: "running", stage: "align", progress: 0.45 };
  const view = stageView(job, null);
  const steps = mount(id, {
    stages: view.stages,
    percent: view.percent,
    line: statusLine(job, view),
  });
  expect(states(steps)).toEqual([
    ["probe", "done"],
    ["decode", "done"],
    ["align", "active"],
    ["trim", "pending"],
    ["render", "pending"],
  ]);
  expect(text(steps, ".line")).toBe("对齐音乐… 45%");
  expect(steps.querySelectorAll(".step-name").map((node) => node.dom.textContent)).toEqual([
    "读取文件",
    "解码音频",
    "对齐音乐",
    "确定剪辑范围",
    "生成视频",
  ]);
  expect(steps.querySelectorAll(".dot").map((node) => node.dom.textContent)).toEqual([
    "✓",
    "✓",
    "3",
    "4",
    "5",
  ]);
});

test("a late, older answer never moves the stages or the bar backwards", () => {
  const first = stageView({ status: "running", stage: "trim", progress: 0.8 }, null);
  const stale = stageView({ status: "running", stage: "decode", progress: 0.2 }, first.peak);
  expect(stale.percent).toBe(80);
  expect(stale.stages.map((item) => item.state)).toEqual([
    "done",
    "done",
    "done",
    "active",
    "pending",
  ]);
});

test("a failed job marks the stage it failed in", () => {
  const job = { status: "failed", stage: "align", progress: 0.4 };
  const view = stageView(job, null);
  const steps = mount(id, {
    stages: view.stages,
    percent: view.percent,
    line: statusLine(job, view),
  });
  expect(states(steps)[2]).toEqual(["align", "failed"]);
  expect(steps.querySelectorAll(".dot")[2].dom.textContent).toBe("✕");
  expect(text(steps, ".line")).toBe("任务失败。");
});

test("a succeeded job has every stage done and a full bar", () => {
  const job = { status: "succeeded", stage: "done", progress: 1 };
  const view = stageView(job, null);
  expect(view.percent).toBe(100);
  expect(view.stages.every((item) => item.state === "done")).toBe(true);
  expect(statusLine(job, view)).toBe("完成！");
});
