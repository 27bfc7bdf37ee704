// The producer side of a job's output ring (layout and invariants in
// ring-layout.ts). Runs on a job-supervisor thread.
import {
  CLOSED,
  HEADER_BYTES,
  LENGTH_MASK,
  MIN_RECORD,
  READ_INDEX,
  STREAM_BIT,
  WRITE_INDEX,
  WRITER_WAKE,
  ringViews,
  type RingViews,
} from './ring-layout.js';
import { StreamId } from './protocol.js';

export class RingWriter {
  readonly #ring: RingViews;
  #closed = false;

  constructor(sab: SharedArrayBuffer) {
    this.#ring = ringViews(sab);
  }

  /**
   * Copies as much of `chunk` as fits, as one record, and wakes the reader.
   * Returns how many payload bytes were taken (0 when the ring is full).
   */
  write(stream: StreamId, chunk: Uint8Array): number {
    // After close the reader may already have finished: a write could only
    // land unseen. The one writer that gets here is a pump abandoned because
    // a process outside the job held its pipes; its bytes are dropped.
    if (this.#closed) return chunk.length;
    const { state, capacity } = this.#ring;
    const write = Atomics.load(state, WRITE_INDEX) >>> 0;
    const free = capacity - ((write - (Atomics.load(state, READ_INDEX) >>> 0)) >>> 0);
    if (free < MIN_RECORD || chunk.length === 0) return 0;
    const length = Math.min(chunk.length, free - HEADER_BYTES, LENGTH_MASK);
    const header = (stream === StreamId.Stderr ? STREAM_BIT : 0) | length;
    this.#put(write, header & 0xff, (header >>> 8) & 0xff, (header >>> 16) & 0xff, header >>> 24);
    this.#copyIn(write + HEADER_BYTES, length === chunk.length ? chunk : chunk.subarray(0, length));
    Atomics.store(state, WRITE_INDEX, (write + HEADER_BYTES + length) | 0);
    this.#wakeReader();
    return length;
  }

  /** Resolves once the reader has consumed something since the last write attempt. */
  async waitForSpace(): Promise<void> {
    const { state, capacity } = this.#ring;
    const read = Atomics.load(state, READ_INDEX);
    const used = ((Atomics.load(state, WRITE_INDEX) >>> 0) - (read >>> 0)) >>> 0;
    if (capacity - used >= MIN_RECORD) return;
    const result = Atomics.waitAsync(state, READ_INDEX, read);
    if (result.async) await result.value;
  }

  /** Marks the end of output. Every record written before is still delivered. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    Atomics.store(this.#ring.state, CLOSED, 1);
    this.#wakeReader();
  }

  #wakeReader(): void {
    Atomics.add(this.#ring.state, WRITER_WAKE, 1);
    Atomics.notify(this.#ring.state, WRITER_WAKE);
  }

  #put(at: number, b0: number, b1: number, b2: number, b3: number): void {
    const { data, mask } = this.#ring;
    data[at & mask] = b0;
    data[(at + 1) & mask] = b1;
    data[(at + 2) & mask] = b2;
    data[(at + 3) & mask] = b3;
  }

  #copyIn(at: number, bytes: Uint8Array): void {
    const { data, mask, capacity } = this.#ring;
    const start = at & mask;
    const first = Math.min(bytes.length, capacity - start);
    data.set(first === bytes.length ? bytes : bytes.subarray(0, first), start);
    if (first < bytes.length) data.set(bytes.subarray(first), 0);
  }
}
