// Sizes, times, speeds and percentages as a Chinese reader expects them.

function formatBytes(bytes) {
  if (bytes == null || !Number.isFinite(bytes)) return "大小未知";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 100 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

/** m:ss (or h:mm:ss), with `decimals` digits of the seconds. */
function formatClock(seconds, decimals) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  const digits = decimals || 0;
  const sign = seconds < 0 ? "-" : "";
  const factor = 10 ** digits;
  const total = Math.round(Math.abs(seconds) * factor) / factor;
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = total - hours * 3600 - minutes * 60;
  const secs = rest.toFixed(digits).padStart(digits ? digits + 3 : 2, "0");
  const mm = hours ? String(minutes).padStart(2, "0") : String(minutes);
  return `${sign}${hours ? `${hours}:` : ""}${mm}:${secs}`;
}

/** A duration in words: "1 分 05 秒", "12 秒". */
function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "时长未知";
  const total = Math.round(seconds);
  const minutes = Math.floor(total / 60);
  const secs = total % 60;
  if (!minutes) return `${secs} 秒`;
  return `${minutes} 分 ${String(secs).padStart(2, "0")} 秒`;
}

function formatSpeed(bytesPerSecond) {
  if (bytesPerSecond == null || !Number.isFinite(bytesPerSecond)) return "…";
  return `${formatBytes(Math.max(0, Math.round(bytesPerSecond)))}/秒`;
}

function formatPercent(fraction) {
  const value = Math.max(0, Math.min(1, Number(fraction) || 0));
  return `${Math.floor(value * 100)}%`;
}

function formatSigned(value, decimals) {
  const number = Number(value) || 0;
  const text = number.toFixed(decimals);
  return number > 0 ? `+${text}` : text;
}

/** "11月29日 12:05" from an ISO 8601 time, in the phone's time zone. */
function formatDateTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const hh = String(date.getHours()).padStart(2, "0");
  const mm = String(date.getMinutes()).padStart(2, "0");
  return `${date.getMonth() + 1}月${date.getDate()}日 ${hh}:${mm}`;
}

module.exports = {
  formatBytes,
  formatClock,
  formatDateTime,
  formatDuration,
  formatPercent,
  formatSigned,
  formatSpeed,
};
