// #/jobs: the job list, filtered by state and type, a page at a time, kept live by
// the transition stream.

import { api, query } from "./client.js";
import { errorBox, h, jobHref, replace, stateBadge, time, typeHref } from "./dom.js";
import { follow, transitions } from "./sse.js";
import { allStates, isTerminal } from "./states.js";

const PAGE_SIZES = [10, 25, 50, 100];
const DEFAULT_LIMIT = 25;

function listHref(params) {
  return `#/jobs${query(params)}`;
}

/**
 * The list page for the hash parameters `params`: `state`, `type`, `limit`, and
 * `cursor`, the comma-separated cursors of the pages before this one and of this
 * one (so "newer" and the back button both work without a server-side trail).
 */
export async function jobsPage(view, params, { signal, live }) {
  const limit = PAGE_SIZES.includes(Number(params.limit)) ? Number(params.limit) : DEFAULT_LIMIT;
  const filters = { state: params.state ?? "", type: params.type ?? "" };
  const trail = (params.cursor ?? "").split(",").filter(Boolean);
  const firstPage = trail.length === 0;
  const base = { ...filters, limit: limit === DEFAULT_LIMIT ? "" : limit };

  const rows = new Map(); // job id -> {job, seq, tr}
  const fetching = new Map(); // job id -> transitions seen while its document is fetched
  let loaded = false;
  const early = [];

  const tbody = h("tbody");
  const count = h("span", { class: "muted", id: "job-count" });
  const pager = h("nav", { class: "pager", "aria-label": "pages" });
  const typeSelect = h("select", { id: "filter-type", name: "type" }, h("option", { value: "" }, "all types"));
  const stateSelect = h(
    "select",
    { id: "filter-state", name: "state" },
    h("option", { value: "" }, "all states"),
    allStates().map((state) => h("option", { value: state, selected: state === filters.state }, state)),
  );
  const limitSelect = h(
    "select",
    { id: "filter-limit", name: "limit" },
    PAGE_SIZES.map((size) => h("option", { value: String(size), selected: size === limit }, `${size} a page`)),
  );
  const go = () => {
    location.hash = listHref({
      state: stateSelect.value,
      type: typeSelect.value,
      limit: Number(limitSelect.value) === DEFAULT_LIMIT ? "" : limitSelect.value,
    });
  };
  for (const select of [typeSelect, stateSelect, limitSelect]) select.addEventListener("change", go);
  const table = h(
    "table",
    { class: "jobs", id: "jobs-table" },
    h(
      "thead",
      {},
      h("tr", {}, ["Job", "Type", "State", "Attempts", "Created", "Updated"].map((t) => h("th", { scope: "col" }, t))),
    ),
    tbody,
  );
  const notice = h("div", { class: "notices" });
  replace(
    view,
    h("div", { class: "page-head" }, h("h1", {}, "Jobs"), count),
    h(
      "form",
      { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      h("label", {}, "Type ", typeSelect),
      h("label", {}, "State ", stateSelect),
      h("label", {}, "Show ", limitSelect),
      filters.state || filters.type ? h("a", { href: listHref({ limit: base.limit }) }, "clear filters") : null,
    ),
    notice,
    table,
    pager,
  );

  function matches(job) {
    return (!filters.state || job.state === filters.state) && (!filters.type || job.type === filters.type);
  }

  function fillRow(row) {
    const { job } = row;
    row.tr.classList.toggle("stale", !matches(job));
    row.tr.title = matches(job) ? "" : `now ${job.state}: no longer matches the filter`;
    replace(
      row.tr,
      h("td", {}, h("a", { href: jobHref(job.id), class: "mono" }, job.id)),
      h("td", {}, h("a", { href: typeHref(job.type) }, job.type)),
      h("td", { class: "state-cell" }, stateBadge(job.state), job.cancel_requested && !isTerminal(job.state) ? " cancelling" : ""),
      h("td", { class: "num" }, `${job.attempts}/${job.max_attempts ?? "?"}`),
      h("td", {}, time(job.created_at)),
      h("td", {}, time(job.updated_at)),
    );
    row.tr.dataset.state = job.state;
  }

  function addRow(job, { fresh = false } = {}) {
    const tr = h("tr", { dataset: { jobId: job.id } });
    const row = { job, seq: job.history?.length ?? 0, tr };
    rows.set(job.id, row);
    fillRow(row);
    if (fresh) {
      tbody.querySelector("tr.empty")?.remove();
      tr.classList.add("fresh");
      // Newest first, by creation time, among the rows already shown.
      const after = [...tbody.children].find((other) => rows.get(other.dataset.jobId)?.job.created_at < job.created_at);
      tbody.insertBefore(tr, after ?? null);
    } else {
      tbody.append(tr);
    }
    return row;
  }

  function apply(row, event) {
    if (event.seq <= row.seq) return; // already in what we show
    row.seq = event.seq;
    row.job = {
      ...row.job,
      state: event.state,
      updated_at: event.at,
      attempts: Math.max(row.job.attempts ?? 0, event.attempt ?? 0),
    };
    fillRow(row);
    row.tr.classList.remove("changed");
    void row.tr.offsetWidth; // restart the highlight animation
    row.tr.classList.add("changed");
  }

  async function adopt(jobId) {
    // A job this page does not show moved: show it if it belongs on this first page.
    fetching.set(jobId, []);
    try {
      const job = await api(`/jobs/${encodeURIComponent(jobId)}`, { signal });
      const shown = [...rows.values()];
      const oldest = shown.at(-1)?.job.created_at;
      const fits = shown.length < limit || !oldest || job.created_at > oldest;
      if (matches(job) && fits && !rows.has(job.id)) {
        const row = addRow(job, { fresh: true });
        for (const event of fetching.get(jobId) ?? []) apply(row, event);
        updateCount();
      }
    } catch (error) {
      if (error.name !== "AbortError") console.error("could not fetch job", jobId, error);
    } finally {
      fetching.delete(jobId);
    }
  }

  function onTransition(event) {
    if (!loaded) {
      early.push(event);
      return;
    }
    const row = rows.get(event.job_id);
    if (row) {
      apply(row, event);
    } else if (fetching.has(event.job_id)) {
      fetching.get(event.job_id).push(event);
    } else if (firstPage && (!filters.type || event.type === filters.type) && (!filters.state || event.state === filters.state)) {
      adopt(event.job_id);
    }
  }

  function updateCount() {
    count.textContent = `${rows.size} shown${firstPage ? "" : `, page ${trail.length + 1}`}`;
  }

  async function load() {
    const page = await api(
      `/jobs${query({ ...filters, limit, cursor: trail.at(-1) })}`,
      { signal },
    );
    rows.clear();
    tbody.replaceChildren();
    for (const job of page.items) addRow(job);
    if (page.items.length === 0) {
      tbody.append(h("tr", { class: "empty" }, h("td", { colspan: 6 }, "No jobs match.")));
    }
    updateCount();
    const newer = trail.length
      ? h("a", { href: listHref({ ...base, cursor: trail.slice(0, -1).join(",") }), rel: "prev", id: "page-newer" }, "← Newer")
      : h("span", { class: "muted" }, "← Newer");
    const older = page.next_cursor
      ? h("a", { href: listHref({ ...base, cursor: [...trail, page.next_cursor].join(",") }), rel: "next", id: "page-older" }, "Older →")
      : h("span", { class: "muted" }, "Older →");
    replace(
      pager,
      trail.length > 1 ? h("a", { href: listHref(base), id: "page-first" }, "Newest") : null,
      newer,
      h("span", { class: "page-number" }, `page ${trail.length + 1}`),
      older,
    );
    loaded = true;
    for (const event of early.splice(0)) onTransition(event);
  }

  // The stream first, then the list: nothing that happens in between is missed,
  // and events older than the list are told apart by their `seq`.
  let started;
  const streamUp = new Promise((resolve) => {
    started = resolve;
  });
  const reload = () => {
    loaded = false;
    load().catch((error) => error.name !== "AbortError" && replace(notice, errorBox(error)));
  };
  follow(`/events${query({ type: filters.type })}`, {
    signal,
    onEvent: transitions(onTransition),
    onComment: (text) => {
      // Events after our last one were trimmed from the stream: they are lost to us.
      if (text.startsWith("trimmed") && loaded) reload();
    },
    onOpen: (resumed) => {
      // A new stream that resumes nothing may have missed transitions.
      if (!resumed && loaded) reload();
      started();
    },
    onStatus: (status, detail) => {
      live(status, detail);
      if (status === "retrying" || status === "failed") started();
    },
  });
  api("/job-types", { signal })
    .then((types) => {
      for (const type of types) {
        typeSelect.append(h("option", { value: type.name, selected: type.name === filters.type }, type.name));
      }
      if (filters.type && !types.some((type) => type.name === filters.type)) {
        typeSelect.append(h("option", { value: filters.type, selected: true }, filters.type));
      }
    })
    .catch((error) => error.name !== "AbortError" && console.error(error));
  await streamUp;
  await load();
}
