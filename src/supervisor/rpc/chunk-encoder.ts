// GetJobsStream's response encoder: every byte of output a client receives
// passes through it. The generated one (ts-proto + @bufbuild/protobuf) copies
// the data three times — into the writer's chunk list, into one array on
// finish(), into a Buffer — before grpc-js copies it once more to frame it.
// This one writes the same wire bytes with a single copy of the data.
import { DataChunk } from '../../gen/jobworker/v1/jobworker.js';

const DATA_TAG = (1 << 3) | 2; // field 1, length-delimited
const STREAM_TAG = (2 << 3) | 0; // field 2, varint
const OFFSET_TAG = (3 << 3) | 0; // field 3, varint
const TIME_TAG = (4 << 3) | 2; // field 4, google.protobuf.Timestamp
const SECONDS_TAG = (1 << 3) | 0;
const NANOS_TAG = (2 << 3) | 0;

function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    size += 1;
  }
  return size;
}

/** Arithmetic, not bitwise: offsets pass 2^32. */
function writeVarint(out: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    out[at++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  out[at++] = value;
  return at;
}

/** `memory(size)` gives the bytes to encode into (by default new ones). */
export function encodeDataChunk(chunk: DataChunk, memory: (size: number) => Buffer = Buffer.allocUnsafe): Buffer {
  const { data, stream, offset, time } = chunk;
  const ms = time?.getTime() ?? 0;
  // Negative enum values and times before 1970 are ten-byte varints; none
  // is ever sent, but the generated encoder stays right for them.
  if (stream < 0 || !Number.isSafeInteger(offset) || offset < 0 || !(ms >= 0)) return Buffer.from(DataChunk.encode(chunk).finish());
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms - seconds * 1000) * 1_000_000;
  let timeSize = 0;
  if (seconds !== 0) timeSize += 1 + varintSize(seconds);
  if (nanos !== 0) timeSize += 1 + varintSize(nanos);
  let size = 0;
  if (data.length !== 0) size += 1 + varintSize(data.length) + data.length;
  if (stream !== 0) size += 1 + varintSize(stream);
  if (offset !== 0) size += 1 + varintSize(offset);
  if (time) size += 1 + varintSize(timeSize) + timeSize;
  const out = memory(size);
  let at = 0;
  if (data.length !== 0) {
    out[at++] = DATA_TAG;
    at = writeVarint(out, at, data.length);
    out.set(data, at);
    at += data.length;
  }
  if (stream !== 0) {
    out[at++] = STREAM_TAG;
    at = writeVarint(out, at, stream);
  }
  if (offset !== 0) {
    out[at++] = OFFSET_TAG;
    at = writeVarint(out, at, offset);
  }
  if (time) {
    out[at++] = TIME_TAG;
    at = writeVarint(out, at, timeSize);
    if (seconds !== 0) {
      out[at++] = SECONDS_TAG;
      at = writeVarint(out, at, seconds);
    }
    if (nanos !== 0) {
      out[at++] = NANOS_TAG;
      writeVarint(out, at, nanos);
    }
  }
  return out;
}

/**
 * Memory for one stream's encoded chunks, reused. grpc-js copies a message
 * into its own frame before it calls a write back, so a chunk's memory is
 * free again then; new memory for every chunk (256 KiB at a time while few
 * streams are open) made the collector a sixth of the RPC thread's time
 * while one follower streamed flat out (bench scenario 2's profile).
 */
export class ChunkMemory {
  /** Free buffers, at most `keep`: one per chunk a stream may have in flight is enough. */
  readonly #free: Buffer[] = [];
  /** Counts release() calls: a buffer taken before the last one is not kept when it comes back. */
  #generation = 0;

  constructor(readonly keep: number) {}

  /** The chunk encoded, and what to call once grpc-js has called its write back (never, for a call that went away). */
  encode(chunk: DataChunk): { message: Buffer; written: () => void } {
    let memory: Buffer | undefined;
    const message = encodeDataChunk(chunk, (size) => {
      // A line or two, or the small chunks of many open streams: not kept.
      if (size < REUSED_CHUNK_BYTES) return Buffer.allocUnsafe(size);
      memory = this.#take(size);
      return memory.subarray(0, size);
    });
    const generation = this.#generation;
    return { message, written: () => memory && generation === this.#generation && this.#give(memory) };
  }

  /** Lets the free buffers go: for a stream that waits for output, and may wait long. */
  release(): void {
    this.#free.length = 0;
    this.#generation += 1;
  }

  #take(size: number): Buffer {
    const at = this.#free.findIndex((free) => free.length >= size);
    if (at >= 0) return this.#free.splice(at, 1)[0]!;
    // A little over: the fields around the data vary by a few bytes from chunk to chunk.
    return Buffer.allocUnsafeSlow(size + SLACK);
  }

  #give(memory: Buffer): void {
    this.#free.push(memory);
    // The largest are kept: the stream's chunks are as big as they have ever been or will soon be again.
    if (this.#free.length > this.keep) this.#free.sort((a, b) => b.length - a.length).length = this.keep;
  }
}

/**
 * Encoded chunks smaller than this are not reused: only the chunks of the
 * few fastest streams are (job-service.ts chunkBytes gives chunks this big
 * to at most 32 open streams), so what all streams keep is bounded by about
 * twice the chunk budget. A hundred followers of 64 KiB each keeping theirs
 * took the server past its memory bound (bench scenario 7: 301 MB).
 */
export const REUSED_CHUNK_BYTES = 128 * 1024;
/** Room for the fields around a chunk's data (tag, lengths, stream, offset, time). */
const SLACK = 64;
