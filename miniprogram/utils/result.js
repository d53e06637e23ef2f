// A finished job in words and links: how sure the match is, where the class sits in the song,
// the clock drift, the cut, the files (absolute URLs for <video>, <image> and downloadFile),
// and the other answers a person can pick ("another candidate").

const api = require("./api.js");
const { formatBytes, formatClock, formatPercent, formatSigned } = require("./format.js");

// A fixed mapping this close (seconds) to an answer was made from that answer.
const SAME_MAPPING_S = 1e-6;

function confidenceLevel(value) {
  if (value >= 0.7) return "high";
  if (value >= 0.4) return "medium";
  return "low";
}

const CONFIDENCE_WORDS = {
  high: "非常可靠，音乐已对齐。",
  medium: "基本可靠，建议听一下确认。",
  low: "不太确定，可以试试其他候选。",
};

/** The result section's data for setData (null when the job has no result). */
function resultView(job) {
  const result = job && job.result;
  if (!result) return null;
  const confidence = Number(result.confidence) || 0;
  const level = confidenceLevel(confidence);
  const mapping = result.mapping || {};
  const offset = Number(mapping.offset_s) || 0;
  const scale = Number(mapping.scale) || 1;
  const ppm = formatSigned(mapping.drift_ppm || 0, 1);
  const files = result.files || {};
  const cut = result.cut;
  const output = result.output || {};
  return {
    confidence,
    confidencePercent: formatPercent(confidence),
    confidenceLevel: level,
    confidenceWords: CONFIDENCE_WORDS[level],
    offsetValue: `${formatSigned(offset, 3)} 秒`,
    offsetText:
      offset >= 0
        ? `课堂视频从参考音乐的 ${formatClock(offset, 2)} 处开始`
        : `参考音乐从课堂视频的 ${formatClock(-offset / scale, 2)} 处开始`,
    driftText:
      Math.abs(scale - 1) > 0.002 ? `${ppm} ppm · 速度 ×${scale.toFixed(3)}` : `${ppm} ppm`,
    cutText: cut
      ? `${formatClock(cut.start_s)} – ${formatClock(cut.end_s)}（共 ${formatClock(cut.duration_s)}）`
      : "–",
    outputText: output.size_bytes
      ? `${output.width}×${output.height} · ${formatBytes(output.size_bytes)}`
      : "",
    nudgeMs: Number(job.options && job.options.nudge_ms) || 0,
    videoUrl: files.video ? api.absolute(files.video) : "",
    posterUrl: files.poster ? api.absolute(files.poster) : "",
    plotUrl: files.plot ? api.absolute(files.plot) : "",
    reportUrl: files.report ? api.absolute(files.report) : "",
  };
}

/**
 * The answers a person can choose from: the search's best and its runner-ups. A job rendered
 * with a fixed mapping searched nothing, so they come from the ancestor that searched.
 * @param {object} job
 * @param {(id: string) => Promise<object>} fetchJob how to read an ancestor (cached by caller)
 */
async function choices(job, fetchJob) {
  let source = job;
  for (
    let hops = 0;
    hops < 8 && source && source.options && source.options.mapping && source.parent_id;
    hops += 1
  ) {
    source = await fetchJob(source.parent_id).catch(() => null);
  }
  if (!source || !source.result || (source.options && source.options.mapping)) return [];
  // The result's offset has the job's own nudge in it; the search found it without.
  const nudge = Number(source.options && source.options.nudge_ms) || 0;
  const all = [
    {
      kind: "best",
      index: null,
      rootId: source.id,
      offset: source.result.mapping.offset_s + nudge / 1000,
      confidence: source.result.confidence,
    },
  ].concat(
    (source.result.candidates || []).map((candidate) => ({
      kind: "candidate",
      index: candidate.index,
      rootId: source.id,
      offset: candidate.offset_s,
      confidence: candidate.confidence,
    })),
  );
  const fixed = job.options && job.options.mapping;
  const chosen = fixed
    ? all.findIndex((choice) => Math.abs(choice.offset - fixed.offset_s) < SAME_MAPPING_S)
    : 0;
  return all.map((choice, position) => ({
    kind: choice.kind,
    index: choice.index,
    rootId: choice.rootId,
    current: position === chosen,
    label:
      choice.kind === "best"
        ? `最佳匹配 · ${formatPercent(Number(choice.confidence) || 0)}`
        : `候选 ${position + 1} · ${formatPercent(Number(choice.confidence) || 0)}`,
    where: position === chosen ? "当前" : `从 ${formatClock(choice.offset, 2)} 开始`,
  }));
}

/**
 * The render request that switches to `choice` (from choices()): the best answer is the
 * searching job rendered again without a nudge; another candidate is picked by its index.
 * Another answer starts without the current nudge: it was meant for this one.
 */
function choiceRequest(choice, currentJobId) {
  if (choice.kind === "best") return { jobId: choice.rootId, body: { nudge_ms: 0 } };
  return { jobId: currentJobId, body: { candidate: choice.index, nudge_ms: 0 } };
}

module.exports = { CONFIDENCE_WORDS, choiceRequest, choices, confidenceLevel, resultView };
