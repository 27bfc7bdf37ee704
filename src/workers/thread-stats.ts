// What the job-supervisor threads count for the server's metrics, in one
// SharedArrayBuffer the main thread hands every thread at start: counters
// added to with Atomics, and a slot per thread for its event loop. The main
// thread reads it when scraped; no message crosses for it.
//
//   BigInt64Array
//   [0] ring-full events             [2..5] cgroup failures: create kill remove read
//   [1] µs pipes spent paused         [6] next free thread slot
//   [8 + 4i ..] thread slot i: threadId, lag p99 ns, lag max ns, utilisation ppm
import type { LoopWindow } from '../common/loop-monitor.js';

/** Piscina's workerData for the job-supervisor threads. */
export interface SupervisorThreadData {
  stats: SharedArrayBuffer;
  loopWindowMs: number;
}

export const CGROUP_OPS = ['create', 'kill', 'remove', 'read'] as const;
export type CgroupOp = (typeof CGROUP_OPS)[number];

const RING_FULL = 0;
const RING_BLOCKED_MICROS = 1;
const CGROUP_FAILURES = 2;
const NEXT_SLOT = 6;
/** Cells before the first thread slot. */
const HEADER = 8;
const SLOT_FIELDS = 4;
/**
 * Twice --workers' maximum. Slots are not reused: a thread that dies is
 * replaced and the new one claims a slot of its own (the main thread reports
 * only live threads), so past 64 replacements at the most workers the newest
 * threads go without loop figures. Threads die only of a bug.
 */
const MAX_THREAD_SLOTS = 128;
const LENGTH = HEADER + MAX_THREAD_SLOTS * SLOT_FIELDS;

export interface ThreadStatsSnapshot {
  ringFullEvents: number;
  ringBlockedSeconds: number;
  cgroupFailures: Record<CgroupOp, number>;
  threads: (LoopWindow & { threadId: number })[];
}

export class ThreadStats {
  readonly #cells: BigInt64Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(LENGTH * 8)) {
    this.#cells = new BigInt64Array(buffer);
  }

  /** A job's output filled its ring, and its pipes were paused for `ms`. */
  ringBlocked(ms: number): void {
    Atomics.add(this.#cells, RING_FULL, 1n);
    Atomics.add(this.#cells, RING_BLOCKED_MICROS, BigInt(Math.round(ms * 1000)));
  }

  cgroupFailed(op: CgroupOp): void {
    Atomics.add(this.#cells, CGROUP_FAILURES + CGROUP_OPS.indexOf(op), 1n);
  }

  /** A writer of one thread's windows; null once every slot is taken. */
  claimSlot(threadId: number): ((window: LoopWindow) => void) | null {
    const slot = Number(Atomics.add(this.#cells, NEXT_SLOT, 1n));
    if (slot >= MAX_THREAD_SLOTS) return null;
    const at = HEADER + slot * SLOT_FIELDS;
    return (window) => {
      Atomics.store(this.#cells, at + 1, BigInt(Math.round(window.lagP99Seconds * 1e9)));
      Atomics.store(this.#cells, at + 2, BigInt(Math.round(window.lagMaxSeconds * 1e9)));
      Atomics.store(this.#cells, at + 3, BigInt(Math.round(window.utilization * 1e6)));
      // Last: a reader skips a slot whose thread id is not yet there.
      Atomics.store(this.#cells, at, BigInt(threadId));
    };
  }

  snapshot(): ThreadStatsSnapshot {
    const cell = (i: number): number => Number(Atomics.load(this.#cells, i));
    const threads: ThreadStatsSnapshot['threads'] = [];
    const used = Math.min(cell(NEXT_SLOT), MAX_THREAD_SLOTS);
    for (let slot = 0; slot < used; slot++) {
      const at = HEADER + slot * SLOT_FIELDS;
      const threadId = cell(at);
      if (threadId === 0) continue;
      threads.push({ threadId, lagP99Seconds: cell(at + 1) / 1e9, lagMaxSeconds: cell(at + 2) / 1e9, utilization: cell(at + 3) / 1e6 });
    }
    return {
      ringFullEvents: cell(RING_FULL),
      ringBlockedSeconds: cell(RING_BLOCKED_MICROS) / 1e6,
      cgroupFailures: Object.fromEntries(CGROUP_OPS.map((op, i) => [op, cell(CGROUP_FAILURES + i)])) as Record<CgroupOp, number>,
      threads,
    };
  }
}
