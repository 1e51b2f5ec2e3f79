// #/types and #/types/<name>: the job-type catalog, each type's schema, the flow control
// in effect (with pause and resume buttons), and a form generated from the schema that
// submits a job and opens its page.

import { canWrite } from "./access.js";
import { api, jobTypes, updateJobType } from "./client.js";
import { errorBox, h, jobHref, jsonBlock, replace, typeHref } from "./dom.js";
import { schemaForm } from "./schemaform.js";

export async function typesPage(view, only, { signal }) {
  const types = await jobTypes({ signal });
  const shown = only ? types.filter((type) => type.name === only) : types;
  const index = h(
    "ul",
    { class: "type-index" },
    types.map((type) =>
      h(
        "li",
        {},
        h("a", { href: typeHref(type.name), "aria-current": type.name === only ? "page" : null }, type.name),
        type.paused ? h("span", { class: "paused-badge" }, " paused") : null,
      ),
    ),
  );
  replace(
    view,
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, only ? `Job type ${only}` : "Job types"),
      h("span", { class: "muted" }, `${types.length} installed`),
    ),
    only ? h("p", {}, h("a", { href: "#/types" }, "← all job types")) : index,
    shown.length ? shown.map((type) => card(type, signal)) : h("p", { class: "notice error" }, `No job type is called ${only}.`),
  );
}

function card(type, signal) {
  const plugin = type.plugin ?? {};
  const form = canWrite()
    ? submitForm(type, signal)
    : h("p", { class: "notice read-only-notice" }, "This API key may only read: submitting a job needs a full key.");
  return h(
    "section",
    { class: "type-card", id: `type-${type.name}`, dataset: { type: type.name } },
    h("h2", {}, h("a", { href: typeHref(type.name) }, type.name)),
    type.description ? h("p", { class: "description" }, type.description) : null,
    h(
      "dl",
      { class: "facts" },
      fact("Plugin", `${plugin.name ?? "?"} (${plugin.distribution ?? "unknown distribution"} ${plugin.version ?? ""})`.trim()),
      fact("Max attempts", type.max_attempts),
      fact("Timeout", type.timeout === null ? "none" : `${type.timeout} s`),
      fact("Retry backoff", `${type.retry_backoff} s, at most ${type.retry_backoff_max} s`),
      fact("Queue", h("code", {}, type.queue)),
    ),
    flowControl(type, signal),
    h("details", { class: "schema" }, h("summary", {}, "Payload schema (JSON Schema)"), jsonBlock(type.payload_schema)),
    h("h3", {}, "Submit a job"),
    form,
  );
}

function submitForm(type, signal) {
  return schemaForm(type.name, type.payload_schema, {
    maxAttempts: type.max_attempts,
    onSubmit: async ({ payload, max_attempts }) => {
      const job = await api("/jobs", {
        method: "POST",
        body: { type: type.name, payload, ...(max_attempts === undefined ? {} : { max_attempts }) },
        signal,
      });
      location.hash = jobHref(job.id);
    },
  });
}

function fact(label, value, props = {}) {
  return [h("dt", {}, label), h("dd", props, value)];
}

const LIMITS = [
  ["priority", "Priority"],
  ["concurrency", "Concurrency"],
  ["concurrency_per_key", "Concurrency per key"],
  ["rate_limit", "Rate limit"],
  ["rate_limit_per_key", "Rate limit per key"],
  ["paused", "Paused"],
];

/** The limits in effect, each marked when an operator's override sets it, and the
 * buttons that pause and resume the type; redrawn in place from the PATCH's answer. */
function flowControl(type, signal) {
  const block = h("section", { class: "flow-control", id: `flow-${type.name}`, dataset: { type: type.name } });
  let entry = type;

  function draw(problem = null) {
    const overrides = entry.overrides ?? {};
    const limits = LIMITS.map(([name, label]) =>
      fact(
        label,
        [limitText(name, entry[name]), name in overrides ? h("span", { class: "overridden", title: "an operator's override (PATCH /job-types)" }, " overridden") : null],
        { dataset: { limit: name, overridden: name in overrides ? "yes" : "no" } },
      ),
    );
    const actions = canWrite()
      ? h(
          "p",
          { class: "actions" },
          // Resuming removes the override: the type runs at its own values again.
          entry.paused
            ? h("button", { type: "button", class: "resume-type", onclick: () => change({ paused: null }) }, "Resume")
            : h("button", { type: "button", class: "pause-type danger", onclick: () => change({ paused: true }) }, "Pause"),
          h("span", { class: "hint" }, entry.paused ? " No job of this type starts until it is resumed." : " Running jobs finish; no new one starts until resumed."),
        )
      : null;
    replace(block, h("h3", {}, "Flow control"), h("dl", { class: "facts limits" }, limits), actions, problem ? errorBox(problem) : null);
  }

  async function change(changes) {
    for (const control of block.querySelectorAll("button")) control.disabled = true;
    try {
      entry = await updateJobType(type.name, changes, { signal });
      draw();
    } catch (error) {
      if (error.name !== "AbortError") draw(error);
    }
  }

  draw();
  return block;
}

function limitText(name, value) {
  if (name === "paused") return value ? "yes" : "no";
  if (value === null || value === undefined) return h("span", { class: "muted" }, "no limit");
  return String(value);
}
