// The job states and their named sets, read once from the API (GET /states), which
// serves them from the one table the store script is built from: no state name is
// written here.

import { api, untilAborted } from "./client.js";

let machine = null;
let loading = null;

/** Reads the states once; every page waits for it before it renders. */
export async function loadStates(signal) {
  if (machine) return machine;
  loading ??= api("/states")
    .then((body) => {
      machine = {
        states: body.states,
        terminal: new Set(body.terminal),
        cancellable: new Set(body.cancellable),
        succeeded: body.succeeded,
      };
      return machine;
    })
    .finally(() => {
      loading = null;
    });
  return untilAborted(loading, signal);
}

function loaded() {
  if (!machine) throw new Error("the job states are not loaded yet");
  return machine;
}

/** Every state, in the order a job can pass through them. */
export function allStates() {
  return loaded().states;
}

/** True for the states nothing leaves. */
export function isTerminal(state) {
  return loaded().terminal.has(state);
}

/** True where a cancel request has an effect (in RUNNING it asks the worker to stop). */
export function isCancellable(state) {
  return loaded().cancellable.has(state);
}

/** True for the state of a job whose execute returned, the one that holds a result. */
export function isSucceeded(state) {
  return loaded().succeeded === state;
}
