// The app shell on a phone: dark mode through theme.json (every "@" value of app.json defined
// in both themes), tab bar icons that exist as 81×81 PNGs, safe-area padding, the update
// manager, the network's return waking uploads, and a share card on every main page.

const fs = require("fs");
const path = require("path");
const { createFakeWx } = require("../support/fake-wx.js");

const ROOT = path.resolve(__dirname, "../..");
const app = JSON.parse(fs.readFileSync(path.join(ROOT, "app.json"), "utf8"));

test("dark mode: every themed value of app.json is defined for light and dark", () => {
  expect(app.darkmode).toBe(true);
  const theme = JSON.parse(fs.readFileSync(path.join(ROOT, app.themeLocation), "utf8"));
  const used = JSON.stringify(app).match(/"@(\w+)"/g).map((v) => v.slice(2, -1));
  expect(used.length).toBeGreaterThan(5);
  for (const name of used) {
    expect(theme.light[name]).toBeTruthy();
    expect(theme.dark[name]).toBeTruthy();
  }
  const wxss = fs.readFileSync(path.join(ROOT, "app.wxss"), "utf8");
  expect(wxss).toMatch(/@media \(prefers-color-scheme: dark\)/);
  expect(wxss).toMatch(/env\(safe-area-inset-bottom\)/);
});

test("the tab bar has an icon and a selected icon per tab, 81×81 PNGs", () => {
  for (const tab of app.tabBar.list) {
    for (const key of ["iconPath", "selectedIconPath"]) {
      const bytes = fs.readFileSync(path.join(ROOT, tab[key]));
      expect(bytes.subarray(1, 4).toString()).toBe("PNG");
      expect([bytes.readUInt32BE(16), bytes.readUInt32BE(20)]).toEqual([81, 81]);
      expect(bytes.length).toBeLessThan(40 * 1024); // WeChat's cap on a tab icon
    }
  }
});

/** Start the app shell afresh; its own background module is returned with it. */
function launch() {
  let options = null;
  let background = null;
  global.App = (o) => {
    options = o;
  };
  jest.isolateModules(() => {
    require("../../app.js");
    background = require("../../utils/background.js");
  });
  options.onLaunch();
  return background;
}

test("the update manager restarts into a new version when the user agrees", () => {
  const fake = createFakeWx();
  global.wx = fake.wx;
  const handlers = {};
  let applied = 0;
  fake.wx.getUpdateManager = () => ({
    onUpdateReady: (fn) => (handlers.ready = fn),
    onUpdateFailed: (fn) => (handlers.failed = fn),
    applyUpdate: () => (applied += 1),
  });
  fake.wx.showModal = (o) => o.success({ confirm: true });
  launch();
  handlers.ready();
  expect(applied).toBe(1);
});

test("the network coming back wakes an upload waiting to retry", () => {
  const fake = createFakeWx();
  global.wx = fake.wx;
  const background = launch();
  const heard = [];
  const stop = background.subscribe((event) => heard.push(event));
  fake.setNetwork(false);
  fake.setNetwork(true);
  stop();
  expect(heard).toEqual(["online"]);
});

test("every main page has a share card", () => {
  const { appShare } = require("../../utils/share.js");
  for (const page of ["pages/index/index.js", "pages/job/job.js", "pages/history/history.js"]) {
    expect(fs.readFileSync(path.join(ROOT, page), "utf8")).toMatch(/onShareAppMessage\(\) \{/);
  }
  expect(appShare()).toEqual({ title: "舞蹈课视频配上干净的音乐，对得很准", path: "/pages/index/index" });
});

test("at launch the scratch files a crashed run left are deleted, and only those", async () => {
  const fake = createFakeWx();
  global.wx = fake.wx;
  const { USER_DATA_PATH } = require("../support/wx-rules.js");
  fake.addFile(`${USER_DATA_PATH}/beatsync/1700000000000-class.m4a`, Buffer.alloc(3000, 1));
  fake.addFile(`${USER_DATA_PATH}/beatsync/job_abc.mp4`, Buffer.alloc(5000, 2));
  fake.addFile(`${USER_DATA_PATH}/notes.txt`, Buffer.alloc(10, 3));
  fake.addFile("wxfile://tmp/chosen.mp4", Buffer.alloc(100, 4));
  expect(fake.userBytes()).toBe(8010);
  launch();
  for (let i = 0; i < 20 && fake.userBytes() > 10; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  expect(fake.userBytes()).toBe(10);
  expect(fake.files.has(`${USER_DATA_PATH}/notes.txt`)).toBe(true);
  expect(fake.files.has("wxfile://tmp/chosen.mp4")).toBe(true);
});

test("a launch with no scratch folder cleans nothing and fails nothing", async () => {
  const fake = createFakeWx();
  global.wx = fake.wx;
  const audiofirst = require("../../utils/audiofirst.js");
  await expect(audiofirst.cleanScratch()).resolves.toBe(0);
});
