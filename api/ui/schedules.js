// #/schedules: the cron schedules, when each runs next and last ran (with a link to the
// job it made), pause and resume buttons, and a form that adds one. Refreshed every few
// seconds while shown, so a fire shows up without a reload.

import { canWrite } from "./access.js";
import { api } from "./client.js";
import { errorBox, h, jobHref, replace, time, typeHref } from "./dom.js";

const REFRESH_MS = 5000;
const FIELDS = ["name", "cron", "timezone", "type", "payload", "priority", "concurrency_key"];

export async function schedulesPage(view, { signal }) {
  const [schedules, types] = await Promise.all([api("/schedules", { signal }), api("/job-types", { signal })]);
  const tbody = h("tbody");
  const count = h("span", { class: "muted", id: "schedule-count" });
  const notice = h("div", { class: "notices", id: "schedules-notice" });
  const writable = canWrite();

  function render(items) {
    count.textContent = `${items.length} schedule${items.length === 1 ? "" : "s"}`;
    replace(
      tbody,
      items.length ? items.map(row) : h("tr", { class: "empty" }, h("td", { colspan: 8 }, "No schedules yet.")),
    );
  }

  function row(schedule) {
    const toggle = writable
      ? h(
          "button",
          {
            type: "button",
            class: "toggle-schedule",
            onclick: () => setEnabled(schedule.name, !schedule.enabled, toggle),
          },
          schedule.enabled ? "Pause" : "Resume",
        )
      : null;
    return h(
      "tr",
      { dataset: { schedule: schedule.name, enabled: String(schedule.enabled) } },
      h("td", {}, h("strong", {}, schedule.name)),
      h("td", {}, h("code", {}, schedule.cron), " ", h("span", { class: "muted" }, schedule.timezone)),
      h("td", {}, h("a", { href: typeHref(schedule.type) }, schedule.type)),
      h("td", { class: "next-run" }, schedule.enabled ? time(schedule.next_run_at) : h("span", { class: "muted" }, "paused")),
      h("td", { class: "last-run" }, time(schedule.last_run_at)),
      h(
        "td",
        { class: "last-job" },
        schedule.last_job_id
          ? h("a", { href: jobHref(schedule.last_job_id), class: "mono" }, schedule.last_job_id)
          : h("span", { class: "muted" }, "—"),
      ),
      h("td", { class: "status" }, schedule.enabled ? "active" : "paused"),
      h("td", {}, toggle),
    );
  }

  async function reload() {
    try {
      const fresh = await api("/schedules", { signal });
      render(fresh.items);
    } catch (error) {
      if (error.name !== "AbortError") replace(notice, errorBox(error));
    }
  }

  async function setEnabled(name, enabled, button) {
    button.disabled = true;
    notice.replaceChildren();
    try {
      await api(`/schedules/${encodeURIComponent(name)}`, { method: "PATCH", body: { enabled }, signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      replace(notice, errorBox(error));
    }
    await reload();
  }

  const table = h(
    "table",
    { class: "schedules", id: "schedules-table" },
    h(
      "thead",
      {},
      h("tr", {}, ["Name", "Cron", "Type", "Next run", "Last run", "Last job", "Status", ""].map((t) => h("th", { scope: "col" }, t))),
    ),
    tbody,
  );
  replace(
    view,
    h("div", { class: "page-head" }, h("h1", {}, "Schedules"), count),
    h("p", { class: "hint" }, "Each fire creates one job; after an outage only the most recent missed fire runs."),
    notice,
    table,
    h("h2", {}, "Add a schedule"),
    writable
      ? addForm(types, reload, signal)
      : h("p", { class: "notice read-only-notice" }, "This API key may only read: adding a schedule needs a full key."),
  );
  render(schedules.items);

  const timer = setInterval(reload, REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer), { once: true });
}

function addForm(types, reload, signal) {
  const inputs = {
    name: h("input", { type: "text", name: "name", required: true, placeholder: "nightly-report", autocomplete: "off" }),
    cron: h("input", { type: "text", name: "cron", required: true, placeholder: "0 3 * * *", autocomplete: "off" }),
    timezone: h("input", { type: "text", name: "timezone", value: "UTC", list: "time-zones", autocomplete: "off" }),
    type: h(
      "select",
      { name: "type" },
      types.map((type) => h("option", { value: type.name }, type.name)),
    ),
    payload: h("textarea", { name: "payload", class: "code", rows: 4 }, "{}"),
    priority: h("input", { type: "number", name: "priority", min: 0, max: 9, step: 1 }),
    concurrency_key: h("input", { type: "text", name: "concurrency_key", autocomplete: "off" }),
  };
  const labels = {
    name: "Name",
    cron: "Cron (minute hour day-of-month month day-of-week)",
    timezone: "Time zone (IANA)",
    type: "Job type",
    payload: "Payload (JSON)",
    priority: "Priority (0–9, optional)",
    concurrency_key: "Concurrency key (optional)",
  };
  const fieldErrors = {};
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const summary = h("div", { class: "form-errors", role: "alert" });
  const enabled = h("input", { type: "checkbox", name: "enabled", id: "schedule-enabled", checked: true });
  const form = h(
    "form",
    { class: "job-form", id: "schedule-form", novalidate: true },
    summary,
    FIELDS.map((field) => {
      fieldErrors[field] = h("div", { class: "field-error" });
      const id = `schedule-${field}`;
      inputs[field].id = id;
      return h(
        "div",
        { class: "field", dataset: { field } },
        h("label", { for: id }, labels[field]),
        inputs[field],
        fieldErrors[field],
      );
    }),
    h("div", { class: "field" }, h("div", { class: "check" }, enabled, h("label", { for: "schedule-enabled" }, "Enabled"))),
    h("datalist", { id: "time-zones" }, ["UTC", ...zones].map((zone) => h("option", { value: zone }))),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Add schedule")),
  );

  function clearErrors() {
    summary.replaceChildren();
    for (const field of FIELDS) {
      fieldErrors[field].textContent = "";
      fieldErrors[field].parentElement.classList.remove("invalid");
    }
  }

  function showError(field, message) {
    const where = fieldErrors[field];
    if (where) {
      where.textContent = where.textContent ? `${where.textContent}; ${message}` : message;
      where.parentElement.classList.add("invalid");
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    let payload;
    try {
      payload = JSON.parse(inputs.payload.value || "{}");
    } catch (error) {
      showError("payload", `not valid JSON: ${error.message}`);
      return;
    }
    const body = {
      name: inputs.name.value.trim(),
      cron: inputs.cron.value.trim(),
      timezone: inputs.timezone.value.trim() || "UTC",
      type: inputs.type.value,
      payload,
      enabled: enabled.checked,
    };
    if (inputs.priority.value !== "") body.priority = Number(inputs.priority.value);
    if (inputs.concurrency_key.value !== "") body.concurrency_key = inputs.concurrency_key.value;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await api("/schedules", { method: "POST", body, signal });
      form.reset();
      enabled.checked = true;
      inputs.timezone.value = "UTC";
      inputs.payload.value = "{}";
      await reload();
    } catch (error) {
      if (error.name === "AbortError") return;
      if (Array.isArray(error.detail)) {
        const lines = error.detail.map((item) => {
          const loc = (item.loc ?? []).filter((part) => part !== "body");
          showError(FIELDS.includes(loc[0]) ? loc[0] : "", item.msg);
          return `${loc.join(".") || "body"}: ${item.msg}`;
        });
        replace(summary, h("ul", {}, lines.map((line) => h("li", {}, line))));
      } else {
        replace(summary, errorBox(error));
      }
    } finally {
      button.disabled = false;
    }
  });
  return form;
}
