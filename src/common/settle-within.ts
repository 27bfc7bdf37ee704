import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Resolves true when `promise` settles within `ms`, false otherwise. The
 * timer is cancelled either way: a forgotten one would hold the event loop
 * (and a process that is shutting down) open for its whole length.
 */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const timer = new AbortController();
  try {
    return await Promise.race([
      promise.then(() => true),
      sleep(ms, false, { signal: timer.signal }),
    ]);
  } finally {
    timer.abort();
  }
}
