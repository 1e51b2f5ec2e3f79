// #/plugins: what loading the plugins did in this API process.

import { api } from "./client.js";
import { h, replace, typeHref } from "./dom.js";

export async function pluginsPage(view, { signal }) {
  const report = await api("/plugins", { signal });
  const { loaded, failed, skipped } = report;
  replace(
    view,
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Plugins"),
      h(
        "span",
        { class: report.ok ? "muted" : "bad", id: "plugin-counts" },
        `${loaded.length} loaded, ${failed.length} failed, ${skipped.length} skipped`,
      ),
    ),
    h("h2", {}, "Loaded"),
    loaded.length
      ? table(
          "plugins-loaded",
          ["Plugin", "Distribution", "Version", "Entry point", "Job types"],
          loaded.map((plugin) =>
            h(
              "tr",
              { dataset: { plugin: plugin.name } },
              h("td", {}, h("strong", {}, plugin.name)),
              h("td", {}, plugin.distribution ?? "—"),
              h("td", {}, plugin.version ?? "—"),
              h("td", {}, h("code", {}, plugin.value)),
              h(
                "td",
                {},
                plugin.job_types.length
                  ? h("ul", { class: "inline" }, plugin.job_types.map((name) => h("li", {}, h("a", { href: typeHref(name) }, name))))
                  : h("span", { class: "muted" }, "none"),
              ),
            ),
          ),
        )
      : h("p", { class: "muted" }, "No plugin is loaded."),
    h("h2", {}, "Failed"),
    failed.length
      ? table(
          "plugins-failed",
          ["Plugin", "Distribution", "Version", "Stage", "Error"],
          failed.map((failure) =>
            h(
              "tr",
              { dataset: { plugin: failure.plugin } },
              h("td", {}, h("strong", {}, failure.plugin)),
              h("td", {}, failure.distribution ?? "—"),
              h("td", {}, failure.version ?? "—"),
              h("td", {}, h("code", {}, failure.stage)),
              h("td", {}, h("pre", { class: "error-message" }, failure.error)),
            ),
          ),
        )
      : h("p", { class: "muted", id: "plugins-failed" }, "None: every plugin that was asked for loaded."),
    h("h2", {}, "Skipped"),
    skipped.length
      ? h("ul", { id: "plugins-skipped", class: "inline" }, skipped.map((name) => h("li", {}, h("code", {}, name))))
      : h("p", { class: "muted", id: "plugins-skipped" }, "None: no allow-list left a plugin out."),
    skipped.length
      ? h("p", { class: "hint" }, "Installed but left out by the ORCHESTRATOR_PLUGINS allow-list.")
      : null,
  );
}

function table(id, headings, rows) {
  return h(
    "table",
    { id, class: "report" },
    h("thead", {}, h("tr", {}, headings.map((text) => h("th", { scope: "col" }, text)))),
    h("tbody", {}, rows),
  );
}
