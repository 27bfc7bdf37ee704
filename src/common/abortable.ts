// Waiting for something unless a signal says to stop waiting.

/**
 * `promise`'s value, or `ifAborted` as soon as `signal` aborts (at once if
 * it has). Leaves no listener on the signal, which may outlive many waits;
 * a promise given up on may still reject, unheard.
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
