// Reading the chosen files through the file-system manager: a piece at a time (an ArrayBuffer
// of a few MB) through a descriptor (open, read at a position, close), never the whole file,
// which a phone could not hold for a 500 MB video and readFile refuses past 100 MB.

const { localError } = require("./errors.js");
const { Sha256 } = require("./sha256.js");

const HASH_PIECE_BYTES = 2 * 1024 * 1024;

function manager() {
  return wx.getFileSystemManager();
}

function fsCall(name, options) {
  return new Promise((resolve, reject) => {
    manager()[name]({
      ...options,
      success: resolve,
      fail: (failure) =>
        reject(localError("FILE_READ_FAILED", { reason: failure && failure.errMsg })),
    });
  });
}

/** `length` bytes of the file from `position` (fewer at its end), as an ArrayBuffer. */
async function readChunk(filePath, position, length) {
  const { fd } = await fsCall("open", { filePath, flag: "r" });
  try {
    const buffer = new ArrayBuffer(length);
    const { bytesRead } = await fsCall("read", { fd, arrayBuffer: buffer, offset: 0, length, position });
    return bytesRead === length ? buffer : buffer.slice(0, bytesRead);
  } finally {
    await fsCall("close", { fd }).catch(() => {});
  }
}

/**
 * The sha256 of a file, read piece by piece.
 * @param {object} [options] onProgress(done, total), stopped() → true to give up (returns null)
 */
async function hashFile(filePath, size, options) {
  const opts = options || {};
  const hash = new Sha256();
  let position = 0;
  while (position < size) {
    if (opts.stopped && opts.stopped()) return null;
    const length = Math.min(HASH_PIECE_BYTES, size - position);
    const piece = await readChunk(filePath, position, length);
    if (!piece || piece.byteLength === 0) throw localError("FILE_READ_FAILED", { position });
    hash.update(piece);
    position += piece.byteLength;
    if (opts.onProgress) opts.onProgress(position, size);
  }
  return hash.hex();
}

module.exports = { HASH_PIECE_BYTES, hashFile, readChunk };
