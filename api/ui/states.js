// The job states of the API's contract, in the order a job can pass through them.

export const STATES = ["CREATED", "RUNNING", "RETRYING", "COMPLETED", "FAILED", "CANCELLED"];

export const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);

export function isTerminal(state) {
  return TERMINAL.has(state);
}
