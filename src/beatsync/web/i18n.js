// The page's words in zh-CN and en, and the number, size and time formats of each language.
// Static text lives in the markup as data-i18n keys; dynamic text calls t() when it is drawn.

const STORAGE_KEY = "beatsync.lang";
export const LANGS = ["zh-CN", "en"];

const MESSAGES = {
  "zh-CN": {
    "skip": "跳到正文",
    "tagline": "把干净的音乐放进舞蹈课视频，精准对齐。",
    "lang.label": "语言",
    "close": "关闭",
    "pick.title": "选择两个文件",
    "pick.choose": "选择文件",
    "pick.change": "更换文件",
    "pick.drop": "或拖到这里",
    "dance.title": "课堂视频",
    "dance.hint": "课堂上用手机拍的视频，现场声音差也没关系。",
    "bgm.title": "参考音乐或视频",
    "bgm.hint": "同一首歌的干净录音：音乐视频、练习音轨或音频文件。",
    "size.unknown": "大小未知",
    "duration.reading": "正在读取时长…",
    "duration.unknown": "时长未知",
    "upload.reading": "正在读取文件…",
    "upload.hashing": "正在校验文件…",
    "upload.connecting": "正在连接…",
    "upload.progress": "已上传 {percent} · {speed}",
    "upload.resumed": "从 {percent} 处继续上传",
    "upload.retrying": "网络中断，{seconds} 秒后重试（第 {attempt} 次）…",
    "upload.checking": "上传完成，正在检查文件…",
    "upload.ready": "已就绪",
    "upload.instant": "已就绪（秒传：服务器上已有这个文件）",
    "upload.restored": "已就绪（之前上传的文件）",
    "upload.rejected": "这个文件不能用",
    "upload.failed": "上传失败",
    "path.audio": "仅上传声音：{sent}，而不是整个视频 {whole}。视频留在本设备上。",
    "path.server": "已上传整个视频（{reason}）。",
    "path.reason.forced": "已设置为在服务器处理",
    "path.reason.format": "不是带 AAC 声音的 MP4/MOV",
    "path.reason.decoder": "这个浏览器无法解码它的画面",
    "path.reason.refused": "服务器无法只凭声音和画面索引处理它",
    "path.reading": "正在本地读取视频的声音和画面索引…",
    "path.sound.reading": "正在本地读取参考文件的声音…",
    "path.sound": "参考文件仅上传声音：{sent}，而不是整个文件 {whole}。",
    "path.frames": "正在本地读取服务器要看的画面…",
    "path.assembling": "正在本设备上合成视频…",
    "path.assembled": "视频在本设备上合成（{size}）：服务器没有收到视频。",
    "path.missing": "视频只在选择它的设备上：重新选择同一个课堂视频并开始，即可合成。",
    "start": "开始对齐",
    "start.hint": "两个文件都上传完成后就可以开始。",
    "start.ready": "准备好了，点击开始。",
    "start.busy": "正在处理当前任务。",
    "job.title": "处理进度",
    "stage.probe": "读取文件",
    "stage.decode": "解码音频",
    "stage.align": "对齐音乐",
    "stage.trim": "确定剪辑范围",
    "stage.render": "生成视频",
    "status.queued": "排队中",
    "status.running": "处理中",
    "status.succeeded": "已完成",
    "status.failed": "失败",
    "status.canceled": "已取消",
    "job.queued": "排队等待中…",
    "job.running": "{stage}… {percent}",
    "job.succeeded": "完成！",
    "job.canceled": "任务已取消。",
    "job.failed": "任务失败。",
    "cancel": "取消任务",
    "retry": "重试",
    "result.title": "结果",
    "download": "下载视频",
    "share": "分享或存到相册",
    "confidence": "可信度",
    "confidence.high": "非常可靠，音乐已对齐。",
    "confidence.medium": "基本可靠，建议听一下确认。",
    "confidence.low": "不太确定，可以试试其他候选。",
    "offset": "位置",
    "offset.value": "课堂视频从参考音乐的 {time} 处开始",
    "offset.before": "参考音乐从课堂视频的 {time} 处开始",
    "drift": "时钟漂移",
    "drift.value": "{ppm} ppm",
    "drift.speed": "{ppm} ppm · 速度 ×{scale}",
    "drift.tempo": "{ppm} ppm · 速度 ×{scale}（音调不变）",
    "cut": "剪辑范围",
    "cut.value": "{start} – {end}（共 {duration}）",
    "pieces": "剪辑段落",
    "pieces.summary": "这段舞用的是歌曲的剪辑版，共 {count} 段：",
    "pieces.item": "{start} – {end}：参考音乐 {from} 起",
    "candidates.title": "试试其他候选",
    "candidates.hint": "音乐对得不对？换一个可能的位置重新生成。",
    "candidate.best": "最佳匹配 · {confidence}",
    "candidate.label": "候选 {n} · {confidence}",
    "candidate.where": "从 {time} 开始",
    "candidate.current": "当前",
    "nudge.title": "微调同步",
    "nudge.hint": "正数让音乐晚一点，负数让音乐早一点（毫秒）。",
    "nudge.field": "偏移（毫秒）",
    "nudge.apply": "按此偏移重新生成",
    "nudge.earlier": "音乐提前 {ms} 毫秒",
    "nudge.later": "音乐推迟 {ms} 毫秒",
    "plot.alt": "对齐图：课堂视频与参考音乐的时间对应关系",
    "plot.caption": "对齐图：每个点是一小段的对齐结果，直线是最终的对应关系。",
    "again": "处理新的视频",
    "recent.title": "我的最近任务",
    "recent.refresh": "刷新任务列表",
    "recent.empty": "还没有任务。",
    "recent.open": "打开",
    "recent.delete": "删除",
    "recent.current": "正在查看",
    "recent.confidence": "可信度 {confidence}",
    "error.network": "无法连接服务器，请检查网络后重试。",
    "error.code": "错误代码：{code}",
    "error.unknown": "出了点问题，请稍后重试。",
    "footer": "文件仅用于生成你的视频，上传 24 小时后、结果 72 小时后自动删除。",
    "speed.unit": "{size}/秒",
  },
  "en": {
    "skip": "Skip to content",
    "tagline": "Put the clean music under your dance class video, in sync.",
    "lang.label": "Language",
    "close": "Close",
    "pick.title": "Choose two files",
    "pick.choose": "Choose a file",
    "pick.change": "Choose another file",
    "pick.drop": "or drop it here",
    "dance.title": "Class video",
    "dance.hint": "The phone video from class. Bad sound is fine.",
    "bgm.title": "Reference music or video",
    "bgm.hint": "A clean recording of the same song: music video, practice track or audio file.",
    "size.unknown": "size unknown",
    "duration.reading": "reading the length…",
    "duration.unknown": "length unknown",
    "upload.reading": "Reading the file…",
    "upload.hashing": "Checking the file…",
    "upload.connecting": "Connecting…",
    "upload.progress": "Uploaded {percent} · {speed}",
    "upload.resumed": "Resuming from {percent}",
    "upload.retrying": "Connection lost; retrying in {seconds} s (attempt {attempt})…",
    "upload.checking": "Uploaded; checking the file…",
    "upload.ready": "Ready",
    "upload.instant": "Ready (instant: the server already has this file)",
    "upload.restored": "Ready (uploaded earlier)",
    "upload.rejected": "This file cannot be used",
    "upload.failed": "Upload failed",
    "path.audio": "Only the sound is uploaded: {sent} instead of the whole video's {whole}. The video stays on this device.",
    "path.server": "The whole video is uploaded ({reason}).",
    "path.reason.forced": "this browser is set to process on the server",
    "path.reason.format": "not an MP4/MOV with AAC sound",
    "path.reason.decoder": "this browser cannot decode its picture",
    "path.reason.refused": "the server could not work from its sound and picture index alone",
    "path.reading": "Reading the video's sound and picture index on this device…",
    "path.sound.reading": "Reading the reference's sound on this device…",
    "path.sound": "Only the reference's sound is uploaded: {sent} instead of the whole file's {whole}.",
    "path.frames": "Reading the frames the server asked for on this device…",
    "path.assembling": "Putting the video together on this device…",
    "path.assembled": "Video put together on this device ({size}): the server never received it.",
    "path.missing": "The video is only on the device that chose it: choose the same class video again and start to put it together.",
    "start": "Start syncing",
    "start.hint": "You can start once both files are uploaded.",
    "start.ready": "All set. Press start.",
    "start.busy": "A job is running.",
    "job.title": "Progress",
    "stage.probe": "Reading the files",
    "stage.decode": "Decoding the audio",
    "stage.align": "Aligning the music",
    "stage.trim": "Finding the cut",
    "stage.render": "Making the video",
    "status.queued": "Queued",
    "status.running": "Running",
    "status.succeeded": "Done",
    "status.failed": "Failed",
    "status.canceled": "Canceled",
    "job.queued": "Waiting in line…",
    "job.running": "{stage}… {percent}",
    "job.succeeded": "Done!",
    "job.canceled": "The job was canceled.",
    "job.failed": "The job failed.",
    "cancel": "Cancel",
    "retry": "Try again",
    "result.title": "Result",
    "download": "Download video",
    "share": "Share or save to Photos",
    "confidence": "Confidence",
    "confidence.high": "Very likely right: the music is in sync.",
    "confidence.medium": "Probably right. Have a listen to check.",
    "confidence.low": "Not sure. Try another candidate below.",
    "offset": "Position",
    "offset.value": "The class video starts at {time} of the reference",
    "offset.before": "The reference starts {time} into the class video",
    "drift": "Clock drift",
    "drift.value": "{ppm} ppm",
    "drift.speed": "{ppm} ppm · speed ×{scale}",
    "drift.tempo": "{ppm} ppm · speed ×{scale} (pitch kept)",
    "cut": "Cut",
    "cut.value": "{start} – {end} ({duration})",
    "pieces": "Pieces",
    "pieces.summary": "The class danced to an edit of the song, in {count} pieces:",
    "pieces.item": "{start} – {end}: the reference from {from}",
    "candidates.title": "Try another candidate",
    "candidates.hint": "Music in the wrong place? Make the video again from another likely position.",
    "candidate.best": "Best match · {confidence}",
    "candidate.label": "Candidate {n} · {confidence}",
    "candidate.where": "starts at {time}",
    "candidate.current": "current",
    "nudge.title": "Fine-tune the sync",
    "nudge.hint": "Positive plays the music later, negative earlier (milliseconds).",
    "nudge.field": "Shift in milliseconds",
    "nudge.apply": "Apply the shift",
    "nudge.earlier": "Music {ms} ms earlier",
    "nudge.later": "Music {ms} ms later",
    "plot.alt": "Alignment plot: class video time against reference time",
    "plot.caption": "Alignment plot: each dot is one short window; the line is the fitted mapping.",
    "again": "Sync another video",
    "recent.title": "My recent jobs",
    "recent.refresh": "Refresh the list",
    "recent.empty": "No jobs yet.",
    "recent.open": "Open",
    "recent.delete": "Delete",
    "recent.current": "Showing",
    "recent.confidence": "confidence {confidence}",
    "error.network": "Cannot reach the server. Check your connection and try again.",
    "error.code": "Error code: {code}",
    "error.unknown": "Something went wrong. Please try again.",
    "footer": "Files are used only to make your video; uploads are deleted after 24 h, results after 72 h.",
    "speed.unit": "{size}/s",
  },
};

