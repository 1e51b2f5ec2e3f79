// #/types and #/types/<name>: the job-type catalog, each type's schema, and a form
// generated from the schema that submits a job and opens its page.

import { canWrite } from "./access.js";
import { api } from "./client.js";
import { h, jobHref, jsonBlock, replace, typeHref } from "./dom.js";
import { schemaForm } from "./schemaform.js";

export async function typesPage(view, only, { signal }) {
  const types = await api("/job-types", { signal });
  const shown = only ? types.filter((type) => type.name === only) : types;
  const index = h(
    "ul",
    { class: "type-index" },
    types.map((type) => h("li", {}, h("a", { href: typeHref(type.name), "aria-current": type.name === only ? "page" : null }, type.name))),
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

function fact(label, value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}
