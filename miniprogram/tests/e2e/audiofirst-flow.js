// Audio-first as the mini-program runs it, in Node with the real-file wx shim, against a
// running service: the class video's sound re-wrapped and uploaded (never the video), the
// keyframes and the asked frames decoded on the "phone", the result assembled into a user file
// within WeChat's 200 MB, saved to the "album" and deleted; or, when it cannot fit, the job
// rendered again without a cut and the whole video with that sound exported by MediaContainer
// into a temporary file and saved; or, without MediaContainer (--no-container), only the kept
// span sent for the service's 720p render (the assembled result, made as it is sent) and its
// file downloaded. --user-bytes leaves only that much of the 200 MB of user files free, to
// reach that path with a small video. Writes a JSON report (with the path that ran) for
// tests/e2e/test_miniprogram_audio_first.py, which measures the saved file.
//   node tests/e2e/audiofirst-flow.js --url URL --dance VIDEO --bgm REFERENCE --work DIR --out REPORT
//     [--no-container 1] [--user-bytes N]

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
  if (args["no-container"]) delete shim.wx.createMediaContainer;
  if (args["user-bytes"]) {
    // Someone else's files take all but that much of the 200 MB (a sparse file: no disk used).
    const { LIMITS } = require("../support/wx-rules.js");
    fs.mkdirSync(shim.userDir, { recursive: true });
    fs.truncateSync(fs.openSync(path.join(shim.userDir, "others.bin"), "w"), 0);
    fs.truncateSync(path.join(shim.userDir, "others.bin"), LIMITS.userDataBytes - Number(args["user-bytes"]));
  }
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
    if (!require("../../utils/container.js").available()) {
      // What the job page's 720p button does: the kept span goes up, the service renders it.
      report.path = "server-720-kept-span";
      report.trimmed_size = error.size;
      const kept = await audiofirst.keptSpan(dance.local, job.result.assembly, "class");
      const slot = new UploadSlot("dance", { audioFirst: false });
      await ready(slot, kept);
      const sentSpan = shim
        .called("request")
        .filter((r) => r.header["X-HTTP-Method-Override"] === "PATCH" && r.url.includes(slot.uploadId))
        .reduce((sum, r) => sum + r.bytes, 0);
      report.span = { size: kept.size, sent_bytes: sentSpan, upload_id: slot.uploadId };
      let rendered = await api.createJob(slot.uploadId, job.bgm_upload_id, { reencode: true, max_height: 720, nudge_ms: 0 });
      while (!["succeeded", "failed", "canceled"].includes(rendered.status)) {
        if (Date.now() > deadline) throw new Error(`job ${rendered.id} did not end`);
        await sleep(200);
        rendered = await api.job(rendered.id);
      }
      if (rendered.status !== "succeeded") throw new Error(`job ${rendered.id}: ${JSON.stringify(rendered.error)}`);
      report.rendered = { id: rendered.id, options: rendered.options, output: rendered.result.output };
      const file = await album.download(api.absolute(rendered.result.files.video));
      report.saved = { path: file, left_in_user_files: false };
      report.assembled = { user_bytes: await audiofirst.userBytes() };
      report.user_files_left = [];
      report.read_file_calls = shim.called("readFile").length;
      report.keep_screen_on = shim.called("setKeepScreenOn").map((c) => c.keepScreenOn);
      return report;
    }
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
