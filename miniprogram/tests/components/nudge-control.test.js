const { load, mount, tap, text } = require("../support/simulate.js");

const id = load("components/nudge-control/nudge-control");

test("steps move from the job's nudge and say what they do to the music", async () => {
  const control = mount(id, { value: 5 });
  expect(text(control, ".ms")).toBe("+5");
  expect(text(control, ".words")).toBe("音乐推迟 5 毫秒");
  expect(control.data.changed).toBe(false);
  await tap(control, ".step-minus10");
  expect(text(control, ".ms")).toBe("-5");
  expect(text(control, ".words")).toBe("音乐提前 5 毫秒");
  await tap(control, ".step-minus1");
  expect(control.data.ms).toBe(-6);
  expect(control.data.changed).toBe(true);
});

test("apply sends the new nudge once it differs from the job's", async () => {
  const control = mount(id, { value: 0 });
  const applied = [];
  control.addEventListener("apply", (event) => applied.push(event.detail.nudgeMs));
  await tap(control, ".apply");
  expect(applied).toEqual([]);
  await tap(control, ".step-plus10");
  await tap(control, ".step-plus1");
  await tap(control, ".apply");
  expect(applied).toEqual([11]);
});

test("the nudge stays within ±2000 ms", async () => {
  const control = mount(id, { value: 1995 });
  await tap(control, ".step-plus10");
  expect(control.data.ms).toBe(2000);
  control.setData({ value: -1999 });
  await tap(control, ".step-minus10");
  expect(control.data.ms).toBe(-2000);
});

test("a disabled control sends nothing", async () => {
  const control = mount(id, { value: 0, disabled: true });
  const applied = [];
  control.addEventListener("apply", (event) => applied.push(event.detail.nudgeMs));
  await tap(control, ".step-plus1");
  await tap(control, ".apply");
  expect(applied).toEqual([]);
});
