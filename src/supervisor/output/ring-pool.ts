// Rings of ended jobs, kept for the jobs that come next. A ring's memory is
// freed only once both threads have collected their handles on it, and a
// supervisor thread allocates so little of its own heap that it collects
// rarely: under a steady stream of jobs, each new ring was new memory, and
// hundreds of dead ones stayed resident (bench scenario 10: ~150 MB of the
// server's peak). Reused, they cost what the busiest moment needed.
import { createRing, resetRing } from '../../workers/ring-layout.js';

/** Free rings kept at most (256 KiB each by default): past this, a returned ring is left to the collectors. */
const KEEP = 64;

export class RingPool {
  readonly #free: SharedArrayBuffer[] = [];

  constructor(readonly capacity?: number) {}

  /** A ring for a new job: a returned one, emptied, or a new one. */
  take(): SharedArrayBuffer {
    const ring = this.#free.pop();
    if (!ring) return createRing(this.capacity);
    resetRing(ring);
    return ring;
  }

  /** A ring nothing will touch again: its writer's task has returned (or its thread is dead) and its reader is done. */
  give(ring: SharedArrayBuffer): void {
    // Twice in the list, one ring would go to two jobs: their output mixed.
    if (this.#free.length < KEEP && !this.#free.includes(ring)) this.#free.push(ring);
  }
}
