// A stack of cleanups (graphile-worker's withReleasers): what was set up is
// released last-in-first-out, every release runs even when one before it
// fails, and the first failure is what is thrown.
export type Release = () => unknown;

export class Releasers {
  readonly #stack: Release[] = [];
  #released = false;

  /** Run at release(), before everything pushed earlier. */
  push(release: Release): void {
    if (this.#released) throw new Error('Releasers: push after release()');
    this.#stack.push(release);
  }

  /** Runs every release, newest first; rejects with the first error once all have run. */
  async release(): Promise<void> {
    if (this.#released) throw new Error('Releasers: released twice');
    this.#released = true;
    let failure: { error: unknown } | undefined;
    for (const release of this.#stack.reverse()) {
      try {
        await release();
      } catch (err) {
        failure ??= { error: err };
      }
    }
    this.#stack.length = 0;
    if (failure) throw failure.error;
  }
}
