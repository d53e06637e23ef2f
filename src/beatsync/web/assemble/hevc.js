// The HEVC sample entry's tag. Apple's players refuse `hev1`; `hvc1` promises that every
// parameter set is in the sample entry, so an `hev1` entry becomes `hvc1` only when its hvcC
// carries the VPS, SPS and PPS (they are then marked complete, as FFmpeg marks them when the
// service's render tags the copy `hvc1`). The packets are never touched: parameter sets that
// are also in-band stay there, which decoders accept.

import { box, boxHeader, children, concat } from "./boxes.js";

const VISUAL_ENTRY_FIELDS = 78; // after the box header: ISO/IEC 14496-12 VisualSampleEntry
const HVCC_FIXED = 22; // hvcC bytes before numOfArrays
const PARAMETER_SETS = new Set([32, 33, 34]); // VPS, SPS, PPS

/** `hvcC` bytes with VPS/SPS/PPS arrays marked complete, or null if one of them is missing. */
export function completeHvcc(hvcc) {
  const out = new Uint8Array(hvcc);
  const h = boxHeader(out, 0);
  let pos = h.header + HVCC_FIXED;
  if (pos >= out.length) return null;
  const arrays = out[pos];
  pos += 1;
  const found = new Set();
  for (let i = 0; i < arrays; i += 1) {
    if (pos + 3 > out.length) return null;
    const type = out[pos] & 0x3f;
    const count = (out[pos + 1] << 8) | out[pos + 2];
    if (PARAMETER_SETS.has(type) && count > 0) {
      out[pos] |= 0x80;
      found.add(type);
    }
    pos += 3;
    for (let n = 0; n < count; n += 1) {
      if (pos + 2 > out.length) return null;
      pos += 2 + ((out[pos] << 8) | out[pos + 1]);
    }
  }
  return found.size === PARAMETER_SETS.size && pos <= out.length ? out : null;
}

/** A sample entry as `hvc1` when it is an `hev1` with its parameter sets; otherwise as it is. */
export function hvc1Entry(entry) {
  const h = boxHeader(entry, 0);
  if (h.type !== "hev1") return entry;
  const start = h.header + VISUAL_ENTRY_FIELDS;
  const kids = children(entry, start, entry.length);
  const hvcc = kids.find((k) => k.type === "hvcC");
  const complete = hvcc && completeHvcc(entry.subarray(hvcc.start, hvcc.end));
  if (!complete) return entry;
  const fields = entry.subarray(h.header, start);
  const rest = kids.map((k) => (k === hvcc ? complete : entry.subarray(k.start, k.end)));
  return box("hvc1", fields, ...rest);
}

/** An `stsd` box with each HEVC entry retagged by hvc1Entry. */
export function hvc1Stsd(stsd) {
  const h = boxHeader(stsd, 0);
  const start = h.header + 8; // version/flags, entry count
  const entries = children(stsd, start, stsd.length).map((k) =>
    hvc1Entry(stsd.subarray(k.start, k.end)),
  );
  return box("stsd", stsd.subarray(h.header, start), concat(entries));
}
