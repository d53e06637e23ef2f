// WeChat's VideoDecoder for the real-file shim: start({source}), seek(ms) to the keyframe at or
// before a time, then getFrameData() hands out the decoded pictures (RGBA, pkPts in ms) one by
// one, null when none is left. Decoding is PyAV's (decode-frames.py, run with the project's
// Python) a batch of pictures at a time.

const { spawnSync } = require("child_process");
const path = require("path");

const BATCH = 48;
const SCRIPT = path.join(__dirname, "decode-frames.py");

function python() {
  return process.env.BEATSYNC_PYTHON || path.resolve(__dirname, "../../../.venv/bin/python");
}

function decode(source, ms, count) {
  const run = spawnSync(python(), [SCRIPT, source, String(ms), String(count)], {
    maxBuffer: 1 << 30,
  });
  if (run.status !== 0) throw new Error(`decode-frames failed: ${run.stderr}`);
  const frames = [];
  const out = run.stdout;
  for (let at = 0; at < out.length; ) {
    const pts = out.readDoubleLE(at);
    const width = out.readUInt32LE(at + 8);
    const height = out.readUInt32LE(at + 12);
    const size = width * height * 4;
    const rgba = out.subarray(at + 16, at + 16 + size);
    frames.push({ pkPts: pts, pkDts: pts, width, height, data: new Uint8Array(rgba).buffer });
    at += 16 + size;
  }
  return frames;
}

class RealVideoDecoder {
  start(options) {
    this.source = options.source;
    this.queue = [];
    this.from = 0;
    return Promise.resolve();
  }

  seek(ms) {
    this.queue = decode(this.source, ms, BATCH);
    this.from = ms;
    return Promise.resolve();
  }

  getFrameData() {
    if (!this.queue.length) return null;
    const frame = this.queue.shift();
    if (!this.queue.length) {
      // The next batch: from just after this picture.
      const more = decode(this.source, frame.pkPts + 0.5, BATCH + 8).filter((f) => f.pkPts > frame.pkPts);
      this.queue = more;
    }
    return frame;
  }

  remove() {
    this.queue = [];
    return Promise.resolve();
  }
}

module.exports = { RealVideoDecoder };
