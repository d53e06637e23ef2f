// ISO-BMFF boxes as bytes: a small writer for the boxes this module makes, and walkers over
// boxes it copies as they are (children of a container, the sample entry's own boxes).

/** An error with a stable code, as the service's problem documents carry. */
export class MediaError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "MediaError";
    this.code = code;
  }
}

const LATIN1 = (bytes) => String.fromCharCode(...bytes);
const TWO_32 = 2 ** 32;

/** Grows a byte array; numbers big-endian, as every box field is. */
export class Writer {
  constructor(capacity = 256) {
    this.buf = new Uint8Array(capacity);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  room(n) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v) {
    this.room(1);
    this.view.setUint8(this.pos, v);
    this.pos += 1;
    return this;
  }

  u16(v) {
    this.room(2);
    this.view.setUint16(this.pos, v);
    this.pos += 2;
    return this;
  }

  u24(v) {
    return this.u8((v >>> 16) & 0xff).u16(v & 0xffff);
  }

  u32(v) {
    this.room(4);
    this.view.setUint32(this.pos, v >>> 0);
    this.pos += 4;
    return this;
  }

  i32(v) {
    this.room(4);
    this.view.setInt32(this.pos, v);
    this.pos += 4;
    return this;
  }

  /** A 64-bit unsigned number; exact up to 2^53, far past any file a phone holds. */
  u64(v) {
    return this.u32(Math.floor(v / TWO_32)).u32(v % TWO_32);
  }

  type(fourcc) {
    for (let i = 0; i < 4; i += 1) this.u8(fourcc.charCodeAt(i));
    return this;
  }

  bytes(b) {
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  done() {
    return this.buf.slice(0, this.pos);
  }
}

/** A box of `type` around the payload parts (Uint8Arrays), with a 64-bit size when needed. */
export function box(type, ...payload) {
  const inner = payload.reduce((n, p) => n + p.length, 0);
  const large = inner + 8 > 0xffffffff;
  const w = new Writer(inner + (large ? 16 : 8));
  if (large)
    w.u32(1)
      .type(type)
      .u64(inner + 16);
  else w.u32(inner + 8).type(type);
  for (const p of payload) w.bytes(p);
  return w.done();
}

/** A full box: version and flags, then the payload. */
export function fullBox(type, version, flags, ...payload) {
  return box(type, new Writer(4).u8(version).u24(flags).done(), ...payload);
}

/** The header of a box read from `bytes` at `pos`: {type, size, header} or null. */
export function boxHeader(bytes, pos, end = bytes.length) {
  if (pos + 8 > end) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let size = view.getUint32(pos);
  const type = LATIN1(bytes.subarray(pos + 4, pos + 8));
  let header = 8;
  if (size === 1) {
    if (pos + 16 > end) return null;
    size = view.getUint32(pos + 8) * TWO_32 + view.getUint32(pos + 12);
    header = 16;
  } else if (size === 0) {
    size = end - pos;
  }
  if (size < header) return null;
  return { type, size, header };
}

/** The child boxes of `bytes[start:end]`: [{type, start, end, header}], stopping at damage. */
export function children(bytes, start, end) {
  const out = [];
  let pos = start;
  while (pos < end) {
    const h = boxHeader(bytes, pos, end);
    if (h === null || pos + h.size > end) break;
    out.push({ type: h.type, start: pos, end: pos + h.size, header: h.header });
    pos += h.size;
  }
  return out;
}

/** The concatenation of byte arrays. */
export function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/** Run-length entries [[count, value], ...] of a sequence of numbers. */
export function runs(values) {
  const out = [];
  for (const v of values) {
    const last = out[out.length - 1];
    if (last && last[1] === v) last[0] += 1;
    else out.push([1, v]);
  }
  return out;
}

/** `stts`: [[count, delta], ...]. */
export function stts(entries) {
  const w = new Writer(8 + 8 * entries.length).u32(entries.length);
  for (const [count, delta] of entries) w.u32(count).u32(delta);
  return fullBox("stts", 0, 0, w.done());
}

/** `ctts`: [[count, offset], ...]; version 1 (signed) when an offset is negative. */
export function ctts(entries) {
  const signed = entries.some(([, offset]) => offset < 0);
  const w = new Writer(8 + 8 * entries.length).u32(entries.length);
  for (const [count, offset] of entries) w.u32(count).i32(offset);
  return fullBox("ctts", signed ? 1 : 0, 0, w.done());
}

/** `stss` from 0-based keyframe indices. */
export function stss(indices) {
  const w = new Writer(8 + 4 * indices.length).u32(indices.length);
  for (const i of indices) w.u32(i + 1);
  return fullBox("stss", 0, 0, w.done());
}

/** `stsz` from each sample's size. */
export function stsz(sizes) {
  const w = new Writer(12 + 4 * sizes.length).u32(0).u32(sizes.length);
  for (const s of sizes) w.u32(s);
  return fullBox("stsz", 0, 0, w.done());
}

/** `stsc` from chunks [{samples, description}] (description 1-based), run-length coded. */
export function stsc(chunks) {
  const entries = [];
  chunks.forEach((c, i) => {
    const last = entries[entries.length - 1];
    if (!last || last[1] !== c.samples || last[2] !== c.description) {
      entries.push([i + 1, c.samples, c.description]);
    }
  });
  const w = new Writer(8 + 12 * entries.length).u32(entries.length);
  for (const [first, n, d] of entries) w.u32(first).u32(n).u32(d);
  return fullBox("stsc", 0, 0, w.done());
}

/** `stco`, or `co64` when `large`, from chunk offsets. */
export function chunkOffsets(offsets, large) {
  const w = new Writer(8 + (large ? 8 : 4) * offsets.length).u32(offsets.length);
  for (const o of offsets) {
    if (large) w.u64(o);
    else w.u32(o);
  }
  return fullBox(large ? "co64" : "stco", 0, 0, w.done());
}

/** The header of an `mdat` holding `payload` bytes (16 bytes with a 64-bit size when needed). */
export function mdatHeader(payload) {
  if (payload + 8 <= 0xffffffff)
    return new Writer(8)
      .u32(payload + 8)
      .type("mdat")
      .done();
  return new Writer(16)
    .u32(1)
    .type("mdat")
    .u64(payload + 16)
    .done();
}
