// The job page on a phone's terms: an audio-first job answers its frame requests from the
// local video and assembles its result at once, plays it, saves it, and deletes it when the
// page closes; sharing takes two taps; a result too large for the 200 MB of user files is
// made whole by MediaContainer (not trimmed), or without it rendered at 720p by the service, as
// is a server render over the 200 MB download cap; a refused privacy guide is not a refused
// album permission.

const { load, mount, tap } = require("../support/simulate.js");
const { createFakeWx, waitFor } = require("../support/fake-wx.js");
const { sampleResult } = require("../support/fake-service.js");
const { makeCleanAudio, makeMovie } = require("../support/movie-maker.js");
const { USER_DATA_PATH } = require("../support/wx-rules.js");
const api = require("../../utils/api.js");
const audiofirst = require("../../utils/audiofirst.js");
const { forgetLimits } = require("../../utils/limits.js");
const { assemble, bytesReader, partsBytes } = require("../../utils/assemble/index.js");

const id = load("pages/job/job");
const VIDEO = "wxfile://tmp/class.mp4";
const MB = 1024 * 1024;

let fake;
let page;
let job;
let movie;

function pictures() {
  let dts = 0;
  return movie.video
    .map((sample, i) => {
      const rgba = new Uint8Array(16 * 9 * 4).fill(i % 200);
      const frame = { pts: ((dts + sample.offset_cts) * 1000) / 15360, key: sample.sync, width: 16, height: 9, rgba: rgba.buffer };
      dts += sample.duration;
      return frame;
    })
    .sort((a, b) => a.pts - b.pts);
}

async function openJob(options) {
  fake = createFakeWx(options);
  global.wx = fake.wx;
  api.setBase(fake.service.base);
  await api.ensureSession();
  const owner = fake.service.tokens.get(api.token());
  movie = makeMovie({ frames: 90, frameSize: 4096 });
  fake.addFile(VIDEO, Buffer.from(await movie.read(0, movie.size)));
  fake.videoFrames = () => pictures();
  const { local } = await audiofirst.prepare({ path: VIDEO, size: movie.size, name: "class.mp4" });
  job = fake.service.newJob(
    { dance_upload_id: "upl_a", bgm_upload_id: "upl_b", video_manifest: local.manifest, options: {} },
    owner,
  );
  audiofirst.remember(job.id, local);
  page = mount(id);
  await page.instance.onLoad({ id: job.id });
  return local;
}

/**
 * Finish `jobId` as the service finishes an audio-first job: its sound (`seconds` long) served
 * at a signed link, the samples [first, end) of the class video to copy. Returns the link.
 */
function succeed(jobId, { first = 0, end = 90, seconds = 90, sig = "w", poster = null } = {}) {
  const audioUrl = `/api/v1/files/${jobId}/audio.m4a?exp=1&sig=${sig}`;
  fake.served.set(audioUrl, Buffer.from(makeCleanAudio(seconds).bytes));
  fake.service.advance(jobId, {
    status: "succeeded",
    stage: "done",
    progress: 1,
    result: sampleResult(jobId, {
      files: { video: null, poster, plot: null, report: null },
      assembly: { audio_url: audioUrl, first_sample: first, end_sample: end },
    }),
  });
  return audioUrl;
}

/** The opened job finished with samples 30–89 kept; resolves once the page shows it. */
function finish() {
  succeed(job.id, { first: 30, seconds: 40, sig: "a", poster: `/api/v1/files/${job.id}/poster.jpg?sig=q` });
  return waitFor(() => page.data.result !== null);
}

/** The untrimmed variant of the opened job that the page asks the service for. */
async function variantJob() {
  await waitFor(() => fake.service.jobs.size === 2);
  return Array.from(fake.service.jobs.values())[1];
}

afterEach(() => {
  forgetLimits();
  if (page) page.instance.onUnload();
  page = null;
});

