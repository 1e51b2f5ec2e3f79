// Calls to the API. Every call carries the key this tab was given; a 401 asks for
// one (a single prompt however many calls are waiting) and then retries.

const KEY_STORAGE = "orchestrator.apiKey";

/** Where the API is: the dashboard lives at `<api>/ui/`, so anything before that. */
export const apiRoot = location.pathname.replace(/\/ui(\/.*)?$/, "");

export class ApiError extends Error {
  constructor(status, detail, body = null) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.body = body;
  }
}

let askForKey = async () => {
  throw new ApiError(401, "an API key is required");
};
let pendingPrompt = null;

/** Sets how a key is asked for: `(message) => Promise<string>`. */
export function onKeyNeeded(prompt) {
  askForKey = prompt;
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

function withKey(headers) {
  const result = new Headers(headers);
  const key = apiKey();
  if (key) result.set("Authorization", `Bearer ${key}`);
  return result;
}

async function keyAfter401(refused, signal) {
  if (apiKey() !== refused) return; // another call already got a new key
  pendingPrompt ??= askForKey(
    refused ? "That key was refused. Enter a valid API key." : "This API needs a key.",
  )
    .then((key) => sessionStorage.setItem(KEY_STORAGE, key))
    .finally(() => {
      pendingPrompt = null;
    });
  await untilAborted(pendingPrompt, signal);
}

/** `promise`, or an AbortError as soon as `signal` fires. */
export function untilAborted(promise, signal) {
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    const abort = () => reject(signal.reason ?? new DOMException("aborted", "AbortError"));
    if (signal.aborted) return abort();
    signal.addEventListener("abort", abort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
  });
}

/** `fetch` of an API path with the key, asking for a key on 401 and trying again. */
export async function authorizedFetch(path, init = {}) {
  for (;;) {
    const sent = apiKey();
    let response;
    try {
      response = await fetch(apiRoot + path, { ...init, headers: withKey(init.headers) });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, `the API did not answer (${error.message})`);
    }
    if (response.status !== 401) return response;
    await response.body?.cancel();
    await keyAfter401(sent, init.signal);
  }
}

async function bodyOf(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The JSON answer of a call; an ApiError with the API's `detail` for any other status. */
export async function api(path, { method = "GET", body, signal, headers } = {}) {
  const init = { method, signal, headers: new Headers(headers) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers.set("Content-Type", "application/json");
  }
  const response = await authorizedFetch(path, init);
  const data = await bodyOf(response);
  if (!response.ok) {
    const detail = data && typeof data === "object" && "detail" in data ? data.detail : data;
    throw new ApiError(response.status, detail ?? response.statusText, data);
  }
  return data;
}

/** A query string of the set values, `?a=1&b=2`, or "" when there are none. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// --- Named calls, one per operation the pages make beyond reading a path ---

/** `POST /jobs/{id}/rerun`: the new job, with the type, payload, priority and key of the
 * finished one (a 409 ApiError, its `body` the current document, if it has not finished). */
export function rerunJob(id, { signal } = {}) {
  return api(`/jobs/${encodeURIComponent(id)}/rerun`, { method: "POST", signal });
}

/** `GET /job-types`: every type with its effective limits, `paused` and `overrides`. */
export function jobTypes({ signal } = {}) {
  return api("/job-types", { signal });
}

/** `PATCH /job-types/{name}`: overrides the type's limits for the deployment (a null
 * value removes that field's override); the catalog entry as it now is. */
export function updateJobType(name, changes, { signal } = {}) {
  return api(`/job-types/${encodeURIComponent(name)}`, { method: "PATCH", body: changes, signal });
}
