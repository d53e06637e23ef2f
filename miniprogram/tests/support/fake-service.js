// An in-memory double of the BeatSync API for component and page tests: sessions, tus (with
// the X-HTTP-Method-Override a mini-program needs), instant upload, jobs and their sockets,
// answering with the service's JSON shapes. Tests move jobs along with `advance()` and make
// the network fail with `fault()`. The real service is exercised by the end-to-end test.

const crypto = require("crypto");

const ZH = {
  NOT_FOUND: "找不到该资源。",
  UNAUTHORIZED: "需要有效的访问令牌。",
  UPLOAD_CONFLICT: "上传偏移量与服务器不一致，请从服务器的偏移量继续。",
  FILE_TOO_LARGE: "文件太大。",
  QUOTA_EXCEEDED: "任务数量已达上限，请等待当前任务完成。",
  NO_AUDIO_TRACK: "文件中没有音轨。",
};

/** An RFC 9457 problem document as the service writes it (type, title, status, detail…). */
function problem(status, code, extra) {
  return {
    statusCode: status,
    header: { "Content-Type": "application/problem+json", "Tus-Resumable": "1.0.0" },
    data: Object.assign(
      {
        type: `https://beatsync.dev/errors/${code.toLowerCase().replace(/_/g, "-")}`,
        title: code,
        status,
        detail: code,
        code,
        message: ZH[code] || code,
        retryable: false,
        request_id: "req",
        instance: "/api/v1",
      },
      extra || {},
    ),
  };
}

function json(status, data, header) {
  return {
    statusCode: status,
    header: Object.assign({ "Content-Type": "application/json" }, header || {}),
    data,
  };
}

function isArrayBuffer(value) {
  return Object.prototype.toString.call(value) === "[object ArrayBuffer]";
}

function headerOf(headers, name) {
  const key = Object.keys(headers || {}).find((k) => k.toLowerCase() === name.toLowerCase());
  return key ? headers[key] : undefined;
}

class FakeService {
  constructor(options) {
    this.base = (options && options.base) || "https://api.test";
    this.maxSize = (options && options.maxSize) || 500 * 1024 * 1024;
    this.tokens = new Map(); // token → owner
    this.uploads = new Map();
    this.jobs = new Map();
    this.sockets = [];
    this.log = [];
    this.faults = [];
    this.counter = 0;
    this.rejectNext = null; // {code} the next completed upload is refused with
    this.wechatCodes = null; // code → openid: WeChat login is offered (as code2Session would)
  }

  nextId(prefix) {
    this.counter += 1;
    return `${prefix}_${this.counter}`;
  }

  /** Make requests fail: fn(request) → undefined, {fail: errMsg}, or {partial: bytes}. */
  fault(fn) {
    this.faults.push(fn);
    return () => {
      this.faults = this.faults.filter((f) => f !== fn);
    };
  }

  owner(request) {
    const auth = headerOf(request.header, "Authorization") || "";
    const token = auth.replace(/^Bearer\s+/i, "");
    return this.tokens.get(token) || null;
  }

  uploadJson(row) {
    return {
      id: row.id,
      filename: row.filename,
      size: row.size,
      offset: row.bytes.length,
      sha256: row.status === "ready" ? row.sha256 : null,
      status: row.status,
      error: row.error,
      media:
        row.status === "ready"
          ? {
              duration_s: 14,
              has_video: true,
              has_audio: true,
              width: 320,
              height: 240,
              fps: 30,
              video_codec: "h264",
              audio_codec: "aac",
              rotation: 0,
            }
          : null,
      created_at: "2026-11-29T04:00:00Z",
      expires_at: "2026-11-30T04:00:00Z",
    };
  }

