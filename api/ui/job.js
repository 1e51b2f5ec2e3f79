// #/jobs/<id>: one job's document, its history as a timeline, a cancel button and, once
// it has finished, a re-run button; kept live by the job's own transition stream.

import { canWrite } from "./access.js";
import { api, ApiError, rerunJob } from "./client.js";
import { errorBox, h, jobHref, jsonBlock, replace, stateBadge, time, typeHref } from "./dom.js";
import { follow, transitions } from "./sse.js";
import { isCancellable, isSucceeded, isTerminal } from "./states.js";

export async function jobPage(view, jobId, { signal, live }) {
  const path = `/jobs/${encodeURIComponent(jobId)}`;
  let job = await api(path, { signal });
  let lastEvent = null;
  let refreshing = null;
  let again = false;

  const notice = h("div", { class: "notices", id: "job-notice" });
  const cancelButton = h("button", { type: "button", id: "cancel-job", class: "danger" }, "Cancel job");
  const rerunButton = h("button", { type: "button", id: "rerun-job", title: "Submit a new job with this type, payload, priority and key" }, "Re-run");
  const body = h("div", { id: "job-body" });
  replace(
    view,
    h("div", { class: "page-head" }, h("h1", {}, "Job ", h("span", { class: "mono" }, job.id)), cancelButton, rerunButton),
    notice,
    body,
  );

  function render() {
    const finished = isTerminal(job.state);
    cancelButton.disabled = !isCancellable(job.state) || job.cancel_requested;
    cancelButton.textContent = job.cancel_requested && !finished ? "Cancelling…" : "Cancel job";
    cancelButton.hidden = !isCancellable(job.state) || !canWrite();
    rerunButton.hidden = !finished || !canWrite();
    if (finished) notice.querySelector("[data-pending]")?.remove(); // "cancel requested" is over
    replace(body, summary(job), sections(job));
    view.dataset.state = job.state;
  }

  async function refresh() {
    if (refreshing) {
      again = true;
      return refreshing;
    }
    refreshing = (async () => {
      do {
        again = false;
        const fresh = await api(path, { signal });
        if ((fresh.history?.length ?? 0) >= (job.history?.length ?? 0)) {
          job = fresh;
          render();
        }
      } while (again);
    })()
      .catch((error) => error.name !== "AbortError" && replace(notice, errorBox(error)))
      .finally(() => {
        refreshing = null;
      });
    return refreshing;
  }

  cancelButton.addEventListener("click", async () => {
    cancelButton.disabled = true;
    notice.replaceChildren();
    try {
      job = await api(path, { method: "DELETE", signal });
      if (!isTerminal(job.state)) {
        replace(
          notice,
          h("div", { class: "notice", role: "status", dataset: { pending: "cancel" } }, "Cancel requested: the worker is stopping the job."),
        );
      }
    } catch (error) {
      if (error.name === "AbortError") return;
      if (error instanceof ApiError && error.status === 409 && error.body?.id) {
        job = error.body;
        replace(notice, h("div", { class: "notice", role: "status" }, `Too late to cancel: the job is ${job.state}.`));
      } else {
        replace(notice, errorBox(error));
      }
    }
    render();
  });

  rerunButton.addEventListener("click", async () => {
    rerunButton.disabled = true;
    notice.replaceChildren();
    try {
      const fresh = await rerunJob(job.id, { signal });
      location.hash = jobHref(fresh.id);
    } catch (error) {
      if (error.name === "AbortError") return;
      rerunButton.disabled = false;
      replace(notice, errorBox(error));
    }
  });

  render();
  if (isTerminal(job.state)) {
    live("ended");
    return;
  }
  // The stream replays the job's history first; what the page already shows is skipped.
  // Progress events (no id) carry what changes between transitions.
  const onTransition = transitions((event) => {
    lastEvent = event;
    if (event.seq > (job.history?.length ?? 0)) refresh();
  });
  follow(`${path}/events?progress=true`, {
    signal,
    onEvent: (event) => {
      if (event.type === "progress") onProgress(JSON.parse(event.data));
      else onTransition(event);
    },
    onStatus: live,
    finished: () => isTerminal(lastEvent?.state ?? job.state),
  });

  function onProgress(status) {
    if (isTerminal(job.state) || status.job_id !== job.id) return;
    job = { ...job, progress: status.progress, cancel_requested: status.cancel_requested };
    render();
  }
}

