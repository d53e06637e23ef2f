// Runs the page's assembly module (src/beatsync/web/assemble) in Node on real files, for
// test_client_assembly.py:
//   node client_assembly.mjs extract VIDEO OUT.m4a            → prints the manifest (JSON)
//   node client_assembly.mjs assemble VIDEO AUDIO.m4a OUT.mp4 FIRST END → prints the facts
// Files are read through a {size, read} reader and written piece by piece from the parts.

import { open, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const { assemble, eachPiece, extractAudio, partsSize } = await import(
  `${here}../../src/beatsync/web/assemble/index.js`
);

async function fileReader(path) {
  const handle = await open(path);
  const { size } = await handle.stat();
  let largest = 0;
  return {
    size,
    handle,
    get largest() {
      return largest;
    },
    async read(offset, length) {
      largest = Math.max(largest, length);
      const bytes = new Uint8Array(length);
      const { bytesRead } = await handle.read(bytes, 0, length, offset);
      return bytes.subarray(0, bytesRead);
    },
  };
}

async function writeParts(parts, reader, path) {
  const out = await open(path, "w");
  try {
    await eachPiece(parts, reader, async (bytes) => {
      await out.write(bytes);
    });
  } finally {
    await out.close();
  }
}

const [command, video, ...rest] = process.argv.slice(2);
const reader = await fileReader(video);
try {
  if (command === "extract") {
    const { parts, size, manifest } = await extractAudio(reader);
    await writeParts(parts, reader, rest[0]);
    const largest = reader.largest;
    process.stdout.write(JSON.stringify({ manifest, size, parts: parts.length, largest }));
  } else if (command === "assemble") {
    const [audioPath, outPath, first, end] = rest;
    const audio = new Uint8Array(await readFile(audioPath));
    const answer = { first_sample: Number(first), end_sample: Number(end) };
    const { parts, size, facts } = await assemble(reader, audio, answer);
    if (partsSize(parts) !== size) throw new Error("the parts do not add up to the size");
    await writeParts(parts, reader, outPath);
    const largest = reader.largest;
    process.stdout.write(JSON.stringify({ facts, size, parts: parts.length, largest }));
  } else {
    throw new Error(`unknown command ${command}`);
  }
} finally {
  await reader.handle.close();
}
