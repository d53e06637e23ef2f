// "My recent jobs": the owner's last jobs, newest first, each with its status, time and
// confidence, to open again or delete.

import { api } from "./api.js";
import { formatDateTime, formatPercent, t } from "./i18n.js";

const LIMIT = 10;

export class RecentJobs {
  constructor({ onOpen, onDeleted, showError }) {
    this.onOpen = onOpen;
    this.onDeleted = onDeleted;
    this.showError = showError;
    this.items = [];
    this.currentId = null;
    this.list = document.getElementById("recent-list");
    this.empty = document.getElementById("recent-empty");
    this.loading = null;
    document.getElementById("recent-refresh").addEventListener("click", () => this.refresh());
  }

  async refresh() {
    if (this.loading) return this.loading;
    this.loading = (async () => {
      try {
        const page = await api.jobs(LIMIT);
        this.items = page.items ?? [];
        this.render();
      } catch (error) {
        this.showError(error);
      } finally {
        this.loading = null;
      }
    })();
    return this.loading;
  }

  /** Mark the job being shown, and update its row when it changes. */
  track(job) {
    this.currentId = job?.id ?? null;
    if (job) {
      const index = this.items.findIndex((item) => item.id === job.id);
      if (index >= 0) this.items[index] = job;
      else this.items = [job, ...this.items].slice(0, LIMIT);
    }
    this.render();
  }

  render() {
    this.empty.hidden = this.items.length > 0;
    this.list.replaceChildren(...this.items.map((job) => this.#row(job)));
  }

  #row(job) {
    const row = document.createElement("li");
    row.className = "recent-item";
    row.dataset.jobId = job.id;
    row.dataset.status = job.status;
    if (job.id === this.currentId) row.setAttribute("aria-current", "true");

    const badge = document.createElement("span");
    badge.className = "badge";
    badge.dataset.status = job.status;
    badge.textContent = t(`status.${job.status}`);

    const body = document.createElement("div");
    body.className = "recent-body";
    const when = document.createElement("p");
    when.className = "recent-when";
    when.textContent = formatDateTime(job.created_at);
    const detail = document.createElement("span");
    detail.className = "recent-detail";
    if (job.status === "succeeded" && job.result) {
      detail.textContent = t("recent.confidence", {
        confidence: formatPercent(Number(job.result.confidence) || 0),
      });
    } else if (job.status === "failed" && job.error) {
      detail.textContent = job.error.message;
    } else if (job.status === "running" && job.stage && job.stage !== "done") {
      detail.textContent = `${t(`stage.${job.stage}`)} · ${formatPercent(job.progress || 0)}`;
    }
    const line = document.createElement("p");
    line.className = "recent-line";
    line.append(badge, detail);
    body.append(when, line);

    const actions = document.createElement("div");
    actions.className = "recent-actions";
    if (job.id === this.currentId) {
      const shown = document.createElement("span");
      shown.className = "recent-shown";
      shown.textContent = t("recent.current");
      actions.append(shown);
    } else {
      const open = document.createElement("button");
      open.type = "button";
      open.className = "button button-chip";
      open.textContent = t("recent.open");
      open.setAttribute("aria-label", `${t("recent.open")} ${when.textContent}`);
      open.addEventListener("click", () => this.onOpen(job.id));
      actions.append(open);
    }
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "icon-button icon-danger";
    remove.setAttribute("aria-label", `${t("recent.delete")} ${when.textContent}`);
    remove.textContent = "×";
    remove.addEventListener("click", () => this.#delete(job.id));
    actions.append(remove);

    row.append(body, actions);
    return row;
  }

  async #delete(id) {
    try {
      await api.remove(id);
      this.items = this.items.filter((item) => item.id !== id);
      this.render();
      this.onDeleted(id);
      // Deleting a running job cancels it first; the list shows what the server kept.
      await this.refresh();
    } catch (error) {
      this.showError(error);
    }
  }
}
