// GetJobsStream's response encoder: every byte of output a client receives
// passes through it. The generated one (ts-proto + @bufbuild/protobuf) copies
// the data three times — into the writer's chunk list, into one array on
// finish(), into a Buffer — before grpc-js copies it once more to frame it.
// This one writes the same wire bytes with a single copy of the data.
import { DataChunk } from '../gen/jobworker/v1/jobworker.js';

const DATA_TAG = (1 << 3) | 2; // field 1, length-delimited
const STREAM_TAG = (2 << 3) | 0; // field 2, varint
const OFFSET_TAG = (3 << 3) | 0; // field 3, varint

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

export function encodeDataChunk(chunk: DataChunk): Buffer {
  const { data, stream, offset } = chunk;
  // Negative enum values are ten-byte varints; none is ever sent, but the
  // generated encoder stays right for them.
  if (stream < 0 || !Number.isSafeInteger(offset) || offset < 0) return Buffer.from(DataChunk.encode(chunk).finish());
  let size = 0;
  if (data.length !== 0) size += 1 + varintSize(data.length) + data.length;
  if (stream !== 0) size += 1 + varintSize(stream);
  if (offset !== 0) size += 1 + varintSize(offset);
  const out = Buffer.allocUnsafe(size);
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
    writeVarint(out, at, offset);
  }
  return out;
}
