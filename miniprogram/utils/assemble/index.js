// Generated from src/beatsync/web/assemble/index.js by scripts/assemble-sync.js:
// edit that file, then run `npm run assemble-sync`.

// Audio-first client assembly, shared by the web page and the mini-program (which gets a
// CommonJS copy of these files: miniprogram/scripts/assemble-sync.js). See
// docs/client-assembly.md.

const { MediaError } = require("./boxes.js");
const { extractAudio, manifestOf } = require("./extract.js");
const { assemble, pictureGroups } = require("./output.js");
const {
  blobReader,
  bytesReader,
  eachPiece,
  groupBlob,
  partsBlob,
  partsBytes,
  partsSize,
  rangesOf,
  sliceOf,
} = require("./parts.js");

module.exports = { MediaError, extractAudio, manifestOf, assemble, pictureGroups, blobReader, bytesReader, eachPiece, groupBlob, partsBlob, partsBytes, partsSize, rangesOf, sliceOf };
