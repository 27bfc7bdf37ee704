// Waiting for something unless a signal says to stop waiting, without leaving
// anything behind on a long-lived promise or signal.
import { setMaxListeners } from 'node:events';

/**
 * `promise`'s value, or `ifAborted` as soon as `signal` aborts (at once if
 * it has). Leaves no listener on the signal, which may outlive many waits;
 * a promise given up on may still reject, unheard. `promise` keeps a
 * reaction until it settles: for a long-lived one, wait on its
 * settledSignal() with eitherAborted() instead.
 */
export async function unlessAborted<T, U>(promise: Promise<T>, signal: AbortSignal | undefined, ifAborted: U): Promise<T | U> {
  if (!signal) return promise;
  if (signal.aborted) {
    // Nobody waits for it now: its failure must not become an unhandled rejection.
    promise.catch(() => undefined);
    return ifAborted;
  }
  let onAbort!: () => void;
  const aborted = new Promise<U>((resolve) => (onAbort = () => resolve(ifAborted)));
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * Resolves once either signal aborts (at once if one has), leaving no
 * listener on either: a wait for a long-lived signal that ends the other
 * way must leave nothing behind on it.
 */
export function eitherAborted(a: AbortSignal, b: AbortSignal | undefined): Promise<void> {
  if (a.aborted || b?.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = (): void => {
      a.removeEventListener('abort', done);
      b?.removeEventListener('abort', done);
      resolve();
    };
    a.addEventListener('abort', done, { once: true });
    b?.addEventListener('abort', done, { once: true });
  });
}

const settledSignals = new WeakMap<Promise<unknown>, AbortSignal>();

/**
 * Every settled promise's signal, once it has settled. A signal of its own
 * would be kept as long as the promise (a job's end: as long as the job is
 * kept, up to --retain-jobs of them), and one aborted without a reason
 * holds a DOMException whose stack holds the frames that aborted it: ~1.5
 * KiB of heap for each ended job.
 */
const SETTLED = AbortSignal.abort(new Error('settled'));

/**
 * A signal aborted once `promise` settles, the same one for every caller
 * (once it has settled, the one every settled promise shares).
 * Racing a long-lived promise (a job's end) leaves a reaction on it for
 * each race, holding that race's result until the promise settles: one per
 * GetJob or per message of a call adds up. Waiting on this signal instead
 * (eitherAborted, unlessAborted) leaves one reaction in all.
 */
export function settledSignal(promise: Promise<unknown>): AbortSignal {
  let signal = settledSignals.get(promise);
  if (!signal) {
    const settled = new AbortController();
    // Every follower and waiter of a job listens to it: no "possible leak" warning past ten.
    setMaxListeners(0, settled.signal);
    const abort = (): void => {
      settledSignals.set(promise, SETTLED);
      settled.abort(SETTLED.reason);
    };
    promise.then(abort, abort);
    signal = settled.signal;
    settledSignals.set(promise, signal);
  }
  return signal;
}
