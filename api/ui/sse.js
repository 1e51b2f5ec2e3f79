// Server-Sent Events read with fetch(), because EventSource cannot send the API key.
// The parser follows the HTML standard's event-stream interpretation; `follow` keeps
// a stream open, resuming with Last-Event-ID after a drop, with backoff.

import { ApiError, authorizedFetch, untilAborted } from "./client.js";

/** Turns text chunks of an event stream into events `{type, data, id}`. */
export class SseParser {
  constructor(onEvent, { lastEventId = null, onComment = () => {} } = {}) {
    this.onEvent = onEvent;
    this.onComment = onComment;
    this.lastEventId = lastEventId;
    this.retry = null;
    this.buffer = "";
    this.type = "";
    this.data = [];
  }

  push(text) {
    const buffer = this.buffer + text;
    let start = 0;
    for (let i = 0; i < buffer.length; i++) {
      const char = buffer[i];
      if (char !== "\n" && char !== "\r") continue;
      if (char === "\r" && i === buffer.length - 1) break; // maybe half of a CRLF: wait
      this.line(buffer.slice(start, i));
      if (char === "\r" && buffer[i + 1] === "\n") i++;
      start = i + 1;
    }
    this.buffer = buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) {
      this.onComment(line.slice(1).trim());
      return;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }

  dispatch() {
    const data = this.data;
    const type = this.type || "message";
    this.data = [];
    this.type = "";
    if (data.length === 0) return;
    this.onEvent({ type, data: data.join("\n"), id: this.lastEventId });
  }
}

const BASE_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;
// Keepalives come every ~15 s: this long without a byte means a dead connection.
const SILENCE_MS = 45000;

function sleep(ms, signal) {
  return untilAborted(new Promise((resolve) => setTimeout(resolve, ms)), signal);
}

/**
 * Follows the event stream at `path` until `signal` aborts or `finished()` is true
 * when the server ends it. Calls `onEvent(event)` for each event, `onComment(text)`
 * for each comment line, `onOpen(resumed)` on each connection (resumed: it carried a
 * Last-Event-ID), and `onStatus(status, detail)` with "connecting", "live",
 * "retrying", "ended", "failed" (a refusal that retrying cannot change) or "stopped".
 */
export async function follow(
  path,
  {
    signal,
    onEvent,
    onComment = () => {},
    onOpen = () => {},
    onStatus = () => {},
    finished = () => false,
  },
) {
  let lastEventId = null;
  let delay = BASE_DELAY_MS;
  let retryBase = BASE_DELAY_MS;
  while (!signal.aborted) {
    const attempt = new AbortController();
    const stop = () => attempt.abort();
    signal.addEventListener("abort", stop, { once: true });
    let silence;
    const parser = new SseParser(
      (event) => {
        delay = retryBase;
        try {
          onEvent(event);
        } catch (error) {
          console.error("event handler failed", event, error);
        }
      },
      { lastEventId, onComment },
    );
    let problem = "the stream ended";
    try {
      onStatus("connecting");
      const headers = { Accept: "text/event-stream" };
      if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
      const response = await authorizedFetch(path, {
        headers,
        signal: attempt.signal,
        cache: "no-store",
      });
      if (!response.ok) {
        const text = await response.text();
        let detail = `${response.status} ${response.statusText}`;
        try {
          detail = JSON.parse(text).detail ?? detail;
        } catch {
          // not JSON: the status line says enough
        }
        throw new ApiError(response.status, typeof detail === "string" ? detail : JSON.stringify(detail));
      }
      const type = response.headers.get("Content-Type") ?? "";
      if (!type.startsWith("text/event-stream")) {
        await response.body?.cancel();
        throw new ApiError(response.status, `not an event stream (${type || "no type"})`);
      }
      onStatus("live");
      onOpen(lastEventId !== null);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      const arm = () => {
        clearTimeout(silence);
        silence = setTimeout(() => attempt.abort(), SILENCE_MS);
      };
      arm();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        parser.push(value);
      }
    } catch (error) {
      if (signal.aborted) break;
      if (permanent(error)) {
        onStatus("failed", { problem: error.detail ?? error.message });
        return;
      }
      problem = error.name === "AbortError" ? "no data for too long" : (error.detail ?? error.message);
    } finally {
      clearTimeout(silence);
      signal.removeEventListener("abort", stop);
      lastEventId = parser.lastEventId;
      if (parser.retry !== null) retryBase = parser.retry;
    }
    if (signal.aborted) break;
    if (finished()) {
      onStatus("ended");
      return;
    }
    const wait = Math.round(Math.min(delay, MAX_DELAY_MS) * (0.75 + Math.random() * 0.5));
    onStatus("retrying", { wait, problem });
    try {
      await sleep(wait, signal);
    } catch {
      break;
    }
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  }
  onStatus("stopped");
}

/** A refusal that asking again cannot change (a bad filter, an unknown job). */
function permanent(error) {
  return error instanceof ApiError && error.status >= 400 && error.status < 500 && ![408, 429].includes(error.status);
}

/** The `transition` events' data, parsed; other events and bad JSON are dropped. */
export function transitions(handler) {
  return (event) => {
    if (event.type !== "transition") return;
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      console.error("malformed transition event", event);
      return;
    }
    handler(data, event);
  };
}