function row(label, ...value) {
  return [h("dt", {}, label), h("dd", {}, ...value)];
}

function summary(job) {
  const progress = job.progress;
  const fraction = typeof progress?.fraction === "number" ? progress.fraction : null;
  return h(
    "dl",
    { class: "summary", id: "job-summary" },
    row("State", stateBadge(job.state), job.cancel_requested && !isTerminal(job.state) ? " cancel requested" : ""),
    row("Type", h("a", { href: typeHref(job.type) }, job.type)),
    row("Attempts", h("span", { id: "job-attempts" }, `${job.attempts} of ${job.max_attempts}`)),
    row("Priority", h("span", { id: "job-priority" }, String(job.priority ?? 0))),
    job.concurrency_key ? row("Concurrency key", h("code", { id: "job-key" }, job.concurrency_key)) : null,
    job.not_before ? row("Not before", h("span", { id: "job-not-before" }, time(job.not_before))) : null,
    job.waiting && !isTerminal(job.state) ? row("Waiting for", h("span", { id: "job-waiting", dataset: { waiting: job.waiting } }, waitingFor(job))) : null,
    job.rerun_of ? row("Re-run of", h("a", { id: "job-rerun-of", class: "mono", href: jobHref(job.rerun_of) }, job.rerun_of)) : null,
    job.schedule ? row("Schedule", h("a", { id: "job-schedule", href: `#/schedules/${encodeURIComponent(job.schedule)}` }, job.schedule)) : null,
    row(
      "Progress",
      progress
        ? [
            fraction !== null ? h("progress", { max: 1, value: fraction }) : null,
            fraction !== null ? ` ${Math.round(fraction * 100)}%` : null,
            progress.message ? h("span", { class: "progress-message" }, ` ${progress.message}`) : null,
          ]
        : h("span", { class: "muted" }, "—"),
    ),
    row("Created", time(job.created_at)),
    row("Started", time(job.started_at)),
    row("Finished", time(job.finished_at)),
    row("Updated", time(job.updated_at)),
  );
}

const WAITING = {
  time: "its time",
  concurrency: "a concurrency slot",
  rate: "its turn under the rate limit",
  paused: "its type to be resumed",
  woken: "a worker (a slot has just freed)",
};

/** Why a job that could start has not: what the store says it waits for. */
function waitingFor(job) {
  const reason = WAITING[job.waiting] ?? job.waiting;
  return job.waiting === "time" && job.not_before ? [reason, " (", time(job.not_before), ")"] : reason;
}

function sections(job) {
  const error = job.error;
  return [
    h("section", { id: "job-payload" }, h("h2", {}, "Payload"), jsonBlock(job.payload)),
    isSucceeded(job.state) || job.result !== null
      ? h("section", { id: "job-result" }, h("h2", {}, "Result"), jsonBlock(job.result))
      : null,
    error
      ? h(
          "section",
          { id: "job-error" },
          h("h2", {}, "Error"),
          h(
            "p",
            { class: "error-line" },
            h("strong", {}, error.type),
            error.retryable ? " (retryable)" : " (not retried)",
          ),
          h("pre", { class: "error-message" }, error.message),
        )
      : null,
    h(
      "section",
      { id: "job-history" },
      h("h2", {}, "History"),
      h(
        "ol",
        { class: "timeline" },
        (job.history ?? []).map((entry, index) =>
          h(
            "li",
            { dataset: { state: entry.state, seq: index + 1 } },
            stateBadge(entry.state),
            " ",
            time(entry.at),
            entry.attempt ? h("span", { class: "attempt" }, ` attempt ${entry.attempt}`) : null,
            entry.reason ? h("span", { class: "reason" }, ` — ${entry.reason}`) : null,
          ),
        ),
      ),
    ),
  ];
}
