#!/usr/bin/env node
// The mini-program's own upload and job code against the real BeatSync service, with a `wx`
// whose network and files are real (tests/support/real-wx.js):
//
//   1. the class video is chosen from the album and sent over tus; the connection drops in
//      the middle of the chunk that holds the file's midpoint, and the uploader asks the
//      server for its offset (HEAD) and finishes from there;
//   2. the reference is chosen from a chat file; the app goes to the background mid-upload and
//      comes back, and the upload goes on from the server's offset;
//   3. the class video chosen again is sent instantly (sha256, no bytes);
//   4. the job runs, followed live over the WebSocket; a nudge of +7 ms is rendered and
//      followed by polling (sockets refused); another candidate is rendered;
//   5. the result is saved to the "album" (permission asked, real download), a refusal of the
//      permission is handled, and "my jobs" lists the jobs.
//
// Every step checks what it can; the JSON report (stdout, or --out) carries what the caller
// verifies further (the saved file's sync against the truth). Exit 0 only when all passed.
//
//   node tests/e2e/flow.js --url http://127.0.0.1:8000 --dance D.mp4 --bgm B.mp4 \
//        [--dance-duration S] [--work DIR] [--out report.json]
// Without --url it starts `beatsync serve` (from ../.venv) and builds a generated pair itself.

const assert = require("assert/strict");
const childProcess = require("child_process");
const crypto = require("crypto");
const fs = require("fs");
const net = require("net");
const os = require("os");
const path = require("path");

const { createRealWx } = require("../support/real-wx.js");

const ROOT = path.resolve(__dirname, "../..");
const REPO = path.resolve(ROOT, "..");
const CHUNK = 256 * 1024;
const JOB_DEADLINE_MS = 180 * 1000;

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 1) {
    if (!argv[i].startsWith("--")) throw new Error(`unexpected argument ${argv[i]}`);
    args[argv[i].slice(2)] = argv[i + 1];
    i += 1;
  }
  return args;
}

