// Following one job until it finishes: the job's WebSocket (wx.connectSocket) carries each
// change live; when the socket cannot open, drops, or the phone loses the network, polling
// takes over, slower after failures. The poll answer is the truth, so the finished job is
// always read once more with a plain GET. `onJob` only ever sees a job move forward.

const api = require("./api.js");
const { ApiError, describe } = require("./errors.js");
const { formatDateTime, formatPercent } = require("./format.js");

const STAGES = ["probe", "decode", "align", "trim", "render"];
const STAGE_NAMES = {
  probe: "读取文件",
  decode: "解码音频",
  align: "对齐音乐",
  trim: "确定剪辑范围",
  render: "生成视频",
};
const TERMINAL = ["succeeded", "failed", "canceled"];
const POLL_MS = 1000;
const POLL_MAX_MS = 5000;
const OPEN_TIMEOUT_MS = 8000;
// While the socket is quiet the job is read anyway now and then: a socket can die unseen.
const SAFETY_POLL_MS = 15000;

function isTerminal(job) {
  return Boolean(job) && TERMINAL.indexOf(job.status) >= 0;
}

class JobWatcher {
  /**
   * @param {string} jobId
   * @param {object} options onJob(job, via) on every change ("socket" | "poll"),
   *   onEnd(job) once it has finished, onError(error) when it cannot be read (404),
   *   socket (false: poll only), pollMs, maxPollMs, openTimeoutMs
   */
  constructor(jobId, options) {
    const opts = options || {};
    this.jobId = jobId;
    this.onJob = opts.onJob || (() => {});
    this.onEnd = opts.onEnd || (() => {});
    this.onError = opts.onError || (() => {});
    this.useSocket = opts.socket !== false;
    this.pollMs = opts.pollMs || POLL_MS;
    this.maxPollMs = opts.maxPollMs || POLL_MAX_MS;
    this.openTimeoutMs = opts.openTimeoutMs || OPEN_TIMEOUT_MS;
    this.socket = null;
    this.timer = null;
    this.safety = null;
    this.stopped = false;
    this.ended = false;
    this.job = null;
    this.via = null;
    this.counts = { socketMessages: 0, polls: 0, socketFailures: 0 };
  }

  /** Begin with `job` (what the caller already has) or a first read. */
  start(job) {
    this.stopped = false;
    if (job) {
      this.deliver(job, "start");
      if (isTerminal(job)) {
        this.finish(job);
        return;
      }
    }
    if (this.useSocket && api.token()) this.openSocket();
    else this.poll(0);
  }

  stop() {
    this.stopped = true;
    this.closeSocket();
    clearTimeout(this.timer);
    clearTimeout(this.safety);
    this.timer = null;
  }

  deliver(job, via) {
    if (!job || job.id !== this.jobId || this.stopped) return;
    const previous = this.job;
    const moved =
      !previous ||
      previous.status !== job.status ||
      previous.stage !== job.stage ||
      previous.progress !== job.progress ||
      previous.attempts !== job.attempts;
    this.job = job;
    this.via = via;
    if (moved || isTerminal(job)) this.onJob(job, via);
  }

  openSocket() {
    let opened = false;
    let task;
    try {
      task = wx.connectSocket({
        url: api.socketUrl(
          (this.job && this.job.links && this.job.links.ws) ||
            `${api.PREFIX}/jobs/${encodeURIComponent(this.jobId)}/ws`,
        ),
        header: api.headers(),
        timeout: this.openTimeoutMs,
      });
    } catch (error) {
      this.counts.socketFailures += 1;
      this.poll(0);
      return;
    }
    this.socket = task;
    const fallBack = () => {
      if (this.socket !== task) return;
      this.socket = null;
      this.counts.socketFailures += 1;
      clearTimeout(this.safety);
      if (!this.stopped && !this.ended) this.poll(0);
    };
    const openTimer = setTimeout(() => {
      if (!opened) {
        fallBack();
        try {
          task.close({ code: 1000 });
        } catch (error) {
          // Already gone.
        }
      }
    }, this.openTimeoutMs);
    task.onOpen(() => {
      opened = true;
      clearTimeout(openTimer);
      this.armSafety();
    });
    task.onMessage((message) => {
      if (this.socket !== task) return;
      let job;
      try {
        job = JSON.parse(typeof message.data === "string" ? message.data : "");
      } catch (error) {
        return;
      }
      this.counts.socketMessages += 1;
      this.armSafety();
      if (isTerminal(job)) {
        // The poll answer is the truth (and speaks the phone's language): read it once more.
        this.socket = null;
        clearTimeout(this.safety);
        this.deliver(Object.assign({}, job), "socket");
        this.poll(0);
      } else {
        this.deliver(job, "socket");
      }
    });
    task.onError(() => {
      clearTimeout(openTimer);
      fallBack();
    });
    task.onClose(() => {
      clearTimeout(openTimer);
      fallBack();
    });
  }

