// Audio-first on the phone, against the fake wx: the sound re-wrapped into a user file, the
// keyframes' and the asked frames' thumbnails from the VideoDecoder, the result assembled into
// a user file within the 200 MB, and refused before writing when it cannot fit.

const { createFakeWx } = require("../support/fake-wx.js");
const { makeCleanAudio, makeMovie } = require("../support/movie-maker.js");
const { USER_DATA_PATH } = require("../support/wx-rules.js");
const { parseIndex, trackOf } = require("../../utils/assemble/movie.js");
const api = require("../../utils/api.js");
const audiofirst = require("../../utils/audiofirst.js");

const VIDEO = "wxfile://tmp/class.mp4";
const THUMB = 96 * 54;

let fake;
let movie;

/** The decoded pictures of the movie: sample i is a flat grey of level (7 i) mod 256. */
function pictures() {
  const frames = [];
  let dts = 0;
  movie.video.forEach((sample, i) => {
    const level = (7 * i) % 256;
    const rgba = new Uint8Array(32 * 18 * 4);
    for (let p = 0; p < rgba.length; p += 4) rgba.set([level, level, level, 255], p);
    frames.push({ pts: ((dts + sample.offset_cts) * 1000) / 15360, key: sample.sync, width: 32, height: 18, rgba: rgba.buffer });
    dts += sample.duration;
  });
  return frames.sort((a, b) => a.pts - b.pts);
}

function levels(base64, count) {
  const bytes = Buffer.from(base64, "base64");
  expect(bytes.length).toBe(count * THUMB);
  return Array.from({ length: count }, (_, n) => {
    const thumb = bytes.subarray(n * THUMB, (n + 1) * THUMB);
    expect(thumb.every((v) => v === thumb[0])).toBe(true);
    return thumb[0];
  });
}

beforeEach(async () => {
  fake = createFakeWx();
  global.wx = fake.wx;
  api.setBase(fake.service.base);
  movie = makeMovie({ frames: 90, frameSize: 4096 });
  fake.addFile(VIDEO, Buffer.from(await movie.read(0, movie.size)));
  fake.videoFrames = (path) => (path === VIDEO ? pictures() : null);
});

afterEach(() => {
  delete global.wx;
});

test("the sound goes to a user file; the asked frames become thumbnails", async () => {
  const { local, reason } = await audiofirst.prepare({ path: VIDEO, size: movie.size, name: "class.mp4" });
  expect(reason).toBeNull();
  expect(local.audio.path.startsWith(`${USER_DATA_PATH}/beatsync/`)).toBe(true);
  const m4a = new Uint8Array(fake.files.get(local.audio.path));
  expect(local.audio.size).toBe(m4a.length);
  expect(trackOf(parseIndex(m4a).isofile, "soun").samples).toHaveLength(movie.audio.length);
  expect(local.manifest.video.sync).toEqual([0, 30, 60]);
  // The video was read through descriptors only, never whole.
  expect(fake.called("readFile")).toHaveLength(0);

  // No keyframes up front: the run asks for what it reads.
  expect(audiofirst.jobFields(local)).toEqual({ video_manifest: local.manifest });

  await api.ensureSession();
  const owner = fake.service.tokens.get(api.token());
  const job = fake.service.newJob({ dance_upload_id: "u1", bgm_upload_id: "u2", video_manifest: local.manifest }, owner);
  // (The maker's B-frames share their times with earlier pictures: ask for I and P frames.)
  job.frames_request = { id: "req1", samples: [34, 0, 31, 61, 30, 37] };
  const answered = new Set();
  expect(await audiofirst.answerFrames(fake.service.jobJson(job), local, answered)).toBe(true);
  expect(job.frames_request).toBeNull();
  expect(levels(job.frames[0].bytes.toString("base64"), 6)).toEqual([34, 0, 31, 61, 30, 37].map((i) => (7 * i) % 256));
  // The same request is answered once.
  expect(await audiofirst.answerFrames({ ...fake.service.jobJson(job), frames_request: { id: "req1", samples: [1] } }, local, answered)).toBe(false);
});

