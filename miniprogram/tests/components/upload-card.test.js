const { load, mount, tap, text } = require("../support/simulate.js");

const id = load("components/upload-card/upload-card");

function view(overrides) {
  return Object.assign(
    {
      kind: "dance",
      title: "课堂视频",
      hint: "课堂上用手机拍的视频，现场声音差也没关系。",
      state: "empty",
      hasFile: false,
      name: "",
      sizeText: "",
      durationText: "",
      percent: 0,
      speedText: "",
      statusText: "",
      error: null,
      busy: false,
      ready: false,
      canRetry: false,
    },
    overrides,
  );
}

test("an empty card shows its title and hint and offers both pickers", () => {
  const card = mount(id, { view: view() });
  expect(text(card, ".title")).toBe("课堂视频");
  expect(text(card, ".hint")).toBe("课堂上用手机拍的视频，现场声音差也没关系。");
  expect(card.querySelector(".file")).toBeUndefined();
  expect(card.querySelector(".progress")).toBeUndefined();
  expect(text(card, ".pick-album")).toBe("从相册选择");
  expect(text(card, ".pick-chat")).toBe("从聊天文件选择");
});

test("an uploading file shows its name, size, duration, progress and speed", () => {
  const card = mount(id, {
    view: view({
      state: "uploading",
      hasFile: true,
      name: "课堂视频.mp4",
      sizeText: "1.2 MB",
      durationText: "14 秒",
      percent: 40,
      statusText: "已上传 40% · 512 KB/秒",
      busy: true,
    }),
  });
  expect(text(card, ".name")).toBe("课堂视频.mp4");
  expect(text(card, ".size")).toBe("1.2 MB");
  expect(text(card, ".duration")).toBe("14 秒");
  expect(text(card, ".percent")).toBe("40%");
  expect(text(card, ".status")).toBe("已上传 40% · 512 KB/秒");
  expect(card.querySelector(".hint")).toBeUndefined();
  expect(text(card, ".pick-album")).toBe("换一个（相册）");
});

test("a refused file shows the reason in words and its code, and no progress", () => {
  const card = mount(id, {
    view: view({
      state: "invalid",
      hasFile: true,
      name: "long.mp4",
      error: {
        code: "LOCAL_TOO_LONG",
        message: "视频太长（12 分 00 秒），最长 10 分 00 秒，请剪短后再试。",
      },
    }),
  });
  expect(text(card, ".error-message")).toBe(
    "视频太长（12 分 00 秒），最长 10 分 00 秒，请剪短后再试。",
  );
  expect(text(card, ".error-code")).toBe("错误代码：LOCAL_TOO_LONG");
  expect(card.querySelector(".progress")).toBeUndefined();
});

test("taps tell the page which picker was chosen, and retry", async () => {
  const card = mount(id, { view: view({ state: "failed", hasFile: true, canRetry: true }) });
  const events = [];
  card.addEventListener("pick", (event) => events.push(["pick", event.detail.source]));
  card.addEventListener("retry", () => events.push(["retry"]));
  await tap(card, ".pick-album");
  await tap(card, ".pick-chat");
  await tap(card, ".retry");
  expect(events).toEqual([["pick", "album"], ["pick", "chat"], ["retry"]]);
});
