// What the service accepts, checked on the phone before a byte is sent: a 600 MB video or an
// hour-long one is refused at once, in words, instead of after minutes of uploading.

const config = require("../config.js");
const api = require("./api.js");
const { localError } = require("./errors.js");
const { formatBytes, formatDuration } = require("./format.js");
const { request } = require("./http.js");
const { headerValue } = require("./wxp.js");

const VIDEO_EXTENSIONS = ["mp4", "mov", "m4v", "mkv", "webm", "3gp", "avi", "ts", "mts", "flv"];
const AUDIO_EXTENSIONS = ["m4a", "mp3", "aac", "wav", "flac", "ogg", "opus", "wma", "amr"];

let serverLimits = null;

/** The limits in force: the size from the server's tus discovery (once), the rest from config. */
async function currentLimits() {
  if (serverLimits) return serverLimits;
  const limits = { maxUploadBytes: config.maxUploadBytes, maxDurationS: config.maxDurationS };
  try {
    const response = await request({ url: api.absolute(`${api.PREFIX}/tus`), method: "OPTIONS" });
    const max = Number(headerValue(response.header, "Tus-Max-Size"));
    if (response.statusCode < 300 && Number.isFinite(max) && max > 0) {
      limits.maxUploadBytes = max;
      serverLimits = limits;
    }
  } catch (error) {
    // Offline now: check against the defaults; the server checks again anyway.
  }
  return limits;
}

function forgetLimits() {
  serverLimits = null;
}

function extension(name) {
  const match = /\.([A-Za-z0-9]+)$/.exec(name || "");
  return match ? match[1].toLowerCase() : "";
}

/** "video", "audio" or null (unknown) from what the picker said and the file name. */
function mediaKind(file) {
  if (file.type === "video" || file.type === "audio") return file.type;
  const ext = extension(file.name || file.path);
  if (VIDEO_EXTENSIONS.indexOf(ext) >= 0) return "video";
  if (AUDIO_EXTENSIONS.indexOf(ext) >= 0) return "audio";
  return null;
}

/**
 * Why `file` cannot be sent as `kind` ("dance" or "bgm"), as an ApiError; null when it can.
 * @param {object} file size, duration (s, or null), name, type
 */
function checkFile(file, kind, limits) {
  const media = mediaKind(file);
  if (!media) return localError("UNSUPPORTED_FILE", {});
  if (kind === "dance" && media !== "video") return localError("NEEDS_VIDEO", {});
  if (!file.size) return localError("FILE_EMPTY", {});
  if (file.size > limits.maxUploadBytes) {
    return localError("LOCAL_TOO_LARGE", {
      size: formatBytes(file.size),
      max: formatBytes(limits.maxUploadBytes),
    });
  }
  if (file.duration != null && file.duration > limits.maxDurationS) {
    return localError("LOCAL_TOO_LONG", {
      duration: formatDuration(file.duration),
      max: formatDuration(limits.maxDurationS),
    });
  }
  return null;
}

module.exports = {
  AUDIO_EXTENSIONS,
  VIDEO_EXTENSIONS,
  checkFile,
  currentLimits,
  extension,
  forgetLimits,
  mediaKind,
};
