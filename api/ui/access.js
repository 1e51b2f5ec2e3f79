// What the tab's API key may do (`GET /auth`), so that the pages offer only what it
// allows: a read-only key sees no cancel button and no submit form.

import { api, apiKey } from "./client.js";

let known = null; // { key, role } of the last key asked about

/** Learns the role of the tab's key, once per key. */
export async function loadAccess(signal) {
  if (known && known.key === apiKey()) return;
  const { role } = await api("/auth", { signal });
  known = { key: apiKey(), role };
}

/** False when the key may only read. */
export function canWrite() {
  return known?.role !== "read";
}