test("audio-first: frames are answered, the result is assembled here, saved and deleted", async () => {
  await openJob();
  fake.service.advance(job.id, { status: "running", stage: "trim", frames_request: { id: "r1", samples: [31, 34] } });
  await waitFor(() => fake.service.jobs.get(job.id).frames.length === 1);
  expect(fake.service.jobs.get(job.id).frames[0].bytes.length).toBe(2 * 96 * 54);

  await finish();
  const out = `${USER_DATA_PATH}/beatsync/${job.id}.mp4`;
  // Assembled as soon as the result is known, and played from the phone.
  await waitFor(() => page.data.localVideo === out);
  expect(page.data.pathText).toBe("在手机上合成：视频没有上传，只上传了声音。");
  expect(page.querySelector(".player")).toBeDefined();
  await tap(page, ".save");
  await waitFor(() => page.data.notice.startsWith("已保存到相册。"));
  expect(page.data.notice).toBe("已保存到相册。在手机上合成：视频没有上传，只上传了声音。");
  expect(fake.called("saveVideoToPhotosAlbum")).toEqual([{ filePath: out }]);
  expect(fake.called("open").filter((o) => o.filePath === out)).toHaveLength(1); // made once
  expect(fake.called("downloadFile").map((d) => d.url)).toEqual([
    `https://api.test/api/v1/files/${job.id}/audio.m4a?exp=1&sig=a`,
  ]);
  expect(fake.called("setKeepScreenOn").map((c) => c.keepScreenOn)).toEqual([true, false]);
  expect(fake.called("readFile")).toHaveLength(0);
  // Kept while the page plays it, deleted when the page closes.
  expect(fake.files.has(out)).toBe(true);
  page.instance.onUnload();
  page = null;
  await waitFor(() => !fake.files.has(out));
});

test("sharing takes two taps: prepare, then send from the tap", async () => {
  await openJob();
  await finish();
  await tap(page, ".share-prepare");
  await waitFor(() => page.data.shareReady);
  const out = `${USER_DATA_PATH}/beatsync/${job.id}.mp4`;
  expect(fake.files.has(out)).toBe(true);
  await tap(page, ".share-video");
  await waitFor(() => fake.called("shareVideoMessage").length === 1);
  expect(fake.called("shareVideoMessage")[0]).toEqual({ videoPath: out, gesture: true });
  await waitFor(() => page.data.notice === "已发送。");
  expect(page.data.shareReady).toBe(false);
  page.instance.onUnload();
  page = null;
  await waitFor(() => !fake.files.has(out));
});

function fillUserFiles() {
  fake.addFile(`${USER_DATA_PATH}/other.bin`, Buffer.alloc(200 * MB - fake.userBytes() - 64 * 1024));
}

test("a result too large for the 200 MB is made whole by MediaContainer, not trimmed", async () => {
  const local = await openJob();
  fillUserFiles();
  const before = fake.userBytes();
  await finish();
  // The job is rendered again without a cut: the sound placed for the whole video.
  const variant = await variantJob();
  expect(variant.parent_id).toBe(job.id);
  expect(variant.render).toEqual({ trim: false });
  expect(variant.options.trim).toBe(false);
  expect(page.data.saveText).toMatch(/^剪好的视频有 .*，放不进小程序的 200 MB 空间，正在准备不剪辑的完整版本…$/);
  const audioUrl = succeed(variant.id);
  await waitFor(() => page.data.localVideo !== "");
  const exported = fake.called("export");
  expect(exported).toHaveLength(1);
  const [picture, sound] = exported[0].tracks;
  expect(picture).toEqual({ kind: "video", source: local.videoPath });
  expect(sound.kind).toBe("audio");
  // The sound is the untrimmed variant's, downloaded to a temporary file.
  expect(fake.called("downloadFile")[1].url).toBe(`https://api.test${audioUrl}`);
  expect(fake.files.get(sound.source).equals(fake.served.get(audioUrl))).toBe(true);
  expect(page.data.localVideo).toMatch(/^wxfile:\/\/tmp\/export-/);
  expect(page.data.pathText).toBe(
    "在手机上合成（未剪辑）：剪好的视频放不进小程序的 200 MB 空间，所以这是整段视频配上干净的音乐，首尾没有剪掉。",
  );
  expect(page.data.offer720).toBe(false);
  await tap(page, ".save");
  await waitFor(() => page.data.notice.startsWith("已保存到相册。"));
  expect(fake.called("saveVideoToPhotosAlbum")).toEqual([{ filePath: page.data.localVideo }]);
  expect(fake.userBytes()).toBe(before); // nothing written among the user files
  // The screen stayed on while the phone worked (the try within the 200 MB, then the whole).
  expect(fake.called("setKeepScreenOn").map((c) => c.keepScreenOn)).toEqual([true, false, true, false]);
});

