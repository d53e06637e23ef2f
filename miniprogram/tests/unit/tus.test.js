/**
 * @jest-environment node
 */
// The tus client against the fake service: chunks as overridden POSTs, and every way a phone
// network fails — a chunk cut off halfway, a request over the 60-second cap, an offset the
// server disagrees with, an upload the server forgot, a refusal that retrying cannot fix.

const crypto = require("crypto");
const { createFakeWx } = require("../support/fake-wx.js");
const api = require("../../utils/api.js");
const { TusUpload, resolveUrl } = require("../../utils/tus.js");

const KB = 1024;
let fake;

function seeded(size, seed) {
  return crypto
    .createHash("sha256")
    .update(String(seed))
    .digest()
    .toString("hex")
    .repeat(Math.ceil(size / 64))
    .slice(0, size);
}

function addFile(size, seed) {
  const data = Buffer.from(seeded(size, seed));
  const path = `wxfile://tmp/file-${seed}.mp4`;
  fake.addFile(path, data);
  return { path, data, file: { path, size, name: "课堂视频.mp4", type: "video", sha256: null } };
}

function uploader(file, options) {
  return new TusUpload(
    file,
    Object.assign(
      {
        endpoint: `${fake.service.base}/api/v1/tus`,
        headers: () => api.headers(),
        chunkBytes: 256 * KB,
        minChunkBytes: 64 * KB,
        maxChunkBytes: 256 * KB,
        retryDelays: [1, 1, 1, 1],
      },
      options,
    ),
  );
}

function patches() {
  return fake.called("request").filter((r) => r.header["X-HTTP-Method-Override"] === "PATCH");
}

function serverUpload() {
  return Array.from(fake.service.uploads.values()).pop();
}

beforeEach(async () => {
  fake = createFakeWx();
  global.wx = fake.wx;
  api.setBase(fake.service.base);
  await api.ensureSession();
});

test("a file goes up in chunks; progress reaches the end", async () => {
  const { file, data } = addFile(600 * KB, 1);
  const progress = [];
  const tus = uploader(file, { onProgress: (sent, total) => progress.push([sent, total]) });
  const url = await tus.start();
  expect(url).toBe(`${fake.service.base}/api/v1/tus/${serverUpload().id}`);
  expect(Buffer.compare(serverUpload().bytes, data)).toBe(0);
  expect(patches().map((p) => [Number(p.header["Upload-Offset"]), p.data.byteLength])).toEqual([
    [0, 256 * KB],
    [256 * KB, 256 * KB],
    [512 * KB, 88 * KB],
  ]);
  expect(progress).toEqual([
    [0, 600 * KB],
    [256 * KB, 600 * KB],
    [512 * KB, 600 * KB],
    [600 * KB, 600 * KB],
  ]);
  const create = fake
    .called("request")
    .find((r) => r.method === "POST" && r.url.endsWith("/api/v1/tus"));
  expect(create.header["Upload-Length"]).toBe(String(600 * KB));
  expect(create.header["Upload-Metadata"]).toBe(
    `filename ${Buffer.from("课堂视频.mp4").toString("base64")},filetype ${Buffer.from("video").toString("base64")}`,
  );
});

test("a chunk cut off halfway: HEAD finds what the server kept and the upload goes on from there", async () => {
  const { file, data } = addFile(600 * KB, 2);
  let cut = false;
  fake.service.fault((request) => {
    if (!cut && request.header["Upload-Offset"] === String(256 * KB)) {
      cut = true;
      return { partial: 100 * KB, fail: "request:fail socket hang up" };
    }
    return undefined;
  });
  const retries = [];
  const tus = uploader(file, {
    onRetry: (delay, attempt, error) => retries.push([attempt, error.code]),
  });
  await tus.start();
  expect(retries).toEqual([[1, "NETWORK"]]);
  expect(tus.stats.heads).toBe(1);
  expect(tus.stats.resumedAt).toEqual([356 * KB]);
  expect(patches().map((p) => Number(p.header["Upload-Offset"]))).toEqual([0, 256 * KB, 356 * KB]);
  expect(Buffer.compare(serverUpload().bytes, data)).toBe(0);
});

test("a request over the 60-second cap halves the next chunk; a fast one grows it again", async () => {
  const { file, data } = addFile(300 * KB, 3);
  let timeouts = 0;
  fake.service.fault((request) =>
    request.header["X-HTTP-Method-Override"] === "PATCH" && timeouts++ === 0
      ? { fail: "request:fail timeout" }
      : undefined,
  );
  const tus = uploader(file);
  await tus.start();
  expect(tus.stats.timeouts).toBe(1);
  expect(patches().map((p) => p.data.byteLength)).toEqual([256 * KB, 128 * KB, 172 * KB]);
  expect(patches()[0].timeout).toBe(60000);
  expect(Buffer.compare(serverUpload().bytes, data)).toBe(0);
});

