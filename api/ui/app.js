// The dashboard: a hash-routed single page over the REST API.
//   #/jobs[?state=&type=&limit=&cursor=]   the job list
//   #/jobs/<id>                            one job
//   #/types[/<name>]                       the job-type catalog and its forms
//   #/plugins                              the plugin load report
//   #/schedules                            the cron schedules and their form

import { canWrite, loadAccess } from "./access.js";
import { apiKey, forgetKey, onKeyNeeded } from "./client.js";
import { errorBox, h, replace } from "./dom.js";
import { jobPage } from "./job.js";
import { jobsPage } from "./jobs.js";
import { pluginsPage } from "./plugins.js";
import { schedulesPage } from "./schedules.js";
import { loadStates } from "./states.js";
import { typesPage } from "./types.js";

const view = document.getElementById("view");
const liveBadge = document.getElementById("live");
const forgetButton = document.getElementById("forget-key");
const readOnlyBadge = document.getElementById("read-only");
const dialog = document.getElementById("key-dialog");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key-input");
const keyMessage = document.getElementById("key-message");

let current = null; // the AbortController of the page on show

function setLive(status, detail) {
  liveBadge.dataset.status = status;
  const text = {
    off: "",
    connecting: "connecting…",
    live: "● live",
    ended: "finished",
    stopped: "",
    retrying: detail ? `reconnecting in ${Math.ceil(detail.wait / 1000)} s (${detail.problem})` : "reconnecting…",
    failed: `no live updates: ${detail?.problem ?? "refused"}`,
  }[status];
  liveBadge.textContent = text ?? status;
  liveBadge.title = status === "live" ? "updates arrive as they happen" : liveBadge.textContent;
}

let waiting = [];

onKeyNeeded((message) => {
  keyMessage.textContent = message;
  keyInput.value = "";
  if (!dialog.open) dialog.showModal();
  keyInput.focus();
  return new Promise((resolve) => waiting.push(resolve));
});

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return;
  dialog.close();
  for (const resolve of waiting.splice(0)) resolve(key);
  forgetButton.hidden = false;
});

// Every call waits on the key: closing the prompt without one would leave them hanging.
dialog.addEventListener("cancel", (event) => event.preventDefault());

forgetButton.hidden = !apiKey();
forgetButton.addEventListener("click", () => {
  forgetKey();
  forgetButton.hidden = true;
  route();
});

function parseHash() {
  const hash = location.hash.replace(/^#/, "") || "/jobs";
  const [path, search = ""] = hash.split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: Object.fromEntries(new URLSearchParams(search)) };
}

async function route() {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  setLive("off");
  const { parts, params } = parseHash();
  const [section = "jobs", name] = parts;
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", link.dataset.section === section);
  }
  const context = {
    signal: controller.signal,
    live: (status, detail) => controller === current && setLive(status, detail),
  };
  replace(view, h("p", { class: "muted" }, "Loading…"));
  try {
    await Promise.all([loadStates(controller.signal), loadAccess(controller.signal)]);
    readOnlyBadge.hidden = canWrite();
    if (section === "jobs" && name) {
      document.title = `job ${name} · orchestrator`;
      await jobPage(view, name, context);
    } else if (section === "jobs") {
      document.title = "jobs · orchestrator";
      await jobsPage(view, params, context);
    } else if (section === "types") {
      document.title = `${name ?? "job types"} · orchestrator`;
      await typesPage(view, name, context);
    } else if (section === "plugins") {
      document.title = "plugins · orchestrator";
      await pluginsPage(view, context);
    } else if (section === "schedules") {
      document.title = "schedules · orchestrator";
      await schedulesPage(view, context);
    } else {
      replace(view, h("p", { class: "notice error" }, "No such page. "), h("a", { href: "#/jobs" }, "Go to the jobs"));
    }
  } catch (error) {
    if (error.name === "AbortError" || controller !== current) return;
    replace(view, errorBox(error));
  }
  if (controller === current) forgetButton.hidden = !apiKey();
}

window.addEventListener("hashchange", route);
route();
