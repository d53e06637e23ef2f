/** @jest-environment node */
// WeChat's MediaContainer behind utils/container.js, against the fake wx: the two tracks go into
// one temporary file, and a container that never answers is given up after a wait that grows
// with the video, destroyed, and its late answer ignored.

const { createFakeWx } = require("../support/fake-wx.js");
const container = require("../../utils/container.js");

const VIDEO = "wxfile://tmp/class.mp4";
const SOUND = "wxfile://tmp/clean.m4a";
const MB = 1024 * 1024;

let fake;

beforeEach(() => {
  fake = createFakeWx();
  global.wx = fake.wx;
  fake.addFile(VIDEO, Buffer.alloc(1024));
  fake.addFile(SOUND, Buffer.alloc(256));
});

test("the picture of the video and the sound of the clean track go into one file", async () => {
  const path = await container.mux(VIDEO, SOUND, { videoBytes: 1024 });
  expect(path).toMatch(/^wxfile:\/\/tmp\/export-/);
  expect(JSON.parse(fake.files.get(path).toString())).toEqual([
    { kind: "video", source: VIDEO },
    { kind: "audio", source: SOUND },
  ]);
  expect(fake.called("destroyMediaContainer")).toHaveLength(1);
});

test("an export that never answers is given up, the container destroyed", async () => {
  fake.answers.exportHangs = true;
  const began = Date.now();
  const error = await container.mux(VIDEO, SOUND, { timeoutMs: 80 }).catch((e) => e);
  expect(error.code).toBe("CONTAINER_FAILED");
  expect(error.timedOut).toBe(true);
  expect(Date.now() - began).toBeGreaterThanOrEqual(75);
  expect(fake.called("export")).toHaveLength(1);
  expect(fake.called("destroyMediaContainer")).toHaveLength(1);
});

test("an answer after the wait is ignored", async () => {
  fake.answers.exportAfterMs = 200;
  const error = await container.mux(VIDEO, SOUND, { timeoutMs: 50 }).catch((e) => e);
  expect(error.timedOut).toBe(true);
  await new Promise((resolve) => setTimeout(resolve, 250));
  // Only the exported file appeared; nothing came of it, and nothing threw.
  expect(fake.called("destroyMediaContainer")).toHaveLength(1);
});

test("the wait grows with the video: half a minute, and a little over two for 1 GB", () => {
  expect(container.waitMs(0)).toBe(30000);
  expect(container.waitMs(10 * MB)).toBe(31000);
  expect(container.waitMs(1024 * MB)).toBe(132400);
});
