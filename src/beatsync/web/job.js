// Following one job: its stages and overall bar while it runs (server-sent events, else polling;
// the poll answer is the truth), then its result — player, plot, confidence, offset, drift, cut,
// the pieces of an edit, download — and the ways to redo it: another candidate, a nudge in milliseconds, a retry.

import { api, API, ApiError, currentToken, mark } from "./api.js";
import { formatBytes, formatClock, formatPercent, formatSigned, t } from "./i18n.js";

export const STAGES = ["probe", "decode", "align", "trim", "render"];
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const POLL_MS = 1000;
const POLL_MAX_MS = 5000;
// A fixed mapping equal to an answer within this (seconds) was made from that answer.
const SAME_MAPPING_S = 1e-6;
// A nudge left unchanged this long is rendered before "Apply" is pressed (audio-first): its
// track is then often made and fetched by the time it is applied, which only assembles it.
const NUDGE_SETTLE_MS = 700;
const AHEAD_POLL_MS = 250;

export function isTerminal(job) {
  return TERMINAL.has(job?.status);
}

function $(id) {
  return document.getElementById(id);
}

function confidenceLevel(value) {
  if (value >= 0.7) return "high";
  if (value >= 0.4) return "medium";
  return "low";
}

export class JobView {
  /**
   * @param {object} hooks onJob(job) after every change, onCreated(job) when this view started
   *   a new job, showError(error) for refusals of the actions offered here.
   */
  constructor({ onJob, onCreated, showError }) {
    this.onJob = onJob;
    this.onCreated = onCreated;
    this.showError = showError;
    this.job = null;
    this.source = null;
    this.generation = 0;
    this.pollTimer = 0;
    this.peak = { id: null, progress: 0, stage: -1 };
    this.ancestors = new Map();
    this.acting = false;
    // Audio-first: the class video kept in this page, the jobs made from it (a variant of one
    // is made from it too), the frame requests already answered, the assembled result's URL.
    this.local = null;
    this.localIds = new Set();
    this.answered = new Set();
    this.resultUrl = null;
    this.assembledFor = null;
    // The nudge being rendered ahead of "Apply": {baseId, value, id, status, owned, reading}.
    this.ahead = null;
    this.settleTimer = 0;
    this.pathNote = $("result-path");
    this.jobNote = $("job-path");
    this.section = $("job");
    this.bar = $("job-progress");
    this.statusLine = $("job-status");
    this.errorBox = $("job-error");
    this.resultSection = $("result");
    this.video = $("result-video");
    this.plot = $("plot");
    this.nudgeField = $("nudge-ms");
    this.#wire();
    this.labelNudges();
  }

  #wire() {
    $("share").addEventListener("click", () => this.#share());
    $("cancel").addEventListener("click", () => this.#act((id) => api.cancel(id)));
    // A retried job keeps its id and starts again from nothing.
    $("retry").addEventListener("click", () =>
      this.#act((id) => api.retry(id), { creates: true, restart: true }),
    );
    for (const button of document.querySelectorAll("[data-nudge]")) {
      button.addEventListener("click", () => {
        const step = Number(button.dataset.nudge);
        const now = Number(this.nudgeField.value) || 0;
        this.nudgeField.value = String(Math.max(-2000, Math.min(2000, now + step)));
        this.#nudgeChanged();
      });
    }
    this.nudgeField.addEventListener("input", () => this.#nudgeChanged());
    $("nudge-apply").addEventListener("click", () => {
      const value = Number(this.nudgeField.value);
      if (!Number.isFinite(value)) {
        this.nudgeField.focus();
        return;
      }
      clearTimeout(this.settleTimer);
      const ahead = this.#aheadFor(value);
      if (ahead) {
        this.ahead = null; // applied: it is the shown job now, no longer to be dropped
        this.#act(() => api.job(ahead.id), { creates: true });
        return;
      }
      this.#act(
        async (id) => {
          await this.#dropAhead();
          return api.render(id, { nudge_ms: value });
        },
        { creates: true },
      );
    });
  }

  #nudgeChanged() {
    clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => this.#renderAhead(), NUDGE_SETTLE_MS);
  }

