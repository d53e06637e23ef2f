// Every refusal in plain Chinese. The service answers RFC 9457 problem documents with a stable
// `code` (and a message already in Chinese, since every request says Accept-Language: zh-CN);
// the mini-program words each known code for a phone, falls back to the server's message for a
// code it does not know yet, and adds its own codes for what happens on the phone: no network,
// a request over the 60-second cap, a file too large or too long before it is sent.

const MESSAGES = {
  // The service's codes (src/beatsync/service/codes.py).
  VALIDATION_ERROR: "请求参数不正确，请更新小程序后重试。",
  WECHAT_LOGIN_FAILED: "微信登录失败，请重新打开小程序。",
  WECHAT_NOT_CONFIGURED: "这个服务没有开通微信登录，将以匿名身份使用。",
  WECHAT_UNAVAILABLE: "暂时无法连接微信，请稍后再试。",
  UNAUTHORIZED: "登录状态已失效，请重新打开小程序。",
  NOT_FOUND: "找不到这个任务或文件，可能已过期被删除。",
  METHOD_NOT_ALLOWED: "服务器不支持这个操作，请更新小程序。",
  FILE_NOT_FOUND: "找不到文件，可能已过期被删除，请重新上传。",
  FILE_TOO_LARGE: "文件太大，请剪短或压缩后再上传。",
  REQUEST_TOO_LARGE: "请求内容太大，请更新小程序后重试。",
  INVALID_MANIFEST: "视频信息与声音对不上，请重新选择视频后再试。",
  FRAMES_NOT_REQUESTED: "任务没有要这些画面，请刷新任务后再试。",
  INVALID_FORMAT: "无法识别的文件格式，请上传视频或音频文件。",
  NO_AUDIO_TRACK: "文件里没有声音，请选择带声音的视频或音频。",
  NO_VIDEO_TRACK: "课堂视频里没有画面，请选择视频文件。",
  DURATION_TOO_LONG: "视频太长，请剪短后再上传。",
  UPLOAD_INCOMPLETE: "文件还没有上传完成，请稍等。",
  UPLOAD_CONFLICT: "上传进度与服务器不一致，请重试，会从服务器已收到的位置继续。",
  CHECKSUM_MISMATCH: "数据在传输中出错，请重试。",
  UNSUPPORTED_VERSION: "上传方式不受服务器支持，请更新小程序。",
  MUSIC_MISMATCH: "两个文件里的音乐对不上，请确认是同一首歌。",
  PROCESSING_FAILED: "处理失败，请稍后重试。",
  RESOURCE_LIMIT: "视频太大，处理所需的内存超出限制，请剪短后再试。",
  TIMEOUT: "处理时间太长，请剪短视频后再试。",
  QUOTA_EXCEEDED: "任务数量已达上限，请等当前任务完成后再开始。",
  STORAGE_QUOTA_EXCEEDED: "你上传的文件太多，请删除不需要的文件或等它们过期后再上传。",
  RATE_LIMITED: "操作太频繁，请稍后再试。",
  SERVER_BUSY: "服务器繁忙，请稍后再试。",
  STORAGE_UNAVAILABLE: "存储暂时不可用，请稍后再试。",
  DATABASE_UNAVAILABLE: "服务暂时不可用，请稍后再试。",
  INSUFFICIENT_STORAGE: "服务器存储空间不足，请稍后再试。",
  JOB_NOT_CANCELLABLE: "任务已经结束，无法取消。",
  JOB_NOT_FINISHED: "任务还没有完成，请稍等。",
  JOB_NOT_RETRYABLE: "只有失败或已取消的任务可以重试。",
  WORKER_LOST: "处理进程意外中断，请重试。",
  LINK_EXPIRED: "链接已过期，请返回后重新打开这个任务。",
  RANGE_NOT_SATISFIABLE: "下载出错，请重新下载。",
  INTERNAL_ERROR: "服务器出错了，请稍后重试。",
  // What happens on the phone.
  NETWORK: "无法连接服务器，请检查网络后重试。",
  REQUEST_TIMEOUT: "网络太慢，请求在 60 秒内没有完成，请换个网络后重试。",
  CHOOSE_FAILED: "无法打开相册或聊天文件，请在设置中允许小程序访问相册后重试。",
  FILE_READ_FAILED: "无法读取所选文件，请重新选择。",
  FILE_EMPTY: "所选文件是空的，请重新选择。",
  LOCAL_TOO_LARGE: "文件太大（{size}），最大 {max}，请剪短或压缩后再试。",
  LOCAL_TOO_LONG: "视频太长（{duration}），最长 {max}，请剪短后再试。",
  UNSUPPORTED_FILE: "不支持这种文件，请选择视频或音频文件。",
  NEEDS_VIDEO: "课堂视频需要是视频文件，请重新选择。",
  ALBUM_DENIED: "没有保存到相册的权限，请在设置中允许“保存到相册”。",
  PRIVACY_DENIED: "需要你同意《隐私保护指引》后才能选择视频和保存到相册。",
  PHONE_STORAGE_FULL: "手机上给小程序的存储空间不够，请清理后重试。",
  DOWNLOAD_TOO_LARGE: "视频超过 200 MB，微信无法下载，可以改为生成 720p 版本。",
  ASSEMBLE_FAILED: "无法在手机上合成视频，请重试或改用服务器合成。",
  DOWNLOAD_FAILED: "视频下载失败，请稍后重试。",
  SAVE_FAILED: "保存到相册失败，请稍后重试。",
  SHARE_FAILED: "分享失败，请稍后重试。",
  PAUSED: "上传已暂停，回到小程序后继续。",
  ABORTED: "已取消。",
  UNKNOWN: "出了点问题，请稍后重试。",
};