let current = initialLang();
const listeners = new Set();

function initialLang() {
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (LANGS.includes(saved)) return saved;
  } catch {
    // Storage may be disabled (private mode); fall back to the browser's language.
  }
  const wanted = (navigator.languages && navigator.languages[0]) || navigator.language || "";
  return wanted.toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

export function getLang() {
  return current;
}

/** The message `key` in the current language with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = MESSAGES[current][key] ?? MESSAGES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

export function setLang(lang) {
  if (!LANGS.includes(lang) || lang === current) return;
  current = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // Not remembered; the switch still works for this visit.
  }
  applyStatic(document);
  for (const listener of listeners) listener(lang);
}

export function onLangChange(listener) {
  listeners.add(listener);
}

/** Fill every data-i18n element (text), data-i18n-aria-label and data-i18n-alt under `root`. */
export function applyStatic(root) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-aria-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
  }
  for (const el of root.querySelectorAll("[data-i18n-alt]")) el.alt = t(el.dataset.i18nAlt);
  document.title = `BeatSync · ${t("tagline")}`;
}

function numberFormat(options) {
  return new Intl.NumberFormat(current, options);
}

export function formatBytes(bytes) {
  if (bytes == null || !Number.isFinite(bytes)) return t("size.unknown");
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${numberFormat({ maximumFractionDigits: digits }).format(value)} ${units[unit]}`;
}

export function formatSpeed(bytesPerSecond) {
  return t("speed.unit", { size: formatBytes(bytesPerSecond) });
}

export function formatPercent(fraction, digits = 0) {
  return numberFormat({ style: "percent", maximumFractionDigits: digits }).format(fraction);
}

/** Seconds as m:ss.s (or h:mm:ss), the way a player shows a position. */
export function formatClock(seconds, decimals = 1) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  const sign = seconds < 0 ? "−" : "";
  const total = Math.abs(seconds);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = (total % 60).toFixed(decimals).padStart(decimals ? 3 + decimals : 2, "0");
  return hours
    ? `${sign}${hours}:${String(minutes).padStart(2, "0")}:${rest}`
    : `${sign}${minutes}:${rest}`;
}

export function formatSigned(value, digits = 0) {
  const text = numberFormat({ maximumFractionDigits: digits, minimumFractionDigits: digits })
    .format(Math.abs(value));
  if (value > 0) return `+${text}`;
  if (value < 0) return `−${text}`;
  return text;
}

export function formatDateTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return new Intl.DateTimeFormat(current, {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  }).format(date);
}
