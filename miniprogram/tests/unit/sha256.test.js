/**
 * @jest-environment node
 */
const crypto = require("crypto");
const { Sha256, sha256Hex } = require("../../utils/sha256.js");
const { encode, encodeText, utf8 } = require("../../utils/base64.js");

function seeded(size, seed) {
  const out = Buffer.alloc(size);
  let state = seed >>> 0;
  for (let i = 0; i < size; i += 1) {
    state = (state * 1664525 + 1013904223) >>> 0;
    out[i] = state >>> 24;
  }
  return out;
}

test("known digests (FIPS 180-4 examples)", () => {
  expect(sha256Hex(new Uint8Array(0))).toBe(
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
  expect(sha256Hex(utf8("abc"))).toBe(
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  expect(sha256Hex(utf8("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))).toBe(
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  );
});

test("every length around the block and padding edges matches Node's hash", () => {
  for (const size of [1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000]) {
    const data = seeded(size, size);
    expect(sha256Hex(data)).toBe(crypto.createHash("sha256").update(data).digest("hex"));
  }
});

test("fed in uneven pieces (ArrayBuffers, views, slices) it gives the same digest", () => {
  const data = seeded(3 * 1024 * 1024 + 17, 7);
  const hash = new Sha256();
  let at = 0;
  let step = 1;
  while (at < data.length) {
    const end = Math.min(data.length, at + step);
    const piece = data.subarray(at, end);
    // Alternate the kinds of input a file read or a request may give.
    if (step % 2)
      hash.update(piece.buffer.slice(piece.byteOffset, piece.byteOffset + piece.byteLength));
    else hash.update(piece);
    at = end;
    step = (step * 7 + 3) % 200003;
  }
  expect(hash.hex()).toBe(crypto.createHash("sha256").update(data).digest("hex"));
  expect(() => hash.update(new Uint8Array(1))).toThrow("update after digest");
});

test("UTF-8 and Base64 match Node for Chinese names, emoji and every padding", () => {
  for (const text of ["", "a", "ab", "abc", "课堂视频.mp4", "舞蹈 🎵 class.mov", "\u00e9t\u00e9"]) {
    expect(encodeText(text)).toBe(Buffer.from(text, "utf8").toString("base64"));
  }
  expect(Array.from(utf8("\ud800x"))).toEqual([0xef, 0xbf, 0xbd, 0x78]); // a lone surrogate
  expect(encode(new Uint8Array([0, 255, 128]))).toBe("AP+A");
});