  settle(row) {
    row.sha256 = crypto.createHash("sha256").update(row.bytes).digest("hex");
    if (this.rejectNext) {
      row.status = "rejected";
      row.error = {
        code: this.rejectNext,
        message: ZH[this.rejectNext] || this.rejectNext,
        detail: null,
      };
      this.rejectNext = null;
    } else if (row.expectedSha && row.expectedSha !== row.sha256) {
      row.status = "rejected";
      row.error = { code: "VALIDATION_ERROR", message: "请求参数不正确。", detail: "sha256" };
    } else {
      row.status = "ready";
    }
  }

  /** Answer one wx.request: {statusCode, header, data}, or {fail: errMsg}. */
  handle(request) {
    this.log.push({ method: request.method, url: request.url, header: request.header });
    for (const fault of this.faults) {
      const outcome = fault(request);
      if (outcome) {
        if (outcome.partial != null && isArrayBuffer(request.data)) {
          // The first bytes of the body arrived before the connection dropped.
          this.route(Object.assign({}, request, { data: request.data.slice(0, outcome.partial) }));
          return { fail: outcome.fail || "request:fail socket hang up" };
        }
        return outcome;
      }
    }
    return this.route(request);
  }

  route(request) {
    const path = request.url.replace(this.base, "").split("?")[0];
    const method = String(request.method || "GET").toUpperCase();
    const override = String(headerOf(request.header, "X-HTTP-Method-Override") || "").toUpperCase();
    const effective = method === "POST" && override ? override : method;
    if (path === "/api/v1/sessions" && method === "POST") {
      const token = `tok_${this.tokens.size + 1}`;
      const owner = `own_${this.tokens.size + 1}`;
      this.tokens.set(token, owner);
      return json(201, { token, owner_id: owner, expires_at: "2026-12-08T04:00:00Z" });
    }
    if (path === "/api/v1/sessions/wechat" && method === "POST") {
      if (!this.wechatCodes) return problem(404, "WECHAT_NOT_CONFIGURED");
      const openid = this.wechatCodes.get(JSON.parse(request.data).code);
      if (!openid) return problem(401, "WECHAT_LOGIN_FAILED");
      this.wechatCodes.delete(JSON.parse(request.data).code);
      const token = `tok_${this.tokens.size + 1}`;
      this.tokens.set(token, `wx_${openid}`);
      return json(201, { token, owner_id: `wx_${openid}`, expires_at: "2026-12-08T04:00:00Z" });
    }
    if (path === "/api/v1/tus" && method === "OPTIONS") {
      return {
        statusCode: 204,
        header: { "Tus-Max-Size": String(this.maxSize), "Tus-Resumable": "1.0.0" },
        data: "",
      };
    }
    const owner = this.owner(request);
    if (!owner) return problem(401, "UNAUTHORIZED");
    if (path === "/api/v1/sessions/me") return json(200, { owner_id: owner });
    if (path === "/api/v1/tus" && method === "POST") return this.create(request, owner);
    let match = /^\/api\/v1\/tus\/([\w-]+)$/.exec(path);
    if (match) return this.tus(effective, match[1], request, owner);
    if (path === "/api/v1/uploads/instant" && method === "POST") {
      const body = JSON.parse(request.data);
      const row = Array.from(this.uploads.values()).find(
        (u) =>
          u.owner === owner &&
          u.status === "ready" &&
          u.sha256 === body.sha256 &&
          u.size === body.size,
      );
      return row ? json(200, this.uploadJson(row)) : problem(404, "NOT_FOUND");
    }
    match = /^\/api\/v1\/uploads\/([\w-]+)$/.exec(path);
    if (match) {
      const row = this.uploads.get(match[1]);
      return row && row.owner === owner
        ? json(200, this.uploadJson(row))
        : problem(404, "NOT_FOUND");
    }
    if (path === "/api/v1/jobs" && method === "POST")
      return this.createJob(JSON.parse(request.data), owner);
    if (path === "/api/v1/jobs" && method === "GET") {
      const items = Array.from(this.jobs.values())
        .filter((j) => j.owner === owner)
        .reverse();
      return json(200, { items: items.map((j) => this.jobJson(j)), next_cursor: null });
    }
    match = /^\/api\/v1\/jobs\/([\w-]+)(?:\/(cancel|retry|render|frames))?$/.exec(path);
    if (match) return this.jobAction(method, match[1], match[2], request, owner);
    return problem(404, "NOT_FOUND");
  }

