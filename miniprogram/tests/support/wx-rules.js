// WeChat's limits and failure shapes, as its documentation gives them, for the test doubles of
// `wx` (fake-wx.js in memory, real-wx.js on real files). Written out here on their own, never
// taken from the mini-program's code, so a client that breaks a rule fails its tests.
//
// - Limits: FileSystemManager.readFile reads at most 100 MB at once; wx.downloadFile refuses a
//   file over 200 MB; at most 10 wx.request/uploadFile/downloadFile run at once, and more wait
//   in a queue until one ends (they are not refused); a request ends after
//   networkTimeout.request, 60 s at most; files a mini-program writes itself live under
//   wx.env.USER_DATA_PATH, 200 MB in all (temporary files from APIs, MediaContainer.export's
//   among them, are not counted).
// - Failures carry `errMsg` ("<api>:fail <reason>") and, where WeChat documents one, the unified
//   `errno`: 7 digits, category first (06 network, 13 files), with a few short general ones
//   (5 timeout, 103 refused by the user, 104 privacy not authorized, 112 privacy scope not
//   declared). The file system's are those of its FileError table; a file over readFile's
//   100 MB is its 1300202 ("the file size limit, 100M, or the storage, is exceeded"). No errno
//   is documented for a download over 200 MB, so that failure carries none.

const MB = 1024 * 1024;

const LIMITS = Object.freeze({
  readFileBytes: 100 * MB,
  downloadFileBytes: 200 * MB,
  concurrentRequests: 10,
  requestTimeoutMs: 60 * 1000,
  userDataBytes: 200 * MB,
});

const USER_DATA_PATH = "wxfile://usr";

const ERRNO = Object.freeze({
  TIMEOUT: 5,
  AUTH_DENY: 103,
  PRIVACY_NOT_AUTHORIZED: 104,
  PRIVACY_NOT_DECLARED: 112,
  NETWORK_INTERRUPTED: 600003,
  NO_SUCH_FILE: 1300002,
  BAD_FD: 1300009,
  STORAGE_FULL: 1300202,
});

/** The fail result of `api` for `reason`, with its errno when WeChat gives one. */
function failure(api, reason, errno) {
  const result = { errMsg: `${api}:fail ${reason}` };
  if (errno != null) result.errno = errno;
  return result;
}

const fail = {
  timeout: (api) => failure(api, "timeout", ERRNO.TIMEOUT),
  network: (api) => failure(api, "network interrupted error", ERRNO.NETWORK_INTERRUPTED),
  readTooLarge: (api) =>
    failure(api, "the maximum size of the file storage limit is exceeded", ERRNO.STORAGE_FULL),
  downloadTooLarge: () => failure("downloadFile", "exceed max file size"),
  noSuchFile: (api, path) =>
    failure(api, `no such file or directory "${path}"`, ERRNO.NO_SUCH_FILE),
  badFd: (api) => failure(api, "bad file descriptor", ERRNO.BAD_FD),
  storageFull: (api) =>
    failure(api, "the maximum size of the file storage limit is exceeded", ERRNO.STORAGE_FULL),
  authDeny: (api) => failure(api, "auth deny", ERRNO.AUTH_DENY),
  privacy: (api) => failure(api, "privacy permission is not authorized", ERRNO.PRIVACY_NOT_AUTHORIZED),
  notTap: (api) => failure(api, "can only be invoked by user TAP gesture."),
  cancel: (api) => failure(api, "cancel"),
};

// The calls WeChat holds back until the user agreed to the privacy guide (those that collect
// what the guide declares: chosen media and files, writing to the album).
const PRIVACY_APIS = new Set([
  "chooseMedia",
  "chooseMessageFile",
  "saveVideoToPhotosAlbum",
  "authorize",
]);

module.exports = { ERRNO, LIMITS, MB, PRIVACY_APIS, USER_DATA_PATH, fail, failure };
