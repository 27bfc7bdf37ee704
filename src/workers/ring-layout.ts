// The job output ring: a single-producer single-consumer byte ring in a
// SharedArrayBuffer. The job-supervisor thread (ring-writer.ts) is the only
// writer; the main thread (supervisor/output/ring-reader.ts) the only reader.
// Of each other's code, this file, protocol.ts and thread-stats.ts are all
// the two sides share.
//
//   state (Int32Array over the first STATE_BYTES)            data (capacity bytes)
//   +-------------+------------+--------+-------------+     +---------------------+
//   | WRITE_INDEX | READ_INDEX | CLOSED | WRITER_WAKE |     | . . r r r r w . . . |
//   +-------------+------------+--------+-------------+     +---------------------+
//     writer        reader       writer*  writer               ^read     ^write
//                                (* the reader, once the writer's thread is dead)
//
// WRITE_INDEX and READ_INDEX count bytes ever written / consumed, modulo
// 2^32 (stored as int32, read as uint32). A byte's place in `data` is
// index & (capacity - 1), so capacity is a power of two well below 2^31 and
// `used = (write - read) >>> 0` is right across wrap-around.
//   empty: used == 0          full: used == capacity
// The writer only advances WRITE_INDEX (after the bytes are in place), the
// reader only READ_INDEX (after it has copied them out): each index has one
// owner, so plain Atomics.store is enough and no CAS loop is needed.
//
// Data is framed as records so that stdout and stderr share one ring and keep
// the order in which they were read:
//   [u32 LE header: bit 31 = stream (0 stdout, 1 stderr), bits 0-30 = length]
//   [length bytes]
// A record may wrap around the end of `data`, header included. The writer
// splits a chunk into several records when the free space is short, and never
// writes a record with fewer than MIN_RECORD bytes of free space.
//
// Waking: the reader parks on WRITER_WAKE with Atomics.waitAsync; the writer
// increments it and notifies after every advance of WRITE_INDEX and after
// setting CLOSED. (Parking on WRITE_INDEX itself would lose the wake-up of a
// close that lands between the reader's last check and its wait, since
// closing does not move WRITE_INDEX.) The writer,
// when the ring is full, parks on READ_INDEX the same way and the reader
// notifies after every advance. Neither side ever blocks its thread. (A
// pending waitAsync does not keep an event loop alive: both sides live in
// threads held open by other handles: the gRPC server, piscina's port.)
//
// CLOSED is set once, after the last record: a reader that sees CLOSED and
// then used == 0 has every byte. Should the writer's thread die, the reader
// sets it instead (RingReader.abandon): nobody will ever write again.

export const WRITE_INDEX = 0;
export const READ_INDEX = 1;
export const CLOSED = 2;
export const WRITER_WAKE = 3;
const STATE_SLOTS = 4; // keeps data 16-byte aligned
export const STATE_BYTES = STATE_SLOTS * Int32Array.BYTES_PER_ELEMENT;

export const HEADER_BYTES = 4;
export const STREAM_BIT = 0x8000_0000;
export const LENGTH_MASK = 0x7fff_ffff;
/** A header plus at least one byte of payload. */
export const MIN_RECORD = HEADER_BYTES + 1;

export const DEFAULT_RING_CAPACITY = 256 * 1024;
export const MIN_RING_CAPACITY = 64;

export interface RingViews {
  state: Int32Array;
  data: Uint8Array;
  capacity: number;
  mask: number;
}

export function createRing(capacity = DEFAULT_RING_CAPACITY): SharedArrayBuffer {
  if (!Number.isInteger(capacity) || capacity < MIN_RING_CAPACITY || capacity > 1 << 30 || (capacity & (capacity - 1)) !== 0) {
    throw new RangeError(`ring capacity must be a power of two from ${MIN_RING_CAPACITY} to 2^30, got ${capacity}`);
  }
  const bytes = STATE_BYTES + capacity;
  // A growable buffer (even one that never grows) is reserved with mmap and
  // committed page by page as it is touched, so a quiet job costs the pages
  // its output has reached. A fixed-size one comes from malloc: once glibc
  // has raised its mmap threshold (any freed ring does), that is calloc on
  // reused heap, every page zeroed and resident at once.
  return new SharedArrayBuffer(bytes, { maxByteLength: bytes });
}

export function ringViews(sab: SharedArrayBuffer): RingViews {
  const capacity = sab.byteLength - STATE_BYTES;
  return {
    state: new Int32Array(sab, 0, STATE_SLOTS),
    data: new Uint8Array(sab, STATE_BYTES, capacity),
    capacity,
    mask: capacity - 1,
  };
}

/** An empty, open ring again, for another job: only once its writer's task and its reader are both done with it. */
export function resetRing(sab: SharedArrayBuffer): void {
  new Int32Array(sab, 0, STATE_SLOTS).fill(0);
}
