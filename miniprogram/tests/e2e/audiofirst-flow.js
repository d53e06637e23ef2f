// Audio-first as the mini-program runs it, in Node with the real-file wx shim, against a
// running service: the class video's sound re-wrapped and uploaded (never the video), the
// keyframes and the asked frames decoded on the "phone", the result assembled into a user file
// within WeChat's 200 MB, saved to the "album" and deleted; or, when it cannot fit, the job
// rendered again without a cut and the whole video with that sound exported by MediaContainer
// into a temporary file and saved. Writes a JSON report (with the path that ran) for
// tests/e2e/test_miniprogram_audio_first.py, which measures the saved file.
//   node tests/e2e/audiofirst-flow.js --url URL --dance VIDEO --bgm REFERENCE --work DIR --out REPORT

const fs = require("fs");
const path = require("path");
const { createRealWx } = require("../support/real-wx.js");

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, "")] = argv[i + 1];
  return args;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function ready(slot, file) {
  await slot.use(file);
  if (!slot.ready) throw new Error(`${slot.kind} upload: ${JSON.stringify(slot.error)}`);
}

async function run() {
  const args = parseArgs(process.argv.slice(2));
  fs.mkdirSync(args.work, { recursive: true });
  const shim = createRealWx({ tempDir: args.work });
  global.wx = shim.wx;
  const api = require("../../utils/api.js");
  const album = require("../../utils/album.js");
  const audiofirst = require("../../utils/audiofirst.js");
  const { UploadSlot } = require("../../utils/slot.js");
  api.setBase(args.url);
  const report = { steps: [] };
  const started = Date.now();

  const videoSize = fs.statSync(args.dance).size;
  const dance = new UploadSlot("dance", {});
  await ready(dance, { path: args.dance, size: videoSize, name: "class.mp4", type: "video" });
  if (!dance.local) throw new Error(`not audio-first: ${dance.pathNote}`);
  const bgmSize = fs.statSync(args.bgm).size;
  const bgm = new UploadSlot("bgm", { audioFirst: false });
  await ready(bgm, { path: args.bgm, size: bgmSize, name: path.basename(args.bgm), type: "video" });
  const sent = shim
    .called("request")
    .filter((r) => r.header["X-HTTP-Method-Override"] === "PATCH" && r.url.includes(dance.uploadId))
    .reduce((sum, r) => sum + r.bytes, 0);
  report.upload = { video_bytes: videoSize, sound_bytes: dance.local.audio.size, sent_bytes: sent };

  let job = await api.createJob(dance.uploadId, bgm.uploadId, {}, audiofirst.jobFields(dance.local));
  audiofirst.remember(job.id, dance.local);
  const answered = new Set();
  let frames = 0;
  const deadline = Date.now() + 10 * 60 * 1000;
  while (!["succeeded", "failed", "canceled"].includes(job.status)) {
    if (Date.now() > deadline) throw new Error(`job ${job.id} did not end`);
    if (job.frames_request && !answered.has(job.frames_request.id)) {
      frames += job.frames_request.samples.length;
      await audiofirst.answerFrames(job, dance.local, answered);
    }
    await sleep(100);
    job = await api.job(job.id);
  }
  if (job.status !== "succeeded") throw new Error(`job ${job.id}: ${JSON.stringify(job.error)}`);
  report.job = { id: job.id, bgm_upload_id: job.bgm_upload_id, frames_answered: frames, assembly: job.result.assembly };

  try {
    const out = await audiofirst.assembleResult(dance.local, job.result.assembly, { name: job.id });
    report.path = "phone";
    report.assembled = { size: out.size, user_bytes: await audiofirst.userBytes() };
    const saved = await album.saveFile(out.path);
    if (!saved.saved) throw new Error(`not saved: ${JSON.stringify(saved)}`);
    await audiofirst.removeQuietly(out.path);
    report.saved = { path: shim.called("album")[0].path, left_in_user_files: fs.existsSync(out.path) };
  } catch (error) {
    if (error.code !== "OUTPUT_TOO_LARGE") throw error;
    report.path = "mediacontainer-whole";
    report.trimmed_size = error.size;
    const whole = await audiofirst.assembleWhole(job, dance.local, { pollMs: 200 });
    const variant = await api.job(whole.jobId);
    report.variant = { id: variant.id, options: variant.options, assembly: variant.result.assembly };
    report.assembled = {
      size: fs.statSync(whole.path).size,
      user_bytes: await audiofirst.userBytes(),
      in_user_files: path.resolve(whole.path).startsWith(shim.userDir + path.sep),
    };
    const saved = await album.saveFile(whole.path);
    if (!saved.saved) throw new Error(`not saved: ${JSON.stringify(saved)}`);
    report.saved = { path: shim.called("album")[0].path, left_in_user_files: false };
  }
  report.user_files_left = fs
    .readdirSync(path.join(shim.userDir, "beatsync"))
    .filter((name) => !name.endsWith(".m4a"));
  const reads = shim.called("readFile");
  report.read_file_calls = reads.length;
  report.keep_screen_on = shim.called("setKeepScreenOn").map((c) => c.keepScreenOn);
  report.seconds = (Date.now() - started) / 1000;
  return report;
}

run().then(
  (report) => {
    fs.writeFileSync(parseArgs(process.argv.slice(2)).out, JSON.stringify(report, null, 1));
    process.exit(0);
  },
  (error) => {
    process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
    process.exit(1);
  },
);
