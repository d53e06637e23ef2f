// WeChat's VideoDecoder for the real-file shim: start({source}), seek(ms) to the keyframe at or
// before a time, then getFrameData() hands out the decoded pictures (RGBA, pkPts in ms) one by
// one; null while the next ones are being decoded or after the last, as on a phone. Decoding
// is PyAV's, in one Python process per decoder (decode-frames.py), a batch at a time.

const { spawn } = require("child_process");
const path = require("path");

const FIRST = 4; // a keyframe's thumbnail needs one picture: start small
const BATCH = 48;
const SCRIPT = path.join(__dirname, "decode-frames.py");

function python() {
  return process.env.BEATSYNC_PYTHON || path.resolve(__dirname, "../../../.venv/bin/python");
}

class RealVideoDecoder {
  start(options) {
    this.child = spawn(python(), [SCRIPT, options.source], { stdio: ["pipe", "pipe", "inherit"] });
    this.buffer = Buffer.alloc(0);
    this.waiting = null;
    this.queue = [];
    this.pending = null;
    this.done = false;
    this.child.stdout.on("data", (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.parse();
    });
    return Promise.resolve();
  }

  /** Ask for `count` pictures from `ms`; resolves with them. */
  fetch(ms, count) {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.child.stdin.write(`${ms} ${count}\n`);
    });
  }

  parse() {
    if (!this.waiting || this.buffer.length < 4) return;
    const n = this.buffer.readUInt32LE(0);
    const frames = [];
    let at = 4;
    for (let i = 0; i < n; i += 1) {
      if (this.buffer.length < at + 16) return;
      const width = this.buffer.readUInt32LE(at + 8);
      const height = this.buffer.readUInt32LE(at + 12);
      const end = at + 16 + width * height * 4;
      if (this.buffer.length < end) return;
      const pts = this.buffer.readDoubleLE(at);
      const data = new Uint8Array(this.buffer.subarray(at + 16, end)).buffer;
      frames.push({ pkPts: pts, pkDts: pts, width, height, data });
      at = end;
    }
    this.buffer = this.buffer.subarray(at);
    const resolve = this.waiting;
    this.waiting = null;
    resolve(frames);
  }

  async seek(ms) {
    if (this.pending) await this.pending;
    this.seekFrom = ms;
    this.last = null;
    this.queue = await this.fetch(ms, FIRST);
    this.done = this.queue.length < FIRST;
    this.size = FIRST;
  }

  getFrameData() {
    if (this.queue.length) {
      this.last = this.queue.shift();
      return this.last;
    }
    if (!this.done && !this.pending && this.last != null) this.more();
    return null;
  }

  /** The next batch, from the last picture handed out (its group decoded again from the key). */
  more() {
    const after = this.last;
    this.size = Math.min(this.size * 4, 1024);
    this.pending = this.fetch(this.seekFrom, this.size).then((frames) => {
      this.pending = null;
      this.queue = frames.filter((f) => f.pkPts > after.pkPts);
      this.done = frames.length < this.size;
    });
  }

  remove() {
    if (this.child) this.child.stdin.end();
    return Promise.resolve();
  }
}

module.exports = { RealVideoDecoder };
