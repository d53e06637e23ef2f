// What "share" in the mini-program's menu sends to a chat: the first page, with a title that
// says what the mini-program does. Pages return this from onShareAppMessage.

const TITLE = "舞蹈课视频配上干净的音乐，对得很准";

/** The share card of a page; `imageUrl` (a poster) where the page has one. */
function appShare(imageUrl) {
  const card = { title: TITLE, path: "/pages/index/index" };
  if (imageUrl) card.imageUrl = imageUrl;
  return card;
}

module.exports = { TITLE, appShare };
