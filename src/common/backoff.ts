// Polling for a state no event announces (a cgroup emptying, a group that
// rmdir still calls busy): check at once, then after 1, 2, 4 … up to 50 ms.
import { setTimeout as sleep } from 'node:timers/promises';

const FIRST_DELAY_MS = 1;
const MAX_DELAY_MS = 50;

/**
 * Calls `done` until it returns true (resolves true) or the deadline
 * (performance.now() time, read again before every wait, so a caller may
 * bring it forward) has passed (resolves false). `done` may throw: the error
 * ends the polling.
 */
export async function pollWithBackoff(done: () => boolean, deadline: () => number): Promise<boolean> {
  for (let delay = FIRST_DELAY_MS; ; delay = Math.min(delay * 2, MAX_DELAY_MS)) {
    if (done()) return true;
    const left = deadline() - performance.now();
    if (left <= 0) return false;
    await sleep(Math.min(delay, left));
  }
}

/** A deadline `ms` from now, for pollWithBackoff. */
export function after(ms: number): () => number {
  const at = performance.now() + ms;
  return () => at;
}