test("a MediaContainer export that never answers is given up and 720p is offered", async () => {
  const whole = audiofirst.assembleWhole;
  const spy = jest
    .spyOn(audiofirst, "assembleWhole")
    .mockImplementation((j, local, opts) => whole(j, local, { ...opts, containerTimeoutMs: 100 }));
  try {
    await openJob();
    fake.answers.exportHangs = true;
    fillUserFiles();
    await finish();
    succeed((await variantJob()).id);
    await waitFor(() => page.data.offer720);
    expect(fake.called("export")).toHaveLength(1);
    expect(fake.called("destroyMediaContainer")).toHaveLength(1);
    expect(page.data.notice).toMatch(/完整版本也没能合成，可以改由服务器生成 720p 版本。$/);
    expect(page.data.localVideo).toBe("");
    // The screen is let go once the phone gave up.
    await waitFor(() => fake.called("setKeepScreenOn").length === 4);
    expect(fake.called("setKeepScreenOn").map((c) => c.keepScreenOn)).toEqual([true, false, true, false]);
  } finally {
    spy.mockRestore();
  }
});

test("when the variant would copy only part of the track, 720p is offered instead", async () => {
  await openJob();
  fillUserFiles();
  await finish();
  succeed((await variantJob()).id, { first: 30 });
  await waitFor(() => page.data.offer720);
  expect(page.data.notice).toMatch(/完整版本也没能合成，可以改由服务器生成 720p 版本。$/);
  // Given up before its sound is fetched: MediaContainer cannot start the copy at sample 30.
  expect(fake.called("downloadFile")).toHaveLength(1);
  expect(fake.called("export")).toEqual([]);
  expect(page.data.localVideo).toBe("");
});

/** The result file the phone would assemble for `assembly`, in memory. */
async function assembled(assembly) {
  const video = fake.files.get(VIDEO);
  const sound = fake.served.get(assembly.audio_url);
  const { parts } = await assemble(bytesReader(new Uint8Array(video)), new Uint8Array(sound), assembly);
  return Buffer.from(await partsBytes(parts, bytesReader(new Uint8Array(video))));
}

