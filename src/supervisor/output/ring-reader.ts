// The consumer side of a job's output ring (layout and invariants in
// workers/ring-layout.ts). Runs on the main thread: it never blocks, it parks
// on Atomics.waitAsync until the writer has published more.
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import {
  CLOSED,
  HEADER_BYTES,
  LENGTH_MASK,
  READ_INDEX,
  STREAM_BIT,
  WRITE_INDEX,
  WRITER_WAKE,
  ringViews,
  type RingViews,
} from '../../workers/ring-layout.js';
import { StreamId } from '../../workers/protocol.js';

/** Receives views into the shared ring: copy what you keep before returning. */
export type RingSink = (stream: StreamId, bytes: Uint8Array) => void;

/** Where a pump puts what it drains: it takes what room() allows, then waits. */
export interface PumpTarget {
  append(stream: StreamId, bytes: Uint8Array, time: number): void;
  room(): number;
  whenRoom(): Promise<void>;
}

export class RingReader {
  readonly #ring: RingViews;

  constructor(sab: SharedArrayBuffer) {
    this.#ring = ringViews(sab);
  }

  /**
   * Hands published records to `sink` until they run out or `budget` bytes
   * have been consumed (a record is never split), frees their space; returns
   * bytes consumed.
   */
  drain(sink: RingSink, budget = Number.POSITIVE_INFINITY): number {
    const { state, data, mask, capacity } = this.#ring;
    const start = Atomics.load(state, READ_INDEX) >>> 0;
    const end = Atomics.load(state, WRITE_INDEX) >>> 0;
    let at = start;
    while (at !== end && ((at - start) >>> 0) < budget) {
      const header =
        (data[at & mask]! | (data[(at + 1) & mask]! << 8) | (data[(at + 2) & mask]! << 16) | (data[(at + 3) & mask]! << 24)) >>> 0;
      const length = header & LENGTH_MASK;
      const stream = header & STREAM_BIT ? StreamId.Stderr : StreamId.Stdout;
      const from = (at + HEADER_BYTES) & mask;
      const first = Math.min(length, capacity - from);
      sink(stream, data.subarray(from, from + first));
      if (first < length) sink(stream, data.subarray(0, length - first));
      at = (at + HEADER_BYTES + length) >>> 0;
    }
    if (at === start) return 0;
    Atomics.store(state, READ_INDEX, at | 0);
    Atomics.notify(state, READ_INDEX);
    return (at - start) >>> 0;
  }

  /** True once the writer has closed and every record has been drained. */
  get finished(): boolean {
    const { state } = this.#ring;
    // CLOSED first: it is set after the last WRITE_INDEX store.
    return Atomics.load(state, CLOSED) === 1 && Atomics.load(state, WRITE_INDEX) === Atomics.load(state, READ_INDEX);
  }

  /**
   * The writer's thread has died and will never close the ring: closes it
   * from this side (the writer being gone, nobody else writes CLOSED now), so
   * that a pump drains whatever was published and ends instead of parking
   * for ever.
   */
  abandon(): void {
    const { state } = this.#ring;
    Atomics.store(state, CLOSED, 1);
    Atomics.add(state, WRITER_WAKE, 1);
    Atomics.notify(state, WRITER_WAKE);
  }

  /** Resolves when the writer has published something (or closed) since the call. */
  async waitForWriter(): Promise<void> {
    const { state } = this.#ring;
    const wake = Atomics.load(state, WRITER_WAKE);
    if (Atomics.load(state, WRITE_INDEX) !== Atomics.load(state, READ_INDEX) || Atomics.load(state, CLOSED) === 1) return;
    const result = Atomics.waitAsync(state, WRITER_WAKE, wake);
    if (result.async) await result.value;
  }
}

/**
 * About how many bytes all the rings together hand over per turn of the
 * event loop (each busy ring moves at least MIN_PASS, and whole records).
 * Each pass copies its bytes into a job's output tail on the RPC thread, and a call
 * waits for the passes queued ahead of it: with four jobs writing flat
 * out, a full ring (256 KiB) per job per turn doubled GetJob's p99 (bench
 * scenario 3). Split among the rings that have data, one busy job still
 * moves a whole ring per turn, which single-stream throughput needs.
 */
const TURN_BUDGET = 256 * 1024;
const MIN_PASS = 16 * 1024;
/** Pumps with data to move: the ones sharing TURN_BUDGET. */
let busyPumps = 0;
/** Pumps not yet finished, busy or parked: for tests that check none is left behind. */
let livePumps = 0;

export function pumpsRunning(): number {
  return livePumps;
}

/**
 * Moves everything from the ring into `target` until the writer closes it.
 * Yields to the event loop between passes, so that a job writing flat out
 * cannot starve RPCs on the main thread.
 */
export async function pumpRing(reader: RingReader, target: PumpTarget): Promise<void> {
  // One arrival time per pass: what one pass moves arrived together.
  let now = 0;
  const sink: RingSink = (stream, bytes) => target.append(stream, bytes, now);
  let busy = false;
  livePumps += 1;
  const setBusy = (value: boolean) => {
    if (value !== busy) busyPumps += value ? 1 : -1;
    busy = value;
  };
  try {
    for (;;) {
      const room = target.room();
      if (room <= 0) {
        // The output is not being written as fast as the job writes it:
        // the ring fills and the job waits on its pipe.
        setBusy(false);
        await target.whenRoom();
        continue;
      }
      setBusy(true);
      now = Date.now();
      if (reader.drain(sink, Math.min(room, Math.max(MIN_PASS, TURN_BUDGET / busyPumps))) > 0) {
        await yieldToEventLoop();
        continue;
      }
      setBusy(false);
      if (reader.finished) return;
      await reader.waitForWriter();
    }
  } finally {
    setBusy(false);
    livePumps -= 1;
  }
}
