// Choosing a file: a video from the album (wx.chooseMedia) or a file sent in a chat
// (wx.chooseMessageFile), told apart only by where it came from. Both give one shape:
// {path, size, name, type, duration, width, height}; a picker the user closed gives null.

const { AUDIO_EXTENSIONS, VIDEO_EXTENSIONS, extension } = require("./limits.js");
const { localError } = require("./errors.js");
const { call, has, isCancel } = require("./wxp.js");

const NAMES = { dance: "课堂视频", bgm: "参考音乐" };

function baseName(path) {
  const parts = String(path || "").split(/[\\/]/);
  return parts[parts.length - 1] || "";
}

/** The length of a video file in seconds, where this WeChat can read it; else null. */
async function videoDuration(path) {
  if (!has("getVideoInfo")) return null;
  try {
    const info = await call("getVideoInfo", { src: path });
    const seconds = Number(info.duration);
    return Number.isFinite(seconds) && seconds > 0 ? seconds : null;
  } catch (error) {
    return null;
  }
}

async function fromAlbum(kind) {
  const result = await call("chooseMedia", {
    count: 1,
    mediaType: ["video"],
    sourceType: ["album"],
  });
  const chosen = result.tempFiles[0];
  const ext = extension(chosen.tempFilePath) || "mp4";
  return {
    path: chosen.tempFilePath,
    size: chosen.size,
    name: `${NAMES[kind]}.${ext}`,
    type: "video",
    duration: Number.isFinite(chosen.duration) && chosen.duration > 0 ? chosen.duration : null,
    width: chosen.width || null,
    height: chosen.height || null,
    thumb: chosen.thumbTempFilePath || null,
  };
}

async function fromChat(kind) {
  // The class video must be a video; the reference may be a video or an audio file.
  const options =
    kind === "dance"
      ? { count: 1, type: "video" }
      : { count: 1, type: "file", extension: VIDEO_EXTENSIONS.concat(AUDIO_EXTENSIONS) };
  const result = await call("chooseMessageFile", options);
  const chosen = result.tempFiles[0];
  const name = chosen.name || baseName(chosen.path);
  const ext = extension(name);
  let type = chosen.type === "video" ? "video" : null;
  if (!type && VIDEO_EXTENSIONS.indexOf(ext) >= 0) type = "video";
  if (!type && AUDIO_EXTENSIONS.indexOf(ext) >= 0) type = "audio";
  const file = {
    path: chosen.path,
    size: chosen.size,
    name,
    type,
    duration: null,
    width: null,
    height: null,
    thumb: null,
  };
  if (type === "video") file.duration = await videoDuration(chosen.path);
  return file;
}

/** A file for `kind` ("dance" | "bgm") from `source` ("album" | "chat"), or null if canceled. */
async function pickFile(kind, source) {
  try {
    return source === "chat" ? await fromChat(kind) : await fromAlbum(kind);
  } catch (error) {
    if (isCancel(error)) return null;
    throw localError("CHOOSE_FAILED", { reason: error && error.errMsg });
  }
}

module.exports = { NAMES, baseName, pickFile };