test("a result too large for the 200 MB, without MediaContainer, is rendered at 720p from the kept span", async () => {
  await openJob();
  delete fake.wx.createMediaContainer;
  fillUserFiles();
  await finish();
  await waitFor(() => page.data.offer720);
  expect(page.data.notice).toMatch(/^合成的视频有 .*，手机上给小程序的空间（200 MB）放不下/);
  expect(fake.called("saveVideoToPhotosAlbum")).toEqual([]);
  const userBytes = fake.userBytes();
  const writes = fake.called("write").length;
  // The service takes less than the whole video: only the kept span can go.
  const span = await assembled(fake.service.jobs.get(job.id).result.assembly);
  expect(span.length).toBeLessThan(movie.size);
  fake.service.maxSize = span.length;
  forgetLimits(); // the phone checks against the service's limit too, asked afresh
  fake.service.jobs.get(job.id).options.nudge_ms = 30;

  await tap(page, ".server-720");
  await waitFor(() => page.data.jobId !== job.id);
  const created = fake.service.jobs.get(page.data.jobId);
  // The sound of the span is the clean track, already nudged.
  expect(created.options).toMatchObject({ reencode: true, max_height: 720, nudge_ms: 0 });
  expect(created.manifest).toBeNull();
  const upload = fake.service.uploads.get(created.dance_upload_id);
  expect(upload).toBeDefined();
  // The result the phone could not hold, byte for byte: samples 30–89 and the clean sound.
  expect(upload.bytes.equals(span)).toBe(true);
  const { parseIndex, trackOf } = require("../../utils/assemble/movie.js");
  const { isofile } = parseIndex(new Uint8Array(span));
  expect(trackOf(isofile, "vide").samples).toHaveLength(60);
  expect(trackOf(isofile, "soun").samples).toHaveLength(40);
  // Sent a chunk at a time, never written among the user files, and not hashed.
  expect(fake.userBytes()).toBe(userBytes);
  expect(fake.called("write")).toHaveLength(writes);
  expect(page.data.pathText).toBe("由服务器合成 720p 版本。");
});

test("without a result to keep a span of, the whole video goes to the 720p render", async () => {
  const local = await openJob();
  page.instance.current = { ...fake.service.jobs.get(job.id), audio_first: true, result: null };
  const made = await page.instance.onServer720();
  expect(page.data.error).toBeNull();
  expect(made).not.toBeNull();
  await waitFor(() => page.data.jobId !== job.id);
  const created = fake.service.jobs.get(page.data.jobId);
  const upload = fake.service.uploads.get(created.dance_upload_id);
  expect(upload.bytes.equals(fake.files.get(local.videoPath))).toBe(true);
});

test("a server render over 200 MB is not downloaded; 720p is offered", async () => {
  await openJob();
  fake.service.jobs.get(job.id).manifest = null;
  fake.service.advance(job.id, {
    status: "succeeded",
    stage: "done",
    progress: 1,
    result: sampleResult(job.id, { output: { duration_s: 600, size_bytes: 300 * MB, width: 1920, height: 1080 } }),
  });
  await waitFor(() => page.data.result !== null);
  expect(page.data.offer720).toBe(true);
  expect(page.data.notice).toBe("结果有 300 MB，超过微信能下载的 200 MB，可以生成 720p 版本。");
  await tap(page, ".save");
  await waitFor(() => !page.data.saving);
  expect(fake.called("downloadFile")).toEqual([]);
  await tap(page, ".server-720");
  await waitFor(() => page.data.jobId !== job.id);
  expect(fake.service.jobs.get(page.data.jobId)).toMatchObject({
    dance_upload_id: "upl_a",
    options: { reencode: true, max_height: 720 },
  });
});

test("a refused privacy guide does not send the user to the settings", async () => {
  await openJob({ privacy: "pending" });
  await finish();
  const sheet = page.querySelector(".privacy");
  await tap(page, ".save");
  await waitFor(() => sheet.querySelector(".sheet"));
  expect(sheet.querySelector(".sheet-agree").dom.getAttribute("open-type") || "agreePrivacyAuthorization").toBe(
    "agreePrivacyAuthorization",
  );
  await tap(sheet, ".sheet-refuse");
  await waitFor(() => !page.data.saving);
  expect(page.data.needsSetting).toBe(false);
  expect(page.querySelector(".setting")).toBeUndefined();
  expect(page.data.notice).toBe("你没有同意隐私保护指引，所以不能保存到相册。再点一次保存可以重新选择。");

  await tap(page, ".save");
  await waitFor(() => sheet.querySelector(".sheet"));
  await tap(sheet, ".sheet-link");
  expect(fake.called("openPrivacyContract")).toHaveLength(1);
  sheet.instance.onAgree(); // what WeChat calls after the open-type button is tapped
  await waitFor(() => fake.called("saveVideoToPhotosAlbum").length === 1);
  await waitFor(() => page.data.notice.startsWith("已保存到相册。"));
});