  create(request, owner) {
    const length = Number(headerOf(request.header, "Upload-Length"));
    if (length > this.maxSize) return problem(413, "FILE_TOO_LARGE");
    const metadata = {};
    for (const pair of String(headerOf(request.header, "Upload-Metadata") || "").split(",")) {
      const [key, value] = pair.trim().split(" ");
      if (key) metadata[key] = Buffer.from(value || "", "base64").toString("utf8");
    }
    const row = {
      id: this.nextId("upl"),
      owner,
      filename: metadata.filename || "",
      size: length,
      bytes: Buffer.alloc(0),
      status: "receiving",
      error: null,
      sha256: null,
      expectedSha: metadata.sha256 || null,
    };
    this.uploads.set(row.id, row);
    return {
      statusCode: 201,
      header: { Location: `/api/v1/tus/${row.id}`, "Upload-Offset": "0", "Tus-Resumable": "1.0.0" },
      data: "",
    };
  }

  tus(method, id, request, owner) {
    const row = this.uploads.get(id);
    if (!row || row.owner !== owner) return problem(404, "NOT_FOUND");
    if (method === "HEAD") {
      return {
        statusCode: 200,
        header: {
          "Upload-Offset": String(row.bytes.length),
          "Upload-Length": String(row.size),
          "Tus-Resumable": "1.0.0",
        },
        data: "",
      };
    }
    if (method === "PATCH") {
      const claimed = Number(headerOf(request.header, "Upload-Offset"));
      if (claimed !== row.bytes.length) {
        return Object.assign(problem(409, "UPLOAD_CONFLICT", { offset: row.bytes.length }), {
          header: { "Upload-Offset": String(row.bytes.length), "Tus-Resumable": "1.0.0" },
        });
      }
      const body = Buffer.from(request.data);
      if (row.bytes.length + body.length > row.size) return problem(413, "FILE_TOO_LARGE");
      row.bytes = Buffer.concat([row.bytes, body]);
      if (row.bytes.length === row.size) this.settle(row);
      return {
        statusCode: 204,
        header: { "Upload-Offset": String(row.bytes.length), "Tus-Resumable": "1.0.0" },
        data: "",
      };
    }
    return problem(405, "METHOD_NOT_ALLOWED");
  }

  createJob(body, owner) {
    const job = this.newJob(body, owner);
    return json(202, this.jobJson(job), { Location: `/api/v1/jobs/${job.id}` });
  }

  newJob(body, owner) {
    const job = {
      id: this.nextId("job"),
      owner,
      status: "queued",
      stage: null,
      progress: 0,
      error: null,
      result: null,
      attempts: 0,
      parent_id: null,
      dance_upload_id: body.dance_upload_id,
      bgm_upload_id: body.bgm_upload_id,
      manifest: body.video_manifest || null,
      thumbnails: body.thumbnails || null,
      frames_request: null,
      frames: [],
      options: Object.assign(
        {
          offset_s: null,
          nudge_ms: 0,
          mapping: null,
          trim: true,
          reencode: false,
          max_height: null,
        },
        body.options || {},
      ),
    };
    this.jobs.set(job.id, job);
    return job;
  }