test("no VideoDecoder: the class video goes the server's way", async () => {
  delete fake.wx.createVideoDecoder;
  expect(await audiofirst.prepare({ path: VIDEO, size: movie.size })).toEqual({ local: null, reason: "decoder" });
  fake.wx.createVideoDecoder = () => {};
  fake.addFile("wxfile://tmp/notes.mp4", Buffer.from("not a movie at all"));
  expect(await audiofirst.prepare({ path: "wxfile://tmp/notes.mp4", size: 18 })).toEqual({ local: null, reason: "format" });
});

async function assemblyOf() {
  const { local } = await audiofirst.prepare({ path: VIDEO, size: movie.size });
  fake.served.set("/api/v1/files/job_1/audio.m4a", Buffer.from(makeCleanAudio(40).bytes));
  const assembly = { audio_url: "/api/v1/files/job_1/audio.m4a", first_sample: 30, end_sample: 90 };
  return { local, assembly };
}

test("the result is assembled into a user file and the screen stays on meanwhile", async () => {
  const { local, assembly } = await assemblyOf();
  const out = await audiofirst.assembleResult(local, assembly, { name: "job_1" });
  expect(out.path).toBe(`${USER_DATA_PATH}/beatsync/job_1.mp4`);
  expect(out.frames).toBe(60);
  const bytes = new Uint8Array(fake.files.get(out.path));
  expect(out.size).toBe(bytes.length);
  expect(trackOf(parseIndex(bytes).isofile, "vide").samples).toHaveLength(60);
  expect(fake.called("setKeepScreenOn").map((c) => c.keepScreenOn)).toEqual([true, false]);
  expect(fake.called("readFile")).toHaveLength(0);
});

test("an output that cannot fit in the free part of the 200 MB is refused before writing", async () => {
  const { local, assembly } = await assemblyOf();
  const used = fake.userBytes();
  fake.limits.userDataBytes = 200 * 1024 * 1024; // the fake's own quota stays WeChat's
  // Fill the quota so that less than the output is free.
  fake.addFile(`${USER_DATA_PATH}/other.bin`, Buffer.alloc(200 * 1024 * 1024 - used - 100 * 1024));
  const refused = await audiofirst.assembleResult(local, assembly, { name: "job_1" }).catch((e) => e);
  expect(refused.code).toBe("OUTPUT_TOO_LARGE");
  expect(refused.size).toBeGreaterThan(100 * 1024);
  expect(fake.files.has(`${USER_DATA_PATH}/beatsync/job_1.mp4`)).toBe(false);
  expect(fake.called("write").filter((c) => c.fd && c.length > 0)).toHaveLength(
    fake.called("write").length,
  );
});

test("the kept span is the assembled result, read at any offset without being written", async () => {
  const { local, assembly } = await assemblyOf();
  const out = await audiofirst.assembleResult(local, assembly, { name: "job_1" });
  const whole = new Uint8Array(fake.files.get(out.path));
  await audiofirst.removeQuietly(out.path);
  const used = fake.userBytes();
  const writes = fake.called("write").length;
  const span = await audiofirst.keptSpan(local, assembly, "class");
  expect(span.size).toBe(whole.length);
  expect(span).toMatchObject({ name: "class.mp4", type: "video" });
  // Reads that start and end inside boxes and samples, cross from one to the next, and run
  // past the end (cut short there), as tus chunks of any size do.
  const reads = [[0, 7], [5, 4096], [1000, 33333], [whole.length - 5000, 4000], [whole.length - 10, 64]];
  for (let at = 0; at < whole.length; at += 65536 + 17) reads.push([at, 65536 + 17]);
  for (const [offset, length] of reads) {
    const got = new Uint8Array(await span.read(offset, length));
    expect(got.length).toBe(Math.min(length, whole.length - offset));
    expect(Buffer.from(got).equals(Buffer.from(whole.subarray(offset, offset + length)))).toBe(true);
  }
  expect(fake.userBytes()).toBe(used);
  expect(fake.called("write")).toHaveLength(writes);
  expect(fake.called("readFile")).toHaveLength(0);
});
