/**
 * @jest-environment node
 */
// The network coming back (wx.onNetworkStatusChange, wired by the app shell) carries an upload
// on: one waiting to retry goes now instead of after its wait, and one that gave up for want of
// a network sends again from the server's offset. Other failures are left to the user.

const { createFakeWx } = require("../support/fake-wx.js");

const KB = 1024;
let fake;
let modules;

/** The app shell launched afresh, with the modules it shares with the upload slot. */
function launch() {
  let options = null;
  global.App = (o) => {
    options = o;
  };
  jest.isolateModules(() => {
    require("../../app.js");
    modules = {
      api: require("../../utils/api.js"),
      UploadSlot: require("../../utils/slot.js").UploadSlot,
    };
  });
  modules.api.setBase(fake.service.base);
  options.onLaunch();
}

beforeEach(() => {
  fake = createFakeWx();
  global.wx = fake.wx;
  launch();
});

async function waitFor(check, what) {
  for (let i = 0; i < 2000; i += 1) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  throw new Error(`never happened: ${what}`);
}

function reference(size) {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i += 1) data[i] = (i * 31 + 7) % 251;
  fake.addFile("wxfile://tmp/ref.m4a", data);
  return { data, file: { path: "wxfile://tmp/ref.m4a", size, name: "ref.m4a", type: "audio" } };
}

function slot(retryDelays) {
  return new modules.UploadSlot("bgm", {
    chunkBytes: 128 * KB,
    maxChunkBytes: 128 * KB,
    minChunkBytes: 64 * KB,
    hashLimitBytes: 1,
    retryDelays,
  });
}

const patches = () =>
  fake.service.log.filter((r) => r.method === "POST" && r.header["Upload-Offset"] != null);

test("an upload waiting to retry goes on as soon as the network is back", async () => {
  const { data, file } = reference(300 * KB);
  let down = false;
  fake.service.fault((request) => {
    if (!down && request.header["Upload-Offset"] === String(128 * KB)) {
      down = true;
      return { fail: "request:fail net::ERR_INTERNET_DISCONNECTED" };
    }
    return undefined;
  });
  // A wait far longer than the test: only the network's return can end it.
  const upload = slot([10 * 60 * 1000]);
  const sending = upload.use(file);
  await waitFor(() => upload.state === "retrying", "the upload waits to retry");
  const before = patches().length;
  await new Promise((resolve) => setTimeout(resolve, 20));
  expect(patches().length).toBe(before);

  fake.setNetwork(false);
  expect(upload.state).toBe("retrying");
  fake.setNetwork(true);
  await sending;
  expect(upload.state).toBe("ready");
  const upload0 = Array.from(fake.service.uploads.values())[0];
  expect(Buffer.compare(upload0.bytes, data)).toBe(0);
  upload.destroy();
});

test("an upload that gave up for want of a network sends again when it is back", async () => {
  const { data, file } = reference(200 * KB);
  const offline = fake.service.fault((request) =>
    request.header["Upload-Offset"] === String(128 * KB)
      ? { fail: "request:fail net::ERR_INTERNET_DISCONNECTED" }
      : undefined,
  );
  const upload = slot([]);
  await upload.use(file);
  expect(upload.state).toBe("failed");
  expect(upload.error.code).toBe("NETWORK");

  offline();
  fake.setNetwork(true);
  await waitFor(() => upload.state === "ready", "the upload is sent again");
  const offsets = patches().map((r) => Number(r.header["Upload-Offset"]));
  expect(offsets[0]).toBe(0);
  expect(offsets[offsets.length - 1]).toBe(128 * KB);
  const upload0 = Array.from(fake.service.uploads.values())[0];
  expect(Buffer.compare(upload0.bytes, data)).toBe(0);
  upload.destroy();
});

test("a failure that is not the network's stays for the user when the network returns", async () => {
  const { file } = reference(200 * KB);
  const slow = fake.service.fault((request) =>
    request.header["Upload-Offset"] === String(128 * KB) ? { fail: "request:fail timeout" } : undefined,
  );
  const upload = slot([]);
  await upload.use(file);
  expect(upload.error.code).toBe("REQUEST_TIMEOUT");
  slow();
  const before = fake.service.log.length;
  fake.setNetwork(true);
  await new Promise((resolve) => setTimeout(resolve, 20));
  expect(upload.state).toBe("failed");
  expect(fake.service.log.length).toBe(before);
  upload.destroy();
});