  jobAction(method, id, action, request, owner) {
    const job = this.jobs.get(id);
    if (!job || job.owner !== owner) return problem(404, "NOT_FOUND");
    if (!action && method === "GET") return json(200, this.jobJson(job));
    if (!action && method === "DELETE") {
      this.jobs.delete(id);
      return { statusCode: 204, header: {}, data: "" };
    }
    if (action === "cancel") {
      job.status = "canceled";
      return json(200, this.jobJson(job));
    }
    if (action === "frames" && method === "POST") {
      const body = JSON.parse(request.data || "{}");
      if (!job.frames_request || body.request_id !== job.frames_request.id)
        return problem(409, "FRAMES_NOT_REQUESTED");
      const bytes = Buffer.from(body.thumbnails || "", "base64");
      if (bytes.length !== job.frames_request.samples.length * 96 * 54)
        return problem(422, "INVALID_MANIFEST");
      job.frames.push({ samples: job.frames_request.samples, bytes });
      job.frames_request = null;
      return json(200, this.jobJson(job));
    }
    if (action === "retry") {
      Object.assign(job, { status: "queued", stage: null, progress: 0, error: null });
      return json(202, this.jobJson(job));
    }
    if (action === "render") {
      const body = JSON.parse(request.data || "{}");
      const nudge = body.nudge_ms != null ? body.nudge_ms : job.options.nudge_ms;
      const options = Object.assign({}, job.options, { nudge_ms: nudge });
      if (body.trim != null) options.trim = body.trim;
      const created = this.newJob(
        {
          dance_upload_id: job.dance_upload_id,
          bgm_upload_id: job.bgm_upload_id,
          video_manifest: job.manifest,
          options,
        },
        owner,
      );
      created.parent_id = job.id;
      const mapping =
        body.candidate != null ? job.result.candidates[body.candidate] : job.result.mapping;
      created.options.mapping = { offset_s: mapping.offset_s, scale: mapping.scale };
      created.render = body;
      return json(202, this.jobJson(created), { Location: `/api/v1/jobs/${created.id}` });
    }
    return problem(405, "METHOD_NOT_ALLOWED");
  }

  jobJson(job) {
    const links = {
      self: `/api/v1/jobs/${job.id}`,
      events: `/api/v1/jobs/${job.id}/events`,
      ws: `/api/v1/jobs/${job.id}/ws`,
    };
    if (job.manifest) links.frames = `/api/v1/jobs/${job.id}/frames`;
    return JSON.parse(
      JSON.stringify({
        id: job.id,
        status: job.status,
        stage: job.stage,
        progress: job.progress,
        message: null,
        error: job.error,
        dance_upload_id: job.dance_upload_id,
        bgm_upload_id: job.bgm_upload_id,
        parent_id: job.parent_id,
        options: job.options,
        attempts: job.attempts,
        created_at: "2026-11-29T04:34:32Z",
        started_at: null,
        finished_at: null,
        result: job.result,
        audio_first: Boolean(job.manifest),
        frames_request: job.frames_request,
        links,
      }),
    );
  }

  /** Move a job on (status, stage, progress, result, error) and tell its open sockets. */
  advance(id, changes) {
    const job = this.jobs.get(id);
    Object.assign(job, changes);
    const payload = JSON.stringify(this.jobJson(job));
    for (const socket of this.sockets) {
      if (socket.jobId === id && socket.isOpen) socket.serverSend(payload);
    }
    return this.jobJson(job);
  }
}

/** A finished job's result as the service shapes it. */
function sampleResult(jobId, overrides) {
  return Object.assign(
    {
      confidence: 0.7298,
      mapping: { offset_s: 3.000034, scale: 0.9999995723, drift_ppm: -0.4 },
      candidates: [
        {
          index: 0,
          offset_s: 6.840005,
          scale: 0.9999998178,
          drift_ppm: -0.2,
          confidence: 0.2071,
          support: 0.58,
        },
      ],
      cut: { start_s: 2.064, end_s: 13.04, duration_s: 10.976 },
      output: { duration_s: 11.072, size_bytes: 1105534, width: 320, height: 240 },
      files: {
        video: `/api/v1/files/${jobId}/output.mp4?exp=1&sig=v`,
        report: `/api/v1/files/${jobId}/report.json?exp=1&sig=r`,
        plot: `/api/v1/files/${jobId}/plot.png?exp=1&sig=p`,
        poster: `/api/v1/files/${jobId}/poster.jpg?exp=1&sig=q`,
      },
    },
    overrides || {},
  );
}

module.exports = { FakeService, sampleResult };
