// Where the mini-program finds the BeatSync service, and the client-side limits it checks
// before sending anything. Only this file changes between a DevTools session against a
// laptop and a release build: `apiBase` must be an https origin listed as a request,
// uploadFile, downloadFile and socket domain of the mini-program (see README.md).

module.exports = {
  // No trailing slash. http://127.0.0.1:8000 works in WeChat DevTools with domain checks off.
  apiBase: "http://127.0.0.1:8000",
  // Bytes per tus chunk: a few MB keeps a chunk well inside the 60-second request cap on a
  // phone network; the uploader halves it after a timeout and grows it on a fast link.
  chunkBytes: 4 * 1024 * 1024,
  minChunkBytes: 256 * 1024,
  maxChunkBytes: 8 * 1024 * 1024,
  // Files up to this size are hashed (sha256) for instant upload; hashing a larger file on a
  // phone takes longer than sending it.
  hashLimitBytes: 50 * 1024 * 1024,
  // The service's defaults; the size limit is refreshed from the server's Tus-Max-Size.
  maxUploadBytes: 500 * 1024 * 1024,
  maxDurationS: 600,
  // Sign in with WeChat (wx.login → the service's code2Session), so jobs follow the user to
  // another phone; a service without an AppID answers WECHAT_NOT_CONFIGURED and the phone
  // gets an anonymous token instead.
  wechatLogin: true,
  // The subscription message template of the "job finished" notice (the same id as the
  // service's BEATSYNC_WECHAT_NOTIFY_TEMPLATE_ID); empty: no notice is asked for.
  notifyTemplateId: "",
};
