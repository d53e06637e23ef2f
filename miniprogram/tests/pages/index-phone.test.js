// The first page with an MP4 the phone can read: only the class video's sound is uploaded, the
// card says so, and the job goes out audio-first with the manifest; the
// 720p switch and a refused manifest send the whole video instead.

const { load, mount, tap } = require("../support/simulate.js");
const { createFakeWx, waitFor } = require("../support/fake-wx.js");
const { makeMovie } = require("../support/movie-maker.js");
const { USER_DATA_PATH } = require("../support/wx-rules.js");
const config = require("../../config.js");
const api = require("../../utils/api.js");
const limits = require("../../utils/limits.js");

const id = load("pages/index/index");
const VIDEO = "wxfile://tmp/class.mp4";

let fake;
let page;
let video;

function pictures(movie) {
  let dts = 0;
  return movie.video.map((sample) => {
    const frame = { pts: ((dts + sample.offset_cts) * 1000) / 15360, key: sample.sync, width: 16, height: 9, rgba: new Uint8Array(16 * 9 * 4).fill(90).buffer };
    dts += sample.duration;
    return frame;
  });
}

beforeEach(async () => {
  fake = createFakeWx();
  global.wx = fake.wx;
  api.setBase(fake.service.base);
  limits.forgetLimits();
  const movie = makeMovie({ frames: 90, frameSize: 8192 });
  video = Buffer.from(await movie.read(0, movie.size));
  fake.addFile(VIDEO, video);
  fake.videoFrames = () => pictures(movie);
  fake.addFile("wxfile://tmp/ref.m4a", Buffer.alloc(5000, 3));
  page = mount(id);
  page.instance.onLoad({});
  fake.answers.chooseMedia = {
    type: "video",
    tempFiles: [{ tempFilePath: VIDEO, size: video.length, duration: 4, fileType: "video" }],
  };
  await tap(page.querySelector(".card-dance"), ".pick-album");
  fake.answers.chooseMessageFile = {
    tempFiles: [{ path: "wxfile://tmp/ref.m4a", size: 5000, name: "ref.m4a", type: "file", time: 0 }],
  };
  await tap(page.querySelector(".card-bgm"), ".pick-chat");
  await waitFor(() => page.data.canStart, 10000);
});

afterEach(() => {
  page.instance.onUnload();
});

function created() {
  return fake
    .called("request")
    .filter((r) => r.method === "POST" && r.url.endsWith("/api/v1/jobs"))
    .map((r) => JSON.parse(r.data));
}

test("only the sound is uploaded, and the job is audio-first", async () => {
  const card = page.data.dance;
  expect(card.audioFirst).toBe(true);
  expect(card.pathNote).toMatch(/^只上传视频里的声音（.+），视频留在手机上。$/);
  expect(card.name).toBe("课堂视频.mp4");
  const sent = fake.service.uploads.get(card.uploadId);
  expect(sent.bytes.length).toBeLessThan(video.length / 10);
  expect(sent.filename).toMatch(/\.m4a$/);
  expect(fake.userBytes()).toBe(sent.bytes.length); // the sound is a user file
  // The screen stays on while anything uploads (on and off again once per busy stretch).
  const screen = fake.called("setKeepScreenOn").map((c) => c.keepScreenOn);
  expect(screen.length % 2).toBe(0);
  expect(screen.every((on, i) => on === (i % 2 === 0))).toBe(true);
  expect(fake.state.keepScreenOn).toBe(false);

  config.notifyTemplateId = "tmpl-done";
  await tap(page, ".start");
  config.notifyTemplateId = "";
  await waitFor(() => fake.called("navigateTo").length === 1);
  // The finish notice is asked for from the tap itself, as WeChat requires.
  expect(fake.called("requestSubscribeMessage")).toEqual([{ tmplIds: ["tmpl-done"], gesture: true }]);
  const [body] = created();
  expect(body.options).toEqual({});
  expect(body.video_manifest.video.sample_count).toBe(90);
  expect(body.thumbnails).toBeUndefined(); // the run asks for the pictures it reads
  const jobId = Array.from(fake.service.jobs.keys())[0];
  expect(fake.storage.get(`beatsync.local.${jobId}`).videoPath).toBe(VIDEO);
});

test("720p needs the whole video: it is uploaded, and the job is a server render", async () => {
  page.instance.onCompact({ detail: { value: true } });
  await tap(page, ".start");
  await waitFor(() => fake.called("navigateTo").length === 1, 10000);
  const [body] = created();
  expect(body.options).toEqual({ reencode: true, max_height: 720 });
  expect(body.video_manifest).toBeUndefined();
  expect(fake.service.uploads.get(body.dance_upload_id).bytes.equals(video)).toBe(true);
  expect(page.data.dance.pathNote).toBe("将上传整个视频，由服务器合成。");
  expect(fake.userBytes()).toBe(0); // the sound file went with the audio-first path
});

test("a manifest the service refuses sends the whole video", async () => {
  const original = fake.service.createJob.bind(fake.service);
  fake.service.createJob = (body, owner) =>
    body.video_manifest
      ? { statusCode: 422, header: {}, data: JSON.stringify({ code: "INVALID_MANIFEST", message: "no" }) }
      : original(body, owner);
  await tap(page, ".start");
  await waitFor(() => fake.called("navigateTo").length === 1, 10000);
  const bodies = created();
  expect(bodies).toHaveLength(2);
  expect(bodies[1].video_manifest).toBeUndefined();
  expect(fake.service.uploads.get(bodies[1].dance_upload_id).bytes.equals(video)).toBe(true);
});