function sha256File(file) {
  return crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

async function waitUntil(what, condition, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** `beatsync serve` and a generated pair, when no service was given. */
async function ownService(work) {
  const python = process.env.BEATSYNC_PYTHON || path.join(REPO, ".venv", "bin", "python");
  const media = JSON.parse(
    childProcess.execFileSync(
      python,
      [
        "-c",
        [
          "import json, sys",
          "from beatsync.engine import probe",
          "from beatsync.testkit.cases import build_case",
          "from beatsync.testkit.catalog import case_named",
          "case = build_case(case_named('small-degraded'), sys.argv[1])",
          "print(json.dumps({'dance': str(case.dance), 'bgm': str(case.bgm), 'dance_duration': probe(case.dance).duration}))",
        ].join("\n"),
        path.join(work, "media"),
      ],
      { encoding: "utf8" },
    ),
  );
  const port = await freePort();
  const data = path.join(work, "data");
  fs.mkdirSync(data, { recursive: true });
  const server = childProcess.spawn(
    python,
    ["-m", "beatsync", "serve", "--host", "127.0.0.1", "--port", String(port), "--workers", "1"],
    {
      env: Object.assign({}, process.env, {
        BEATSYNC_DATA_DIR: data,
        BEATSYNC_MIN_FREE_DISK_MB: "0",
      }),
      stdio: [
        "ignore",
        fs.openSync(path.join(work, "server.log"), "a"),
        fs.openSync(path.join(work, "server.log"), "a"),
      ],
      detached: true,
    },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(
    "the service to be ready",
    async () => {
      if (server.exitCode !== null)
        throw new Error(
          `beatsync serve exited: ${fs.readFileSync(path.join(work, "server.log"), "utf8")}`,
        );
      try {
        return (await fetch(`${url}/api/health/ready`)).status === 200;
      } catch (error) {
        return false;
      }
    },
    60000,
  );
  return {
    url,
    media,
    stop: () => {
      try {
        process.kill(-server.pid, "SIGTERM");
      } catch (error) {
        // Already gone.
      }
    },
  };
}

function isPatch(request) {
  return request.method === "POST" && request.header["X-HTTP-Method-Override"] === "PATCH";
}

/** Choose a file with a slot and wait until it has settled; every view it showed is kept. */
async function upload(slot, source, views) {
  const picked = await slot.pick(source);
  assert.equal(picked, true, "the picker gave a file");
  await waitUntil(
    `the ${slot.kind} upload to settle`,
    () => ["ready", "failed", "rejected", "invalid"].includes(slot.state),
    120000,
  );
  assert.equal(
    slot.state,
    "ready",
    `the ${slot.kind} upload ended ${slot.state}: ${JSON.stringify(slot.error)}`,
  );
  const progress = views.filter((view) => view.state === "uploading").map((view) => view.percent);
  return progress;
}

function follow(JobWatcher, job, options) {
  return new Promise((resolve, reject) => {
    const events = [];
    const timer = setTimeout(
      () => reject(new Error(`job ${job.id} did not finish`)),
      JOB_DEADLINE_MS,
    );
    const watcher = new JobWatcher(job.id, {
      socket: options.socket,
      onJob: (next, via) =>
        events.push({ via, status: next.status, stage: next.stage, progress: next.progress }),
      onEnd: (final) => {
        clearTimeout(timer);
        resolve({ job: final, events, counts: watcher.counts });
      },
      onError: (error) => {
        clearTimeout(timer);
        reject(error);
      },
    });
    watcher.start(job);
  });
}

async function run(args) {
  const work = args.work || fs.mkdtempSync(path.join(os.tmpdir(), "beatsync-mp-"));
  fs.mkdirSync(work, { recursive: true });
  let service = null;
  let url = args.url;
  let dance = args.dance;
  let bgm = args.bgm;
  let danceDuration = args["dance-duration"] != null ? Number(args["dance-duration"]) : null;
  if (!url) {
    service = await ownService(work);
    url = service.url;
    dance = service.media.dance;
    bgm = service.media.bgm;
    danceDuration = service.media.dance_duration;
  }
  const report = { url, steps: [] };
  const shim = createRealWx({ tempDir: path.join(work, "phone") });
  global.wx = shim.wx;
  // The mini-program's modules, exactly as the pages use them.
  const api = require("../../utils/api.js");
  const album = require("../../utils/album.js");
  const background = require("../../utils/background.js");
  const { JobWatcher, jobSummary } = require("../../utils/job.js");
  const { resultView } = require("../../utils/result.js");
  const { UploadSlot } = require("../../utils/slot.js");
  api.setBase(url);
  try {
    // 1. The class video from the album, its connection cut in the middle of the midpoint chunk.
    const danceSize = fs.statSync(dance).size;
    const midChunk = Math.floor(danceSize / 2 / CHUNK) * CHUNK;
    const cutAfter = Math.floor(Math.min(CHUNK, danceSize - midChunk) / 2);
    let cuts = 0;
    shim.fault((request) => {
      if (isPatch(request) && request.header["Upload-Offset"] === String(midChunk) && cuts === 0) {
        cuts += 1;
        return { cutAfter };
      }
      return null;
    });
    const danceViews = [];
    const slotOptions = {
      chunkBytes: CHUNK,
      minChunkBytes: CHUNK,
      maxChunkBytes: CHUNK,
      retryDelays: [200, 400, 800, 1600],
    };
    // This flow is the server path's (the whole video goes up); audio-first has its own.
    const danceSlot = new UploadSlot(
      "dance",
      Object.assign({ onChange: (view) => danceViews.push(view), audioFirst: false }, slotOptions),
    );
    shim.willPick("album", { path: dance, duration: danceDuration, width: 320, height: 240 });
    const danceProgress = await upload(danceSlot, "album", danceViews);
    const danceUpload = await api.upload(danceSlot.uploadId);
    const danceSha = sha256File(dance);
    assert.equal(cuts, 1, "the connection was cut once");
    assert.equal(danceUpload.sha256, danceSha, "the server's sha256 is the file's");
    assert.equal(danceUpload.size, danceSize);
    assert.equal(danceUpload.media.has_video, true);
    const dancePatches = shim
      .called("request")
      .filter((r) => isPatch(r) && r.url.includes(danceSlot.uploadId));
    const danceOffsets = dancePatches.map((r) => Number(r.header["Upload-Offset"]));
    assert.ok(danceSlot.tus.stats.heads >= 1, "the uploader asked the server for its offset");
    // The server keeps what it read of the cut chunk (all of it, unless the connection's end
    // overtook the last bytes): the upload goes on from there, not from the chunk's start.
    const resumedFrom = Math.max(
      ...danceOffsets.filter((o) => o >= midChunk && o < midChunk + CHUNK),
    );
    assert.ok(
      resumedFrom >= midChunk && resumedFrom <= midChunk + cutAfter,
      `went on from what the server kept: ${danceOffsets}`,
    );
    const after = danceOffsets.slice(danceOffsets.lastIndexOf(resumedFrom));
    after.forEach((offset, i) =>
      assert.equal(offset, resumedFrom + i * CHUNK, `chunks after the cut: ${after}`),
    );
    assert.equal(resumedFrom + (after.length - 1) * CHUNK < danceSize, true);
    assert.deepEqual(
      danceProgress,
      [...danceProgress].sort((a, b) => a - b),
      "progress only moves forward",
    );
    assert.equal(danceViews[danceViews.length - 1].percent, 100);
    assert.ok(
      danceViews.some((view) => view.state === "retrying"),
      "the lost connection was shown",
    );
    assert.ok(
      danceViews.some((view) => /^\d/.test(view.speedText) && view.speedText.endsWith("/秒")),
      "a speed was shown",
    );
    assert.equal(
      danceViews.some((view) => view.state === "hashing"),
      true,
      "the file was hashed for instant upload",
    );
    report.steps.push("dance uploaded over tus, cut halfway and resumed");
    report.dance = {
      upload_id: danceSlot.uploadId,
      size: danceSize,
      sha256_local: danceSha,
      sha256_server: danceUpload.sha256,
      cut_at: midChunk,
      cut_after: cutAfter,
      resumed_from: resumedFrom,
      patch_offsets: danceOffsets,
      heads: danceSlot.tus.stats.heads,
      retries: danceSlot.tus.stats.retries,
      duration_text: danceViews[danceViews.length - 1].durationText,
      size_text: danceViews[danceViews.length - 1].sizeText,
    };

    // 2. The reference from a chat file; the app goes to the background during its second chunk.
    const bgmViews = [];
    const bgmSlot = new UploadSlot(
      "bgm",
      Object.assign({ onChange: (view) => bgmViews.push(view) }, slotOptions),
    );
    let bgmPatches = 0;
    let hiddenAt = null;
    shim.fault((request) => {
      if (isPatch(request) && !request.url.includes(danceSlot.uploadId) && ++bgmPatches === 2) {
        hiddenAt = Number(request.header["Upload-Offset"]);
        // Hidden as this chunk leaves: it reaches the server, but the phone never hears back.
        background.hidden();
      }
      return null;
    });
    shim.willPick("chat", { path: bgm, name: "参考音乐.mp4" });
    const picking = bgmSlot.pick("chat");
    await waitUntil("the reference upload to pause", () => bgmSlot.state === "paused", 30000);
    const headsBefore = shim.called("request").filter((r) => r.method === "HEAD").length;
    background.shown();
    await picking;
    await waitUntil(
      "the reference upload to settle",
      () => ["ready", "failed", "rejected"].includes(bgmSlot.state),
      60000,
    );
    assert.equal(bgmSlot.state, "ready", JSON.stringify(bgmSlot.error));
    const bgmUpload = await api.upload(bgmSlot.uploadId);
    assert.equal(bgmUpload.sha256, sha256File(bgm));
    assert.equal(bgmUpload.filename, "参考音乐.mp4");
    assert.ok(
      shim.called("request").filter((r) => r.method === "HEAD").length > headsBefore,
      "resumed with a HEAD",
    );
    const pausedView = bgmViews.find((view) => view.state === "paused");
    assert.match(pausedView.statusText, /^已暂停（\d+%），回到小程序后继续$/);
    report.steps.push("reference uploaded from a chat file, paused in the background and resumed");
    report.bgm = {
      upload_id: bgmSlot.uploadId,
      sha256_local: sha256File(bgm),
      sha256_server: bgmUpload.sha256,
      hidden_at: hiddenAt,
      patch_offsets: shim
        .called("request")
        .filter((r) => isPatch(r) && r.url.includes(bgmSlot.uploadId))
        .map((r) => Number(r.header["Upload-Offset"])),
    };

    // 3. The class video again: the server has it, so nothing is sent.
    const copy = path.join(work, "phone", "again.mp4");
    fs.copyFileSync(dance, copy);
    const creates = () =>
      shim.called("request").filter((r) => r.method === "POST" && r.url.endsWith("/api/v1/tus"))
        .length;
    const createsBefore = creates();
    const againViews = [];
    const again = new UploadSlot("dance", {
      onChange: (view) => againViews.push(view),
      audioFirst: false,
    });
    shim.willPick("album", { path: copy, duration: danceDuration });
    await upload(again, "album", againViews);
    assert.equal(again.instant, true, "sent instantly");
    assert.equal(again.uploadId, danceSlot.uploadId);
    assert.equal(creates(), createsBefore, "no tus upload was created");
    assert.equal(againViews[againViews.length - 1].statusText, "秒传完成：服务器上已有这个文件");
    report.steps.push("the same video again was sent instantly");
    report.instant = { upload_id: again.uploadId };

    // 4. The job, live over the WebSocket.
    const created = await api.createJob(danceSlot.uploadId, bgmSlot.uploadId, {});
    const live = await follow(JobWatcher, created, { socket: true });
    assert.equal(live.job.status, "succeeded", JSON.stringify(live.job.error));
    assert.ok(live.counts.socketMessages >= 1, "progress came over the socket");
    assert.equal(shim.called("connectSocket")[0].header.Authorization, `Bearer ${api.token()}`);
    const progress = live.events.map((event) => event.progress);
    assert.deepEqual(
      progress,
      [...progress].sort((a, b) => a - b),
      "progress only moves forward",
    );
    assert.equal(live.events.filter((event) => event.status === "succeeded").length >= 1, true);
    const view = resultView(live.job);
    assert.equal(view.videoUrl.startsWith(`${url}/api/v1/files/${created.id}/output.mp4?`), true);
    report.steps.push("the job ran, followed over the WebSocket");
    report.job = {
      id: created.id,
      events: live.events,
      counts: live.counts,
      mapping: live.job.result.mapping,
      candidates: live.job.result.candidates,
      confidence_text: view.confidencePercent,
      report_url: view.reportUrl,
      video_url: view.videoUrl,
    };

    // A nudge, followed by polling only: the sockets are refused.
    shim.state.refuseSockets = true;
    const nudged = await follow(JobWatcher, await api.render(created.id, { nudge_ms: 7 }), {
      socket: true,
    });
    shim.state.refuseSockets = false;
    assert.equal(nudged.job.status, "succeeded", JSON.stringify(nudged.job.error));
    assert.equal(nudged.job.parent_id, created.id);
    assert.ok(
      nudged.counts.socketFailures >= 1 && nudged.counts.polls >= 1,
      "fell back to polling",
    );
    assert.ok(nudged.events.every((event) => event.via !== "socket"));
    report.steps.push("a +7 ms nudge ran, followed by polling");
    report.nudge = { id: nudged.job.id, mapping: nudged.job.result.mapping, counts: nudged.counts };

    if (live.job.result.candidates.length) {
      const candidate = live.job.result.candidates[0];
      const other = await follow(
        JobWatcher,
        await api.render(created.id, { candidate: candidate.index, nudge_ms: 0 }),
        { socket: true },
      );
      assert.equal(other.job.status, "succeeded");
      assert.ok(
        Math.abs(other.job.result.mapping.offset_s - candidate.offset_s) < 1e-4,
        "the candidate's mapping was used",
      );
      report.steps.push("another candidate was rendered");
      report.candidate = { id: other.job.id, mapping: other.job.result.mapping, wanted: candidate };
    }

    // 5. Saving: first refused (nothing is downloaded), then allowed.
    shim.state.authSetting = { "scope.writePhotosAlbum": false };
    const refused = await album.saveVideo(view.videoUrl);
    assert.deepEqual(refused, { saved: false, needsSetting: true });
    assert.equal(shim.called("downloadFile").length, 0);
    shim.state.authSetting = {};
    const fractions = [];
    const saved = await album.saveVideo(view.videoUrl, (fraction) => fractions.push(fraction));
    assert.equal(saved.saved, true);
    assert.deepEqual(
      shim.called("authorize").map((call) => call.scope),
      ["scope.writePhotosAlbum"],
    );
    const inAlbum = shim.called("album");
    assert.equal(inAlbum.length, 1);
    assert.equal(fs.statSync(inAlbum[0].path).size, live.job.result.output.size_bytes);
    assert.equal(fractions[fractions.length - 1], 1);
    // Sharing: the file is made ready first; the tap then shares it.
    const ready = await album.download(view.videoUrl);
    await new Promise((resolve, reject) =>
      shim.wx.shareVideoMessage({ videoPath: ready, success: resolve, fail: reject }),
    );
    assert.equal(shim.called("shareVideoMessage")[0].exists, true);
    report.steps.push("the result was saved to the album and shared");
    report.saved = {
      path: inAlbum[0].path,
      size: fs.statSync(inAlbum[0].path).size,
      sha256: sha256File(inAlbum[0].path),
    };

    // "My jobs", from the token kept in storage.
    const stored = shim.wx.getStorageSync("beatsync.token");
    assert.equal(stored, api.token());
    const mine = await api.jobs(20);
    const ids = mine.items.map((job) => job.id);
    for (const id of [created.id, nudged.job.id])
      assert.ok(ids.includes(id), `${id} is in my jobs`);
    assert.ok(mine.items.map(jobSummary).every((row) => row.statusName === "已完成"));
    report.steps.push("my jobs list them all");
    report.history = ids;
    report.ok = true;
  } catch (error) {
    report.ok = false;
    report.error = error && error.stack ? error.stack : String(error);
  } finally {
    if (service) service.stop();
  }
  return report;
}

if (require.main === module) {
  run(parseArgs(process.argv.slice(2))).then(
    (report) => {
      const text = JSON.stringify(report, null, 2);
      const args = parseArgs(process.argv.slice(2));
      if (args.out) fs.writeFileSync(args.out, text);
      process.stdout.write(`${text}\n`);
      if (!report.ok) process.stderr.write(`${report.error}\n`);
      // Sockets and timers of the service client may linger; the verdict is in.
      process.exit(report.ok ? 0 : 1);
    },
    (error) => {
      process.stderr.write(`${error.stack || error}\n`);
      process.exit(1);
    },
  );
}

module.exports = { run };
