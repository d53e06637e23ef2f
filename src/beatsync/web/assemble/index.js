// Audio-first client assembly, shared by the web page and the mini-program (which gets a
// CommonJS copy of these files: miniprogram/scripts/assemble-sync.js). See
// docs/client-assembly.md.

export { MediaError } from "./boxes.js";
export { extractAudio, manifestOf } from "./extract.js";
export { assemble, pictureGroups } from "./output.js";
export {
  blobReader,
  bytesReader,
  eachPiece,
  groupBlob,
  partsBlob,
  partsBytes,
  partsSize,
  rangesOf,
  sliceOf,
} from "./parts.js";
