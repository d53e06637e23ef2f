// The service's thumbnail of a decoded picture: the visible frame before rotation, squeezed to
// 96×54 by area averaging (each cell the mean of the pixels it covers, partly covered pixels
// weighted by the part), grey full-range luma (BT.601 weights) from the RGBA that WeChat's
// VideoDecoder gives. See docs/audio-first.md, "Thumbnail format".

const THUMB_WIDTH = 96;
const THUMB_HEIGHT = 54;
const THUMB_BYTES = THUMB_WIDTH * THUMB_HEIGHT;

/** For each of `n` cells over `size` pixels: [pixel, weight] pairs it covers. */
function cells(size, n) {
  const step = size / n;
  const out = [];
  for (let i = 0; i < n; i += 1) {
    const start = i * step;
    const end = start + step;
    const pairs = [];
    // A cell edge a rounding error past a pixel boundary does not reach into the next pixel.
    for (let p = Math.floor(start + 1e-9); p < end - 1e-9; p += 1) {
      pairs.push([p, Math.min(end, p + 1) - Math.max(start, p)]);
    }
    out.push(pairs);
  }
  return out;
}

/**
 * 96×54 grey bytes of an RGBA picture.
 * @param {ArrayBuffer|Uint8Array} rgba width × height × 4 bytes, rows top to bottom
 */
function thumbnailOfRgba(rgba, width, height) {
  const bytes = rgba instanceof Uint8Array ? rgba : new Uint8Array(rgba);
  const xs = cells(width, THUMB_WIDTH);
  const ys = cells(height, THUMB_HEIGHT);
  const area = (width / THUMB_WIDTH) * (height / THUMB_HEIGHT);
  const out = new Uint8Array(THUMB_BYTES);
  for (let ty = 0; ty < THUMB_HEIGHT; ty += 1) {
    for (let tx = 0; tx < THUMB_WIDTH; tx += 1) {
      let sum = 0;
      for (const [y, wy] of ys[ty]) {
        const row = y * width * 4;
        for (const [x, wx] of xs[tx]) {
          const p = row + x * 4;
          sum += (0.299 * bytes[p] + 0.587 * bytes[p + 1] + 0.114 * bytes[p + 2]) * wx * wy;
        }
      }
      out[ty * THUMB_WIDTH + tx] = Math.max(0, Math.min(255, Math.round(sum / area)));
    }
  }
  return out;
}

module.exports = { THUMB_BYTES, THUMB_HEIGHT, THUMB_WIDTH, thumbnailOfRgba };
