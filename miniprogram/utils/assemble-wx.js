// The assembly module (utils/assemble, the page's module in CommonJS) on the phone's files:
// a reader over a file descriptor, and the output's parts copied into a file a piece at a time
// with the file-system manager, so neither the video nor the result is ever held whole.

const { assemble, eachPiece, extractAudio, partsSize } = require("./assemble/index.js");
const { failureCode } = require("./errors.js");

const PIECE_BYTES = 2 * 1024 * 1024;

function call(name, options) {
  return new Promise((resolve, reject) => {
    wx.getFileSystemManager()[name]({
      ...options,
      success: resolve,
      fail: (failure) => {
        const error = new Error(`${name} failed: ${failure && failure.errMsg}`);
        error.code = failureCode(failure) || "FILE_READ_FAILED";
        error.errno = failure && failure.errno;
        reject(error);
      },
    });
  });
}

/** A {size, read(offset, length), close()} reader over a local file. */
async function openReader(filePath) {
  const { fd } = await call("open", { filePath, flag: "r" });
  const { stats } = await call("fstat", { fd });
  return {
    size: stats.size,
    async read(offset, length) {
      const buffer = new ArrayBuffer(length);
      const { bytesRead } = await call("read", {
        fd,
        arrayBuffer: buffer,
        offset: 0,
        length,
        position: offset,
      });
      return new Uint8Array(buffer, 0, bytesRead);
    },
    close: () => call("close", { fd }),
  };
}

/**
 * Write `parts` (new bytes and ranges of `reader`'s file) to `outPath`, gathered into writes of
 * PIECE_BYTES: an output of many small parts (the sound's packets) costs few calls.
 * @param {object} [options] onProgress(done, total) after each write
 * @returns {Promise<number>} bytes written
 */
async function writeParts(parts, reader, outPath, options) {
  const opts = options || {};
  const total = partsSize(parts);
  const buffer = new Uint8Array(Math.min(PIECE_BYTES, Math.max(total, 1)));
  let filled = 0;
  let done = 0;
  const { fd } = await call("open", { filePath: outPath, flag: "w" });
  const flush = async () => {
    if (filled === 0) return;
    await call("write", { fd, data: buffer.buffer.slice(0, filled), position: done });
    done += filled;
    filled = 0;
    if (opts.onProgress) opts.onProgress(done, total);
  };
  try {
    await eachPiece(
      parts,
      reader,
      async (bytes) => {
        for (let at = 0; at < bytes.length;) {
          const n = Math.min(bytes.length - at, buffer.length - filled);
          buffer.set(bytes.subarray(at, at + n), filled);
          filled += n;
          at += n;
          if (filled === buffer.length) await flush();
        }
      },
      PIECE_BYTES,
    );
    await flush();
  } finally {
    await call("close", { fd });
  }
  return done;
}

async function withReader(filePath, fn) {
  const reader = await openReader(filePath);
  try {
    return await fn(reader);
  } finally {
    await reader.close();
  }
}

/**
 * The output `parts` describe as a file that is never written: {size, read(offset, length)}
 * gives its bytes from the new boxes and from `videoPath` (opened for each read, so nothing is
 * held open while an upload waits), for sending it a chunk at a time.
 */
function partsFile(parts, videoPath) {
  const starts = [];
  let size = 0;
  for (const p of parts) {
    starts.push(size);
    size += p.bytes ? p.bytes.length : p.length;
  }
  return {
    size,
    /** `length` bytes from `offset` (fewer at the end), as an ArrayBuffer. */
    read(offset, length) {
      const end = Math.min(size, offset + length);
      const out = new Uint8Array(Math.max(0, end - offset));
      let i = 0;
      for (let lo = 0, hi = parts.length - 1; lo <= hi; ) {
        const mid = (lo + hi) >> 1;
        if (starts[mid] <= offset) {
          i = mid;
          lo = mid + 1;
        } else {
          hi = mid - 1;
        }
      }
      return withReader(videoPath, async (reader) => {
        for (let at = offset; at < end; i += 1) {
          const p = parts[i];
          const from = at - starts[i];
          const n = Math.min((p.bytes ? p.bytes.length : p.length) - from, end - at);
          if (p.bytes) {
            out.set(p.bytes.subarray(from, from + n), at - offset);
          } else {
            for (let done = 0; done < n; done += PIECE_BYTES) {
              const want = Math.min(PIECE_BYTES, n - done);
              const bytes = await reader.read(p.offset + from + done, want);
              if (bytes.length !== want) throw new Error(`short read at byte ${p.offset + from + done}`);
              out.set(bytes, at - offset + done);
            }
          }
          at += n;
        }
        return out.buffer;
      });
    },
  };
}

/** The class video's sound written to `m4aPath`; resolves to the picture's manifest. */
function extractAudioToFile(videoPath, m4aPath, options) {
  return withReader(videoPath, async (reader) => {
    const { parts, manifest } = await extractAudio(reader);
    await writeParts(parts, reader, m4aPath, options);
    return manifest;
  });
}

/**
 * The result MP4 written to `outPath` from the video, the returned audio file and the cut.
 * @param {object} [options] onProgress(done, total); maxBytes: refuse (code OUTPUT_TOO_LARGE,
 *   `size` on the error) before writing anything when the output would be larger
 * @returns {Promise<object>} the assembly's facts, with `size` (bytes written)
 */
function assembleToFile(videoPath, audioPath, answer, outPath, options) {
  const opts = options || {};
  return withReader(videoPath, async (reader) => {
    const audio = await withReader(audioPath, (r) => r.read(0, r.size));
    const { parts, facts } = await assemble(reader, audio, answer);
    const size = partsSize(parts);
    if (opts.maxBytes != null && size > opts.maxBytes) {
      const error = new Error(`the output needs ${size} bytes, ${opts.maxBytes} are free`);
      error.code = "OUTPUT_TOO_LARGE";
      error.size = size;
      throw error;
    }
    await writeParts(parts, reader, outPath, opts);
    return { ...facts, size };
  });
}

/**
 * The result MP4 of `answer` as a file that is never written (see partsFile): the picture
 * stream-copied from the video, the sound of `audioPath`.
 * @returns {Promise<{size: number, read: Function}>}
 */
async function assembledFile(videoPath, audioPath, answer) {
  const parts = await withReader(videoPath, async (reader) => {
    const audio = await withReader(audioPath, (r) => r.read(0, r.size));
    return (await assemble(reader, audio, answer)).parts;
  });
  return partsFile(parts, videoPath);
}

module.exports = {
  assembleToFile,
  assembledFile,
  extractAudioToFile,
  openReader,
  partsFile,
  writeParts,
};