  /** The nudge rendered ahead for `value` from the shown job, if it may be applied. */
  #aheadFor(value) {
    const ahead = this.ahead;
    if (!ahead?.id || ahead.baseId !== this.job?.id || ahead.value !== value) return null;
    return ahead.status === "failed" || ahead.status === "canceled" ? null : ahead;
  }

  /**
   * Render the nudge in the field before it is applied: an audio-first answer's nudge is a new
   * audio track only (a few CPU-seconds, a few MB), and waiting for it after "Apply" is most of
   * what a person waits for. One at a time; a changed value drops the one before.
   */
  async #renderAhead() {
    const job = this.job;
    const value = Number(this.nudgeField.value);
    const local = job ? this.#localFor(job) : null;
    if (!local || job.status !== "succeeded" || !job.result?.assembly || this.acting) return;
    if (!Number.isFinite(value) || value === (Number(job.options?.nudge_ms) || 0)) {
      await this.#dropAhead();
      return;
    }
    if (this.ahead?.baseId === job.id && this.ahead.value === value) return;
    await this.#dropAhead();
    const ahead = { baseId: job.id, value, id: null, status: "queued", owned: false };
    ahead.reading = null; // the job read in flight, which a drop waits for before deleting
    this.ahead = ahead;
    let created;
    try {
      created = await api.render(job.id, { nudge_ms: value });
    } catch {
      // A quota or the rate limit: "Apply" asks again and shows why.
      if (this.ahead === ahead) this.ahead = null;
      return;
    }
    // A finished twin from the result cache is a job the person may have had before: kept.
    ahead.owned = !isTerminal(created);
    ahead.id = created.id;
    ahead.status = created.status;
    if (this.ahead !== ahead) {
      if (ahead.owned) api.remove(created.id).catch(() => {});
      return;
    }
    let current = created;
    while (this.ahead === ahead && !isTerminal(current)) {
      await new Promise((resolve) => setTimeout(resolve, AHEAD_POLL_MS));
      if (this.ahead !== ahead) return;
      // Kept so that a drop deletes the job only once this read has its answer.
      ahead.reading = api.job(ahead.id);
      try {
        current = await ahead.reading;
      } catch {
        return;
      } finally {
        ahead.reading = null;
      }
      ahead.status = current.status;
    }
    if (this.ahead === ahead && current.status === "succeeded" && current.result?.assembly) {
      local.prefetch?.(current.result.assembly);
    }
  }

  /** Forget the nudge rendered ahead: its job and files go (it was never shown). */
  async #dropAhead() {
    const ahead = this.ahead;
    if (!ahead) return;
    this.ahead = null;
    this.local?.forget?.();
    await ahead.reading?.catch(() => {});
    if (ahead.id && ahead.owned) await api.remove(ahead.id).catch(() => {});
  }

  async #act(call, { creates = false, restart = false } = {}) {
    // One action at a time: a double tap must not queue the same render twice.
    if (!this.job || this.acting) return;
    this.acting = true;
    try {
      const answer = await call(this.job.id);
      const job = answer?.id ? answer : await api.job(this.job.id);
      if (this.localIds.has(this.job.id)) this.localIds.add(job.id);
      this.follow(job, { restart });
      if (creates && job.id) this.onCreated(job);
      else this.onJob(job);
    } catch (error) {
      this.showError(error);
    } finally {
      this.acting = false;
    }
  }

  /** Show `job` and keep it up to date until it finishes (`restart`: it begins anew). */
  follow(job, { restart = false, local = null } = {}) {
    this.stop();
    if (this.ahead && this.ahead.baseId !== job.id) this.#dropAhead();
    if (local) {
      this.local = local;
      this.localIds = new Set([job.id]);
      // While the job runs: the assembly's slices of the file, made ahead.
      local.prepareSlices?.().catch((error) => console.warn(error));
    }
    if (restart || this.peak.id !== job.id) this.peak = { id: job.id, progress: 0, stage: -1 };
    this.#update(job);
    if (!isTerminal(job)) this.#subscribe(job);
  }

  stop() {
    this.generation += 1; // a ticket still on its way opens nothing
    this.source?.close();
    this.source = null;
    clearTimeout(this.pollTimer);
    this.pollTimer = 0;
  }

  /** Forget the job: hide progress and result (a new pair of files is being chosen). */
  clear() {
    this.stop();
    clearTimeout(this.settleTimer);
    this.#dropAhead();
    this.job = null;
    this.local = null;
    this.localIds = new Set();
    this.section.hidden = true;
    this.resultSection.hidden = true;
    this.video.pause();
    this.video.removeAttribute("src");
    this.video.load();
    this.#setResultUrl(null);
  }

  #setResultUrl(blob) {
    this.#offerShare(null);
    if (this.resultUrl) URL.revokeObjectURL(this.resultUrl);
    this.resultUrl = blob ? URL.createObjectURL(blob) : null;
    return this.resultUrl;
  }

  /** The class video this page holds for `job`, if the job was made from it. */
  #localFor(job) {
    return this.local && this.localIds.has(job.id) ? this.local : null;
  }

  /** Answer the job's request for frames with thumbnails decoded here. */
  async #answerFrames(job) {
    const request = job.frames_request;
    const local = this.#localFor(job);
    if (!request || !local || !job.links?.frames || this.answered.has(request.id)) return;
    this.answered.add(request.id);
    this.#note(this.jobNote, "path.frames");
    mark("frames-asked");
    try {
      const thumbnails = await local.frameThumbnails(request.samples);
      mark("frames-decoded");
      await api.answerFrames(job.links.frames, request.id, thumbnails);
      mark("frames-sent");
    } catch (error) {
      // The job goes on without them after a while (its cut then ignores the picture).
      if (!(error instanceof ApiError && error.code === "FRAMES_NOT_REQUESTED")) console.warn(error);
    } finally {
      this.#note(this.jobNote, null);
    }
  }

  #note(element, key, vars) {
    if (!element) return;
    element.hidden = !key;
    element.dataset.key = key ?? "";
    element.textContent = key ? t(key, vars) : "";
    element.vars = vars;
  }

  /** An audio-first result: fetch its audio track and put the video together here. */
  async #assemble(job) {
    const assembly = job.result.assembly;
    const local = this.#localFor(job);
    const download = $("download");
    if (!local) {
      download.hidden = true;
      this.#offerShare(null);
      this.#note(this.pathNote, "path.missing");
      return;
    }
    if (this.assembledFor === job.id) return;
    this.assembledFor = job.id;
    download.hidden = true;
    this.#offerShare(null);
    this.resultSection.dataset.assembled = "";
    this.#note(this.pathNote, "path.assembling");
    mark("succeeded");
    try {
      const { blob } = await local.assemble(assembly);
      mark("assembled");
      if (this.job?.id !== job.id) {
        // Another job is shown now; this one is put together again if it comes back.
        if (this.assembledFor === job.id) this.assembledFor = null;
        return;
      }
      const url = this.#setResultUrl(blob);
      this.video.removeAttribute("poster");
      this.video.src = url;
      download.href = url;
      download.hidden = false;
      this.#offerShare(new File([blob], `beatsync-${job.id}.mp4`, { type: "video/mp4" }));
      this.resultSection.dataset.assembled = job.id;
      this.#note(this.pathNote, "path.assembled", { size: formatBytes(blob.size) });
    } catch (error) {
      this.assembledFor = null;
      this.#note(this.pathNote, null);
      this.showError(error);
    }
  }

  /**
   * On phones, the assembled file through the system's share sheet (to Photos, a chat...), where
   * the browser can share files; the button stays hidden elsewhere.
   */
  #offerShare(file) {
    this.shareFile = file;
    const button = $("share");
    let can = false;
    if (file && typeof navigator.canShare === "function") {
      try {
        can = navigator.canShare({ files: [file] });
      } catch {
        // Some browsers throw on a list of files instead of answering false.
      }
    }
    button.hidden = !can;
  }

  async #share() {
    const file = this.shareFile;
    if (!file) return;
    try {
      await navigator.share({ files: [file], title: file.name });
    } catch (error) {
      // Closing the share sheet is no error; anything else leaves the download link to use.
      if (error?.name !== "AbortError") console.warn(error);
    }
  }

  /** The ± buttons read as what they do to the music ("Music 10 ms later"). */
  labelNudges() {
    for (const button of document.querySelectorAll("[data-nudge]")) {
      const step = Number(button.dataset.nudge);
      const key = step < 0 ? "nudge.earlier" : "nudge.later";
      button.setAttribute("aria-label", t(key, { ms: Math.abs(step) }));
    }
  }

  /** Draw again in the current language; refetch so the server's messages follow it too. */
  async relocalize() {
    this.labelNudges();
    for (const note of [this.pathNote, this.jobNote]) {
      if (note?.dataset.key) note.textContent = t(note.dataset.key, note.vars);
    }
    if (!this.job) return;
    this.#render();
    try {
      const job = await api.job(this.job.id);
      if (job.id === this.job?.id) this.#update(job);
    } catch {
      // Keep what is shown; the next update brings the new language.
    }
  }

  #subscribe(job) {
    const id = job.id;
    if (typeof EventSource !== "function" || !currentToken()) {
      this.#poll(id, 0);
      return;
    }
    const generation = this.generation;
    api.ticket(id).then(
      (ticket) => {
        if (this.generation !== generation || this.job?.id !== id) return;
        this.#listen(id, new URL(ticket.events, window.location.href));
      },
      () => {
        if (this.generation === generation && this.job?.id === id) this.#poll(id, 0);
      },
    );
  }

  #listen(id, url) {
    const source = new EventSource(url.href);
    this.source = source;
    source.addEventListener("job", (event) => {
      if (this.source !== source) return;
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      if (isTerminal(data)) {
        this.stop();
        // The stream speaks the server's default language; the poll answer speaks ours.
        this.#poll(id, 0);
      } else {
        this.#update(data);
      }
    });
    source.addEventListener("error", () => {
      // The ticket lasts a minute: a stream that drops is not reopened with it; polling goes on.
      if (this.source !== source) return;
      this.stop();
      this.#poll(id, 0);
    });
  }

  #poll(id, failures) {
    clearTimeout(this.pollTimer);
    const delay = failures ? Math.min(POLL_MS * 2 ** failures, POLL_MAX_MS) : 0;
    this.pollTimer = setTimeout(async () => {
      if (this.job?.id !== id) return;
      let next = failures;
      try {
        const job = await api.job(id);
        if (this.job?.id !== id) return;
        this.#update(job);
        if (isTerminal(job)) return;
        next = 1;
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) return;
        next = failures + 1;
      }
      this.#poll(id, Math.max(1, next));
    }, delay);
  }

  #update(job) {
    if (job.id !== this.peak.id) return;
    const previous = this.job;
    this.job = job;
    const stage = job.status === "succeeded" ? STAGES.length : STAGES.indexOf(job.stage);
    this.peak.stage = Math.max(this.peak.stage, stage);
    const progress = job.status === "succeeded" ? 1 : Number(job.progress) || 0;
    this.peak.progress = Math.max(this.peak.progress, Math.min(1, progress));
    this.#render();
    if (job.frames_request) this.#answerFrames(job);
    const fresh = previous?.id !== job.id || previous.status !== "succeeded";
    if (job.status === "succeeded" && fresh) this.#showResult(job);
    else if (job.status !== "succeeded") this.resultSection.hidden = true;
    this.onJob(job);
  }

  #render() {
    const job = this.job;
    if (!job) return;
    const stageIndex = this.peak.stage;
    const stageName = STAGES[Math.min(stageIndex, STAGES.length - 1)] ?? "";
    this.section.hidden = false;
    this.section.dataset.status = job.status;
    this.section.dataset.stage = stageIndex >= 0 && stageIndex < STAGES.length ? stageName : "";
    this.bar.value = this.peak.progress;
    this.bar.setAttribute("aria-valuetext", formatPercent(this.peak.progress));
    for (const item of this.section.querySelectorAll("#stages li")) {
      const index = STAGES.indexOf(item.dataset.stage);
      let state = "pending";
      if (index < stageIndex) state = "done";
      else if (index === stageIndex) {
        if (job.status === "running" || job.status === "queued") state = "active";
        else if (job.status === "failed") state = "failed";
        else if (job.status === "canceled") state = "stopped";
      }
      item.dataset.state = state;
      if (state === "active") item.setAttribute("aria-current", "step");
      else item.removeAttribute("aria-current");
    }
    let line;
    if (job.status === "queued") line = t("job.queued");
    else if (job.status === "running") {
      line = t("job.running", {
        stage: stageName ? t(`stage.${stageName}`) : t("status.running"),
        percent: formatPercent(this.peak.progress),
      });
    } else line = t(`job.${job.status}`);
    this.statusLine.textContent = line;
    const error = job.status === "failed" ? job.error : null;
    this.errorBox.hidden = !error;
    this.errorBox.querySelector("[data-role=error-message]").textContent = error?.message ?? "";
    this.errorBox.querySelector("[data-role=error-code]").textContent = error
      ? t("error.code", { code: error.code })
      : "";
    $("cancel").hidden = isTerminal(job);
    $("retry").hidden = job.status !== "failed" && job.status !== "canceled";
    if (job.status === "succeeded" && !this.resultSection.hidden) this.#drawFacts(job);
  }

  #showResult(job) {
    const files = job.result?.files ?? {};
    const download = $("download");
    if (job.result?.assembly) {
      if (this.assembledFor !== job.id) {
        this.video.pause();
        this.video.removeAttribute("src");
      }
      this.#assemble(job);
    } else {
      download.hidden = false;
      this.#note(this.pathNote, null);
      this.#setResultUrl(null);
      this.resultSection.dataset.assembled = "";
    }
    if (files.video && this.video.getAttribute("src") !== files.video) {
      this.video.poster = files.poster || "";
      this.video.src = files.video;
    }
    if (files.plot) this.plot.src = files.plot;
    this.plot.hidden = !files.plot;
    if (!job.result?.assembly) download.href = files.video || "#";
    download.setAttribute("download", `beatsync-${job.id}.mp4`);
    this.nudgeField.value = String(job.options?.nudge_ms ?? 0);
    this.resultSection.hidden = false;
    this.#drawFacts(job);
  }

  #drawFacts(job) {
    const result = job.result ?? {};
    const confidence = Number(result.confidence) || 0;
    const box = $("confidence");
    box.dataset.level = confidenceLevel(confidence);
    $("confidence-value").textContent = formatPercent(confidence);
    $("confidence-words").textContent = t(`confidence.${confidenceLevel(confidence)}`);

    const mapping = result.mapping ?? {};
    const offset = $("fact-offset");
    offset.replaceChildren(
      text("strong", `${formatSigned(mapping.offset_s ?? 0, 3)} s`),
      text("small", (mapping.offset_s ?? 0) >= 0
        ? t("offset.value", { time: formatClock(mapping.offset_s, 2) })
        : t("offset.before", { time: formatClock(-mapping.offset_s / (mapping.scale || 1), 2) })),
    );
    const ppm = formatSigned(mapping.drift_ppm ?? 0, 1);
    const scale = Number(mapping.scale) || 1;
    $("fact-drift").textContent =
      Math.abs(scale - 1) > 0.002
        ? t(mapping.pitch_kept ? "drift.tempo" : "drift.speed", { ppm, scale: scale.toFixed(3) })
        : t("drift.value", { ppm });
    const cut = result.cut;
    $("fact-cut").textContent = cut
      ? t("cut.value", {
          start: formatClock(cut.start_s),
          end: formatClock(cut.end_s),
          duration: formatClock(cut.duration_s),
        })
      : "–";
    this.#drawPieces(result.pieces ?? []);
    this.#drawCandidates(job);
  }

  /** An edit of the song: each piece's stretch of the class video and where in the
   *  reference it plays from. One piece (the song as it is) shows nothing. */
  #drawPieces(pieces) {
    const row = $("fact-pieces-row");
    row.hidden = pieces.length < 2;
    if (row.hidden) return;
    const list = document.createElement("ol");
    for (const piece of pieces) {
      const from = piece.offset_s + (piece.scale || 1) * piece.start_s;
      list.append(text("li", t("pieces.item", {
        start: formatClock(piece.start_s),
        end: formatClock(piece.end_s),
        from: formatClock(from),
      })));
    }
    $("fact-pieces").replaceChildren(
      text("small", t("pieces.summary", { count: pieces.length })),
      list,
    );
  }

  /**
   * The answers a person can choose from: the search's best and its runner-ups. A job rendered
   * with a fixed mapping searched nothing, so they come from the ancestor that searched.
   */
  async #choices(job) {
    let source = job;
    for (let hops = 0; hops < 8 && source?.options?.mapping && source.parent_id; hops += 1) {
      const parentId = source.parent_id;
      source = this.ancestors.get(parentId) ?? (await api.job(parentId).catch(() => null));
      if (source) this.ancestors.set(parentId, source);
    }
    if (!source?.result || source.options?.mapping) return [];
    // The result's offset has the job's own nudge in it; the search found it without.
    const nudge = Number(source.options?.nudge_ms) || 0;
    const best = {
      kind: "best",
      index: null,
      rootId: source.id,
      offset: source.result.mapping.offset_s + nudge / 1000,
      confidence: source.result.confidence,
    };
    const others = (source.result.candidates ?? []).map((candidate) => ({
      kind: "candidate",
      index: candidate.index,
      rootId: source.id,
      offset: candidate.offset_s,
      confidence: candidate.confidence,
    }));
    return [best, ...others];
  }

  #drawCandidates(job) {
    const block = $("candidates");
    const list = $("candidate-list");
    this.#choices(job).then((choices) => {
      if (this.job?.id !== job.id) return;
      block.hidden = choices.length < 2;
      if (choices.length < 2) {
        list.replaceChildren();
        return;
      }
      const fixed = job.options?.mapping;
      const near = (choice) => Math.abs(choice.offset - fixed.offset_s) < SAME_MAPPING_S;
      // A job that searched used its best answer; a fixed one used the answer it equals.
      const chosen = fixed ? choices.findIndex(near) : 0;
      list.replaceChildren(...choices.map((choice, position) => {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "button button-chip candidate";
        button.dataset.candidate = choice.kind === "best" ? "best" : String(choice.index);
        const isCurrent = position === chosen;
        button.setAttribute("aria-pressed", String(isCurrent));
        const label = choice.kind === "best" ? "candidate.best" : "candidate.label";
        button.append(
          text("span", t(label, {
            n: position + 1,
            confidence: formatPercent(Number(choice.confidence) || 0),
          })),
          text("small", isCurrent
            ? t("candidate.current")
            : t("candidate.where", { time: formatClock(choice.offset, 2) })),
        );
        if (!isCurrent) {
          button.addEventListener("click", () => {
            // Another answer starts without the current nudge: it was meant for this one.
            const call = choice.kind === "best"
              ? () => api.render(choice.rootId, { nudge_ms: 0 })
              : (id) => api.render(id, { candidate: choice.index, nudge_ms: 0 });
            this.#act(call, { creates: true });
          });
        }
        return button;
      }));
    });
  }
}

function text(tag, content) {
  const node = document.createElement(tag);
  node.textContent = content;
  return node;
}