  closeSocket() {
    const task = this.socket;
    this.socket = null;
    if (task) {
      try {
        task.close({ code: 1000 });
      } catch (error) {
        // Already closed.
      }
    }
  }

  armSafety() {
    clearTimeout(this.safety);
    this.safety = setTimeout(() => this.readOnce(), SAFETY_POLL_MS);
  }

  async readOnce() {
    if (this.stopped || this.ended || !this.socket) return;
    try {
      const job = await api.job(this.jobId);
      this.counts.polls += 1;
      this.deliver(job, "poll");
      if (isTerminal(job)) this.finish(job);
      else this.armSafety();
    } catch (error) {
      this.armSafety();
    }
  }

  poll(failures) {
    clearTimeout(this.timer);
    const delay = failures ? Math.min(this.pollMs * 2 ** (failures - 1), this.maxPollMs) : 0;
    this.timer = setTimeout(async () => {
      if (this.stopped || this.ended) return;
      let next = failures;
      try {
        const job = await api.job(this.jobId);
        this.counts.polls += 1;
        if (this.stopped) return;
        this.deliver(job, "poll");
        if (isTerminal(job)) {
          this.finish(job);
          return;
        }
        next = 1;
      } catch (error) {
        if (error instanceof ApiError && (error.status === 404 || error.status === 401)) {
          this.stop();
          this.onError(error);
          return;
        }
        next = failures + 1;
      }
      this.poll(Math.max(1, next));
    }, delay);
  }

  finish(job) {
    if (this.ended) return;
    this.ended = true;
    this.stop();
    this.onEnd(job);
  }
}

/**
 * What the stage list shows: each stage done, active, failed, stopped or pending, and the
 * overall fraction; `peak` keeps both from going backwards when an older answer arrives late.
 */
function stageView(job, peak) {
  const seen = peak || { stage: -1, progress: 0 };
  const index = job.status === "succeeded" ? STAGES.length : STAGES.indexOf(job.stage);
  const stage = Math.max(seen.stage, index);
  const progress = Math.max(
    seen.progress,
    job.status === "succeeded" ? 1 : Math.min(1, Number(job.progress) || 0),
  );
  const stages = STAGES.map((key, position) => {
    let state = "pending";
    if (position < stage) state = "done";
    else if (position === stage) {
      if (job.status === "running" || job.status === "queued") state = "active";
      else if (job.status === "failed") state = "failed";
      else if (job.status === "canceled") state = "stopped";
    }
    return { key, name: STAGE_NAMES[key], state };
  });
  return { stages, peak: { stage, progress }, percent: Math.floor(progress * 100) };
}

const STATUS_NAMES = {
  queued: "排队中",
  running: "处理中",
  succeeded: "已完成",
  failed: "失败",
  canceled: "已取消",
};

/** The one line under the bar: "对齐音乐… 45%", "排队等待中…", "完成！". */
function statusLine(job, view) {
  if (job.status === "queued") return "排队等待中…";
  if (job.status === "running") {
    const active = view.stages.filter((item) => item.state === "active")[0];
    return `${active ? active.name : "处理中"}… ${view.percent}%`;
  }
  if (job.status === "succeeded") return "完成！";
  if (job.status === "canceled") return "任务已取消。";
  return "任务失败。";
}

/** One row of "my jobs": status in words and what matters about it. */
function jobSummary(job) {
  let detail = "";
  if (job.status === "succeeded" && job.result) {
    detail = `可信度 ${formatPercent(Number(job.result.confidence) || 0)}`;
    if (job.options && Number(job.options.nudge_ms))
      detail += ` · 微调 ${job.options.nudge_ms} 毫秒`;
  } else if (job.status === "failed" && job.error) {
    detail = describe(job.error).message;
  } else if (job.status === "running" && STAGE_NAMES[job.stage]) {
    detail = `${STAGE_NAMES[job.stage]} · ${formatPercent(job.progress || 0)}`;
  }
  return {
    id: job.id,
    status: job.status,
    statusName: STATUS_NAMES[job.status] || job.status,
    when: formatDateTime(job.created_at),
    detail,
  };
}

module.exports = {
  JobWatcher,
  jobSummary,
  STAGES,
  STAGE_NAMES,
  STATUS_NAMES,
  isTerminal,
  stageView,
  statusLine,
};