test("an offset the server disagrees with (409) is taken from its answer", async () => {
  const { file, data } = addFile(300 * KB, 4);
  let lost = false;
  fake.service.fault((request) => {
    const method = request.header["X-HTTP-Method-Override"] || request.method;
    if (method === "PATCH" && request.header["Upload-Offset"] === "0" && !lost) {
      // The chunk arrives, but its answer is lost on the way back.
      lost = true;
      fake.service.route(request);
      return { fail: "request:fail interrupted" };
    }
    if (method === "HEAD") {
      // The server had not yet recorded that chunk when the HEAD came.
      return {
        statusCode: 200,
        header: { "Upload-Offset": "0", "Upload-Length": String(300 * KB) },
        data: "",
      };
    }
    return undefined;
  });
  const tus = uploader(file);
  await tus.start();
  expect(patches().map((p) => Number(p.header["Upload-Offset"]))).toEqual([0, 0, 256 * KB]);
  expect(tus.stats.heads).toBe(1);
  expect(Buffer.compare(serverUpload().bytes, data)).toBe(0);
});

test("an upload the server no longer has (404) begins again", async () => {
  const { file, data } = addFile(300 * KB, 5);
  let forgotten = false;
  fake.service.fault((request) => {
    if (!forgotten && request.header["Upload-Offset"] === String(256 * KB)) {
      forgotten = true;
      fake.service.uploads.clear();
    }
    return undefined;
  });
  const tus = uploader(file);
  await tus.start();
  const creates = fake
    .called("request")
    .filter((r) => r.method === "POST" && r.url.endsWith("/api/v1/tus"));
  expect(creates.length).toBe(2);
  expect(fake.service.uploads.size).toBe(1);
  expect(Buffer.compare(serverUpload().bytes, data)).toBe(0);
});

test("a refusal retrying cannot fix (413) ends the upload with its code", async () => {
  const { file } = addFile(100 * KB, 6);
  fake.service.maxSize = 50 * KB;
  const tus = uploader(file);
  await expect(tus.start()).rejects.toMatchObject({ status: 413, code: "FILE_TOO_LARGE" });
  expect(patches()).toEqual([]);
});

test("the network gone for good: the last error comes back after the retries", async () => {
  const { file } = addFile(100 * KB, 7);
  fake.service.fault(() => ({ fail: "request:fail net::ERR_INTERNET_DISCONNECTED" }));
  const tus = uploader(file);
  await expect(tus.start()).rejects.toMatchObject({ status: 0, code: "NETWORK" });
  const tries = fake.called("request").filter((r) => r.url.endsWith("/api/v1/tus"));
  expect(tries.length).toBe(5); // the first try and four retries
});

test("the same file chosen again after the app was closed resumes from the remembered URL", async () => {
  const { file, data } = addFile(600 * KB, 8);
  const key = "owner|dance|614400|";
  const first = uploader(file, { fingerprint: key });
  fake.service.fault((request) => {
    if (request.header["Upload-Offset"] === String(256 * KB)) first.pause(); // the app is closed
    return undefined;
  });
  await expect(first.start()).rejects.toMatchObject({ code: "PAUSED" });
  fake.service.faults = [];
  expect(fake.storage.get(`beatsync.tus.${key}`).url).toBe(first.url);

  const resumed = [];
  const second = uploader(file, { fingerprint: key, onResume: (offset) => resumed.push(offset) });
  const url = await second.start();
  expect(url).toBe(first.url);
  expect(resumed).toEqual([512 * KB]); // the chunk in flight when it closed had arrived
  expect(fake.service.uploads.size).toBe(1);
  expect(Buffer.compare(serverUpload().bytes, data)).toBe(0);
  expect(fake.storage.has(`beatsync.tus.${key}`)).toBe(false); // done: nothing left to resume
});

test("a Location is made absolute on the endpoint's origin", () => {
  expect(resolveUrl("https://a.example:8443/api/v1/tus", "/api/v1/tus/upl_1")).toBe(
    "https://a.example:8443/api/v1/tus/upl_1",
  );
  expect(resolveUrl("https://a.example/api/v1/tus", "https://b.example/x")).toBe(
    "https://b.example/x",
  );
});
