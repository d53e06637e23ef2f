// The fake service's answers to the calls the mini-program makes, printed as JSON, so that
// tests/e2e/test_miniprogram.py can check each against the service's OpenAPI document and the
// double cannot drift from the real thing.
//   node tests/support/fake-answers.js > answers.json

const { FakeService, sampleResult } = require("./fake-service.js");

const service = new FakeService();
service.wechatCodes = new Map([["code-1", "oUSER12345678"]]);
const answers = [];

function call(method, path, options) {
  const opts = options || {};
  const header = Object.assign({}, opts.header || {});
  if (opts.token) header.Authorization = `Bearer ${opts.token}`;
  const data =
    opts.json !== undefined ? JSON.stringify(opts.json) : opts.bytes ? opts.bytes : undefined;
  const outcome = service.handle({ method, url: service.base + path, header, data });
  let body = outcome.data;
  if (typeof body === "string" && body) {
    try {
      body = JSON.parse(body);
    } catch (error) {
      // Not JSON: kept as text.
    }
  }
  answers.push({ method: header["X-HTTP-Method-Override"] || method, path, status: outcome.statusCode, header: outcome.header || {}, body: body === "" ? null : body });
  return body;
}

const session = call("POST", "/api/v1/sessions");
const token = session.token;
call("POST", "/api/v1/sessions/wechat", { json: { code: "code-1" } });
call("POST", "/api/v1/sessions/wechat", { json: { code: "used" } });
call("GET", "/api/v1/sessions/me", { token });
call("GET", "/api/v1/sessions/me");
call("OPTIONS", "/api/v1/tus");
const tusHeader = { "Tus-Resumable": "1.0.0", "Upload-Length": "8", "Upload-Metadata": "filename YS5tNGE=" };
call("POST", "/api/v1/tus", { token, header: tusHeader });
const uploadId = Array.from(service.uploads.keys())[0];
call("HEAD", `/api/v1/tus/${uploadId}`, { token, header: { "Tus-Resumable": "1.0.0" } });
const patch = {
  "Tus-Resumable": "1.0.0",
  "Upload-Offset": "0",
  "Content-Type": "application/offset+octet-stream",
  "X-HTTP-Method-Override": "PATCH",
};
call("POST", `/api/v1/tus/${uploadId}`, { token, header: patch, bytes: new TextEncoder().encode("12345678").buffer });
call("GET", `/api/v1/uploads/${uploadId}`, { token });
call("POST", "/api/v1/uploads/instant", { token, json: { sha256: "0".repeat(64), size: 8, filename: "a.m4a" } });
const manifest = { version: 1, video: { sample_count: 3 } };
const job = call("POST", "/api/v1/jobs", {
  token,
  json: { dance_upload_id: uploadId, bgm_upload_id: uploadId, options: {}, video_manifest: manifest },
});
service.jobs.get(job.id).frames_request = { id: "r1", samples: [1] };
call("GET", `/api/v1/jobs/${job.id}`, { token });
call("POST", `/api/v1/jobs/${job.id}/frames`, {
  token,
  json: { request_id: "r1", thumbnails: Buffer.alloc(96 * 54).toString("base64") },
});
call("POST", `/api/v1/jobs/${job.id}/frames`, { token, json: { request_id: "r1", thumbnails: "" } });
service.advance(job.id, {
  status: "succeeded",
  stage: "done",
  progress: 1,
  result: sampleResult(job.id, {
    assembly: {
      audio_url: `/api/v1/files/${job.id}/audio.m4a?exp=1&sig=a`,
      first_sample: 0,
      end_sample: 3,
      excluded_samples: [],
      video_start: 0,
      video_end: 0.1,
      first_frame_time: 0,
      audio: { codec: "aac", sample_rate: 48000, channels: 2, duration: 0.1 },
    },
  }),
});
call("GET", `/api/v1/jobs/${job.id}`, { token });
call("GET", "/api/v1/jobs?limit=20", { token });
call("POST", `/api/v1/jobs/${job.id}/render`, { token, json: { nudge_ms: 5 } });
const server = call("POST", "/api/v1/jobs", {
  token,
  json: { dance_upload_id: uploadId, bgm_upload_id: uploadId, options: { reencode: true, max_height: 720 } },
});
call("POST", `/api/v1/jobs/${server.id}/cancel`, { token });
call("POST", `/api/v1/jobs/${server.id}/retry`, { token });
call("DELETE", `/api/v1/jobs/${server.id}`, { token });
call("GET", "/api/v1/jobs/job_none", { token });

process.stdout.write(JSON.stringify(answers, null, 1));
