// A job's output: one append-only log of bytes, stdout and stderr interleaved
// in the order they were read, each byte tagged with its stream. Readers are
// nothing but offsets into it, so a reader that switches from history to live
// output cannot miss what was appended in between, and a hundred readers cost
// no more memory than one.
//
// This in-memory log keeps every byte; the interface is what the rest of the
// server relies on, so a disk-backed log can take its place.
import { StreamId } from '../workers/protocol.js';

export interface OutputSlice {
  stream: StreamId;
  /** Offset of data's first byte in the log. */
  offset: number;
  /** A view into the log: valid for as long as the log lives, never modified. */
  data: Buffer;
}

export interface OutputLog {
  /** Bytes appended so far. */
  readonly length: number;
  /** No more bytes will come. */
  readonly closed: boolean;
  append(stream: StreamId, bytes: Uint8Array): void;
  /** At most maxBytes from offset, all from one stream; null when offset >= length. */
  read(offset: number, maxBytes: number): OutputSlice | null;
  /** Resolves once length > offset or the log is closed; rejects with the signal's reason on abort. */
  waitFor(offset: number, signal?: AbortSignal): Promise<void>;
  close(): void;
}

// Segments start small so the many jobs that print little cost little, and
// grow to a cap so a chatty job's log is a list of large flat buffers.
const FIRST_SEGMENT = 4 * 1024;
const MAX_SEGMENT = 1024 * 1024;

export class MemoryOutputLog implements OutputLog {
  #length = 0;
  #closed = false;
  readonly #segments: Buffer[] = [];
  /** Log offset of each segment's first byte (ascending). */
  readonly #segmentStarts: number[] = [];
  /** Log offset where each run of one stream begins (ascending), and its stream. */
  readonly #runStarts: number[] = [];
  readonly #runStreams: StreamId[] = [];
  #waiters = new Set<() => void>();

  get length(): number {
    return this.#length;
  }

  get closed(): boolean {
    return this.#closed;
  }

  append(stream: StreamId, bytes: Uint8Array): void {
    if (this.#closed) throw new Error('append to a closed output log');
    if (bytes.length === 0) return;
    if (this.#runStreams.length === 0 || this.#runStreams[this.#runStreams.length - 1] !== stream) {
      this.#runStarts.push(this.#length);
      this.#runStreams.push(stream);
    }
    let copied = 0;
    while (copied < bytes.length) {
      const segment = this.#writableSegment();
      const at = this.#length - this.#segmentStarts[this.#segmentStarts.length - 1]!;
      const n = Math.min(bytes.length - copied, segment.length - at);
      segment.set(copied === 0 && n === bytes.length ? bytes : bytes.subarray(copied, copied + n), at);
      copied += n;
      this.#length += n;
    }
    this.#wake();
  }

  read(offset: number, maxBytes: number): OutputSlice | null {
    if (offset >= this.#length || maxBytes <= 0) return null;
    const s = lastAtOrBefore(this.#segmentStarts, offset);
    const segmentStart = this.#segmentStarts[s]!;
    const segment = this.#segments[s]!;
    const r = lastAtOrBefore(this.#runStarts, offset);
    const runEnd = r + 1 < this.#runStarts.length ? this.#runStarts[r + 1]! : this.#length;
    const end = Math.min(offset + maxBytes, runEnd, segmentStart + segment.length, this.#length);
    return {
      stream: this.#runStreams[r]!,
      offset,
      data: segment.subarray(offset - segmentStart, end - segmentStart),
    };
  }

  waitFor(offset: number, signal?: AbortSignal): Promise<void> {
    if (offset < this.#length || this.#closed) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#waiters.delete(wake);
        reject(signal!.reason);
      };
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.#waiters.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake();
  }

  /** How many readers are parked; for tests that check nothing leaks. */
  get waiting(): number {
    return this.#waiters.size;
  }

  #writableSegment(): Buffer {
    const last = this.#segments.length - 1;
    if (last >= 0 && this.#length < this.#segmentStarts[last]! + this.#segments[last]!.length) {
      return this.#segments[last]!;
    }
    const size = last < 0 ? FIRST_SEGMENT : Math.min(this.#segments[last]!.length * 2, MAX_SEGMENT);
    // allocUnsafeSlow: a segment of its own, not a slice of Node's shared pool
    // that would pin unrelated memory; every byte is written before it is read.
    const segment = Buffer.allocUnsafeSlow(size);
    this.#segments.push(segment);
    this.#segmentStarts.push(this.#length);
    return segment;
  }

  #wake(): void {
    if (this.#waiters.size === 0) return;
    const waiters = this.#waiters;
    this.#waiters = new Set();
    for (const wake of waiters) wake();
  }
}

/** Index of the last element <= value in an ascending array whose first element is <= value. */
function lastAtOrBefore(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (sorted[mid]! <= value) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
