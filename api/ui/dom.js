// Building the page. Text is only ever inserted as text nodes (never as HTML), so
// whatever a payload, a result or an error message holds is shown, not run.

const FORBIDDEN = new Set(["innerHTML", "outerHTML", "srcdoc"]);

/** An element with properties and children; strings and numbers become text nodes. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (FORBIDDEN.has(key)) throw new Error(`refusing to set ${key}`);
    if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      element.className = value;
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else if (typeof value !== "string" && key in element) {
      element[key] = value; // checked, disabled, value of a number field...
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

/** Appends children (nested arrays flattened; null, undefined and false skipped). */
export function append(element, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Replaces an element's children. */
export function replace(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

/** `2026-01-01 12:00:00.123Z` for the API's microsecond ISO instants. */
export function formatTime(iso) {
  if (!iso) return "—";
  return iso.replace("T", " ").replace(/(\.\d{3})\d*Z$/, "$1Z");
}

/** A `<time>` showing `iso` briefly, the full instant on hover. */
export function time(iso) {
  return iso ? h("time", { datetime: iso, title: iso }, formatTime(iso)) : h("span", { class: "muted" }, "—");
}

/** Pretty JSON in a `<pre>`. */
export function jsonBlock(value, props = {}) {
  return h("pre", { class: "json", ...props }, JSON.stringify(value, null, 2));
}

/** The coloured badge of a job state. */
export function stateBadge(state) {
  return h("span", { class: `state state-${String(state).toLowerCase()}`, dataset: { state } }, state);
}

/** A link to a job page; the id is URI-encoded, so it can never become another kind of link. */
export function jobHref(id) {
  return `#/jobs/${encodeURIComponent(id)}`;
}

export function typeHref(name) {
  return `#/types/${encodeURIComponent(name)}`;
}

/** An alert box for an error, with the API's detail when it gave one. */
export function errorBox(error) {
  return h("div", { class: "notice error", role: "alert" }, describeError(error));
}

export function describeError(error) {
  if (error && typeof error.detail !== "undefined") {
    const detail = typeof error.detail === "string" ? error.detail : JSON.stringify(error.detail);
    return error.status ? `${error.status}: ${detail}` : detail;
  }
  return String(error?.message ?? error);
}
