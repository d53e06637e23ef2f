// Generated from src/beatsync/web/assemble/parts.js by scripts/assemble-sync.js:
// edit that file, then run `npm run assemble-sync`.

// An output as a list of parts: new box bytes ({bytes}) and ranges of the source file
// ({offset, length}), so no runtime ever holds the whole video. The page composes a Blob of
// File slices; the mini-program copies the ranges in chunks (wx-files.js).

const MAX_PIECE = 4 * 1024 * 1024;
const BRIDGE = 512 * 1024; // a gap read through rather than around (partsBytes)
const MAX_WINDOW = 16 * 1024 * 1024; // the most partsBytes reads at once

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

/**
 * The parts as one byte array: for small outputs such as the audio upload. Source ranges a gap of
 * at most `bridge` bytes apart are read together, up to `window` bytes at a time, and cut out of
 * that read: a sound interleaved packet by packet with the picture is then a few large reads
 * rather than thousands of small ones (each read of a File costs the browser a round trip of its
 * own). The memory held is the output and one window.
 */
async function partsBytes(parts, reader, { bridge = BRIDGE, window = MAX_WINDOW } = {}) {
  const out = new Uint8Array(partsSize(parts));
  let pos = 0;
  const put = (bytes) => {
    out.set(bytes, pos);
    pos += bytes.length;
  };
  for (let i = 0; i < parts.length; ) {
    const p = parts[i];
    if (p.bytes) {
      put(p.bytes);
      i += 1;
      continue;
    }
    let j = i + 1;
    let end = p.offset + p.length;
    while (j < parts.length && joins(parts[j], end, p.offset, bridge, window)) {
      end = parts[j].offset + parts[j].length;
      j += 1;
    }
    if (j === i + 1) {
      await eachPiece([p], reader, put);
    } else {
      const span = await reader.read(p.offset, end - p.offset);
      if (span.length !== end - p.offset) throw new Error(`short read at byte ${p.offset}`);
      for (let k = i; k < j; k += 1) {
        const at = parts[k].offset - p.offset;
        put(span.subarray(at, at + parts[k].length));
      }
    }
    i = j;
  }
  return out;
}

/** Whether range `q` is read with the ones before it (read from `start`, so far to `end`). */
function joins(q, end, start, bridge, window) {
  return !q.bytes && q.offset >= end && q.offset - end <= bridge && q.offset + q.length - start <= window;
}

/**
 * The parts as a Blob of new bytes and slices of `file` (a File or Blob): nothing is read. The
 * slices between two pieces of new bytes are gathered in a Blob of their own; with a `cache`
 * (a Map kept by the caller for one file), such a group is made once and reused by a later
 * output that has it too (another take of the same cut: only the new bytes change), and so is
 * each slice (made ahead by `sliceOf` while the page waits: a slice costs the browser a round
 * trip).
 */
function partsBlob(parts, file, type = "video/mp4", cache = null) {
  const items = [];
  let group = [];
  const flush = () => {
    if (group.length === 0) return;
    items.push(groupBlob(file, group, cache));
    group = [];
  };
  for (const p of parts) {
    if (p.bytes) {
      flush();
      items.push(p.bytes);
    } else group.push(p);
  }
  flush();
  return new Blob(items, { type });
}

/** The ranges of `file` as one Blob, kept in `cache` (a Map) if given. */
function groupBlob(file, ranges, cache = null) {
  const key = cache ? ranges.map((r) => `${r.offset}+${r.length}`).join(",") : null;
  let blob = cache ? cache.get(key) : null;
  if (!blob) {
    const slices = ranges.map((r) => sliceOf(file, r, cache));
    blob = slices.length === 1 ? slices[0] : new Blob(slices);
    if (cache) cache.set(key, blob);
  }
  return blob;
}

/** The slice of `file` for the range {offset, length}, kept in `cache` (a Map) if given. */
function sliceOf(file, range, cache = null) {
  const key = `${range.offset}:${range.length}`;
  let slice = cache ? cache.get(key) : null;
  if (!slice) {
    slice = file.slice(range.offset, range.offset + range.length);
    if (cache) cache.set(key, slice);
  }
  return slice;
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

module.exports = { rangesOf, partsSize, eachPiece, partsBytes, partsBlob, groupBlob, sliceOf, blobReader, bytesReader };
