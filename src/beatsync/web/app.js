// The page: two upload slots, the start button, the job being followed, the recent jobs and the
// language switch. Every piece draws itself from data with textContent; nothing user-given ever
// becomes markup.

import { api, ApiError, ensureSession, mark } from "./api.js";
import { applyStatic, getLang, onLangChange, setLang, t } from "./i18n.js";
import { isTerminal, JobView } from "./job.js";
import { RecentJobs } from "./recent.js";
import { UploadSlot } from "./slot.js";

const JOB_KEY = "beatsync.job";

const startButton = document.getElementById("start");
const startHint = document.getElementById("start-hint");
const alertBox = document.getElementById("alert");
let starting = false;

function remember(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    // Without storage the page forgets the job on reload; nothing else changes.
  }
}

function recall(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

function reveal(element) {
  element.scrollIntoView({ behavior: reducedMotion.matches ? "auto" : "smooth", block: "start" });
}

/** Show a refusal in plain words, its code in small print. */
function showError(error) {
  if (error?.name === "AbortError") return;
  const known = error instanceof ApiError;
  alertBox.querySelector("[data-role=message]").textContent = known
    ? error.message
    : t("error.unknown");
  alertBox.querySelector("[data-role=code]").textContent = known
    ? t("error.code", { code: error.code })
    : "";
  alertBox.hidden = false;
  if (!known) console.warn(error);
}

function hideError() {
  alertBox.hidden = true;
}

alertBox.querySelector("[data-role=close]").addEventListener("click", hideError);

const slots = {};
for (const card of document.querySelectorAll(".picker")) {
  const slot = new UploadSlot(card, { onChange: updateStart });
  slots[slot.kind] = slot;
}

const jobView = new JobView({
  onJob(job) {
    recent.track(job);
    updateStart();
  },
  onCreated(job) {
    remember(JOB_KEY, job.id);
    recent.track(job);
    updateStart();
    reveal(jobView.section);
  },
  showError,
});

const recent = new RecentJobs({
  onOpen: openJob,
  onDeleted(id) {
    if (jobView.job?.id === id) {
      jobView.clear();
      remember(JOB_KEY, null);
      recent.track(null);
    }
    updateStart();
  },
  showError,
});

function running() {
  return Boolean(jobView.job && !isTerminal(jobView.job));
}

function updateStart() {
  const ready = slots.dance.ready && slots.bgm.ready;
  startButton.disabled = !ready || running() || starting;
  let hint = "start.hint";
  if (running()) hint = "start.busy";
  else if (ready) hint = "start.ready";
  startHint.dataset.i18n = hint;
  startHint.textContent = t(hint);
}

startButton.addEventListener("click", async () => {
  if (startButton.disabled) return;
  hideError();
  starting = true;
  updateStart();
  try {
    const dance = slots.dance;
    let job;
    let local = dance.local;
    mark("start");
    try {
      job = await createJob(dance, local);
    } catch (error) {
      // The service could not use the sound and tables alone (a file it reads differently
      // than this page): send the whole video instead and start again.
      if (!local || !(error instanceof ApiError) || error.code !== "INVALID_MANIFEST") throw error;
      console.warn(error);
      await dance.choose(local.file, { serverReason: "refused" });
      if (!dance.ready) return;
      local = null;
      job = await createJob(dance, null);
    }
    mark("created");
    remember(JOB_KEY, job.id);
    jobView.follow(job, { local });
    recent.track(job);
    reveal(jobView.section);
  } catch (error) {
    showError(error);
  } finally {
    starting = false;
    updateStart();
  }
});

/**
 * Create the job: audio-first with the manifest when `local` holds the video. No pictures go
 * with it: the job asks for the few it reads (around the cut's edges) while it runs.
 */
async function createJob(dance, local) {
  if (!local) return api.createJob(dance.uploadId, slots.bgm.uploadId, {});
  return api.createJob(dance.uploadId, slots.bgm.uploadId, {}, { video_manifest: local.manifest });
}

async function openJob(id) {
  hideError();
  try {
    const job = await api.job(id);
    remember(JOB_KEY, job.id);
    jobView.follow(job);
    recent.track(job);
    reveal(job.status === "succeeded" ? jobView.resultSection : jobView.section);
  } catch (error) {
    showError(error);
  }
}

document.getElementById("again").addEventListener("click", () => {
  hideError();
  jobView.clear();
  remember(JOB_KEY, null);
  recent.track(null);
  for (const slot of Object.values(slots)) slot.reset();
  updateStart();
  reveal(document.getElementById("pick"));
  document.getElementById("dance-input").focus({ preventScroll: true });
});

const langButtons = document.querySelectorAll("[data-lang]");

function drawLangButtons() {
  for (const button of langButtons) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === getLang()));
  }
}

for (const button of langButtons) {
  button.addEventListener("click", () => setLang(button.dataset.lang));
}

onLangChange(() => {
  drawLangButtons();
  for (const slot of Object.values(slots)) slot.render();
  updateStart();
  recent.render();
  jobView.relocalize();
  if (!alertBox.hidden) hideError();
});

// A file dropped beside a drop zone would make the browser leave the page to show it.
for (const type of ["dragover", "drop"]) {
  window.addEventListener(type, (event) => {
    if (!event.target.closest?.(".picker")) event.preventDefault();
  });
}

async function init() {
  applyStatic(document);
  drawLangButtons();
  updateStart();
  try {
    await ensureSession();
  } catch (error) {
    showError(error);
    return;
  }
  await Promise.all([
    recent.refresh(),
    ...Object.values(slots).map((slot) => slot.restore()),
  ]);
  const saved = recall(JOB_KEY);
  if (saved && !jobView.job) {
    try {
      jobView.follow(await api.job(saved));
    } catch {
      remember(JOB_KEY, null);
    }
  }
  updateStart();
  document.body.dataset.ready = "true";
}

init();
