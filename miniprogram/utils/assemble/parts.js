// Generated from src/beatsync/web/assemble/parts.js by scripts/assemble-sync.js:
// edit that file, then run `npm run assemble-sync`.

// An output as a list of parts: new box bytes ({bytes}) and ranges of the source file
// ({offset, length}), so no runtime ever holds the whole video. The page composes a Blob of
// File slices; the mini-program copies the ranges in chunks (wx-files.js).

const MAX_PIECE = 4 * 1024 * 1024;

/** Source ranges of the samples in order, adjacent ones merged. */
function rangesOf(samples) {
  const out = [];
  for (const s of samples) {
    const last = out[out.length - 1];
    if (last && last.offset + last.length === s.offset) last.length += s.size;
    else out.push({ offset: s.offset, length: s.size });
  }
  return out;
}

/** The byte count of the parts. */
function partsSize(parts) {
  return parts.reduce((n, p) => n + (p.bytes ? p.bytes.length : p.length), 0);
}

/**
 * Visit the output's bytes in order, a piece of at most `piece` bytes at a time, reading the
 * source ranges through `reader`. `visit(bytes)` may return a promise.
 */
async function eachPiece(parts, reader, visit, piece = MAX_PIECE) {
  for (const p of parts) {
    if (p.bytes) {
      await visit(p.bytes);
      continue;
    }
    for (let done = 0; done < p.length; done += piece) {
      const n = Math.min(piece, p.length - done);
      const bytes = await reader.read(p.offset + done, n);
      if (bytes.length !== n) throw new Error(`short read at byte ${p.offset + done}`);
      await visit(bytes);
    }
  }
}

/** The parts as one byte array: for small outputs such as the audio upload. */
async function partsBytes(parts, reader) {
  const out = new Uint8Array(partsSize(parts));
  let pos = 0;
  await eachPiece(parts, reader, (bytes) => {
    out.set(bytes, pos);
    pos += bytes.length;
  });
  return out;
}

/** The parts as a Blob of new bytes and slices of `file` (a File or Blob): nothing is read. */
function partsBlob(parts, file, type = "video/mp4") {
  return new Blob(
    parts.map((p) => (p.bytes ? p.bytes : file.slice(p.offset, p.offset + p.length))),
    { type },
  );
}

/** A reader over a File or Blob. */
function blobReader(file) {
  return {
    size: file.size,
    async read(offset, length) {
      return new Uint8Array(await file.slice(offset, offset + length).arrayBuffer());
    },
  };
}

/** A reader over bytes already in memory. */
function bytesReader(bytes) {
  return {
    size: bytes.length,
    async read(offset, length) {
      return bytes.subarray(offset, offset + length);
    },
  };
}

module.exports = { rangesOf, partsSize, eachPiece, partsBytes, partsBlob, blobReader, bytesReader };