// Codes whose cause passes by itself: a retry later may succeed.
const TRANSIENT = new Set([
  "WECHAT_UNAVAILABLE",
  "NETWORK",
  "REQUEST_TIMEOUT",
  "RATE_LIMITED",
  "SERVER_BUSY",
  "STORAGE_UNAVAILABLE",
  "DATABASE_UNAVAILABLE",
  "INSUFFICIENT_STORAGE",
  "INTERNAL_ERROR",
  "PROCESSING_FAILED",
  "WORKER_LOST",
]);

class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 when no answer came
   * @param {string} code a stable code (the service's, or one of the phone's above)
   * @param {string|null} message the server's localized message, if it sent one
   * @param {object} [extra] body (the problem document), params (for the message)
   */
  constructor(status, code, message, extra) {
    super(message || code);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.serverMessage = message || null;
    this.body = (extra && extra.body) || null;
    this.params = (extra && extra.params) || null;
  }

  /** Worth trying again: the network or the server, not the request. */
  get transient() {
    return (
      this.status === 0 ||
      this.status >= 500 ||
      this.status === 429 ||
      TRANSIENT.has(this.code) ||
      Boolean(this.body && this.body.retryable)
    );
  }
}

function fill(template, params) {
  return template.replace(/\{(\w+)\}/g, (whole, name) =>
    params && params[name] != null ? String(params[name]) : whole,
  );
}

/** The plain-words message of a code (with its parameters), or the server's, or a generic one. */
function messageFor(code, serverMessage, params) {
  if (Object.prototype.hasOwnProperty.call(MESSAGES, code)) return fill(MESSAGES[code], params);
  if (serverMessage) return serverMessage;
  return MESSAGES.UNKNOWN;
}

/** An ApiError from a wx.request answer that is not a success (problem+json when the API spoke). */
function fromResponse(response) {
  let body = response.data;
  if (typeof body === "string") {
    try {
      body = JSON.parse(body);
    } catch (error) {
      body = null;
    }
  }
  if (!body || typeof body !== "object" || typeof body.byteLength === "number") body = null;
  const code = body && typeof body.code === "string" ? body.code : `HTTP_${response.statusCode}`;
  const message = body && typeof body.message === "string" ? body.message : null;
  return new ApiError(response.statusCode, code, message, { body });
}

// WeChat's unified error numbers (`errno` of a fail result): seven digits, the first two the
// API's category, for the failures the phone must tell apart; 1300202 is the file system's
// "storage or file size limit exceeded". A download over 200 MB has no documented errno: it is
// known by its size before the download, and by its text. errMsg texts differ between Android,
// iOS and versions, so they are only a fallback.
const ERRNO = {
  TIMEOUT: 5,
  AUTH_DENY: 103,
  PRIVACY_NOT_AUTHORIZED: 104,
  PRIVACY_NOT_DECLARED: 112,
  NO_SUCH_FILE: 1300002,
  STORAGE_FULL: 1300202,
};

/** The code of a wx fail result: by its errno where it has one, else by its errMsg. */
function failureCode(failure) {
  const errno = failure && Number(failure.errno);
  const text = String((failure && failure.errMsg) || failure || "");
  switch (errno) {
    case ERRNO.TIMEOUT:
      return "REQUEST_TIMEOUT";
    case ERRNO.AUTH_DENY:
      return "ALBUM_DENIED";
    case ERRNO.PRIVACY_NOT_AUTHORIZED:
    case ERRNO.PRIVACY_NOT_DECLARED:
      return "PRIVACY_DENIED";
    case ERRNO.NO_SUCH_FILE:
      return "FILE_READ_FAILED";
    case ERRNO.STORAGE_FULL:
      return "PHONE_STORAGE_FULL";
    default:
      break;
  }
  if (/abort/i.test(text)) return "ABORTED";
  if (/cancel/i.test(text)) return "CANCELED";
  if (/privacy/i.test(text)) return "PRIVACY_DENIED";
  if (/time\s*out|timed out/i.test(text)) return "REQUEST_TIMEOUT";
  if (/exceed max file size/i.test(text)) return "DOWNLOAD_TOO_LARGE";
  if (/storage limit is exceeded/i.test(text)) return "PHONE_STORAGE_FULL";
  if (/auth den/i.test(text)) return "ALBUM_DENIED";
  return null;
}

/** An ApiError from a wx call's fail result ({errMsg, errno}): the network, a timeout, an abort. */
function fromFailure(failure) {
  const text = String((failure && failure.errMsg) || failure || "");
  const code = failureCode(failure);
  if (code === "ABORTED" || code === "REQUEST_TIMEOUT") return new ApiError(0, code, null);
  return new ApiError(0, code && code !== "CANCELED" ? code : "NETWORK", null, {
    body: { errMsg: text, errno: failure && failure.errno },
  });
}

/** {code, message} of anything thrown, for the user: plain Chinese, never a stack trace. */
function describe(error) {
  if (error instanceof ApiError) {
    return { code: error.code, message: messageFor(error.code, error.serverMessage, error.params) };
  }
  if (error && typeof error.code === "string" && !(error instanceof Error)) {
    // A job's or an upload's `error` object as the API sent it.
    return { code: error.code, message: messageFor(error.code, error.message, null) };
  }
  if (error && typeof error.errMsg === "string") return describe(fromFailure(error));
  return { code: "UNKNOWN", message: MESSAGES.UNKNOWN };
}

/** A phone-side refusal with its parameters (LOCAL_TOO_LARGE and the like). */
function localError(code, params) {
  return new ApiError(0, code, null, { params });
}

module.exports = {
  ApiError,
  ERRNO,
  MESSAGES,
  describe,
  failureCode,
  fromFailure,
  fromResponse,
  localError,
  messageFor,
};
