// GetJobsStream's response decoder on the client: every byte of output a
// client receives passes through it. The generated one copies each chunk's
// data out of the message grpc-js reassembled (Buffer.from of a view), into
// new memory of the chunk's size, up to 256 KiB, for every chunk: a copy and
// as much garbage as output. This one gives a view of the message
// instead; grpc-js makes a new buffer for every message and never touches
// it again, so the view stays valid for as long as its reader keeps it.
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import { Timestamp } from '../gen/google/protobuf/timestamp.js';
import { JobServiceService, type DataChunk, type JobServiceClient } from '../gen/jobworker/v1/jobworker.js';

const DATA_TAG = (1 << 3) | 2;
const STREAM_TAG = (2 << 3) | 0;
const OFFSET_TAG = (3 << 3) | 0;
const TIME_TAG = (4 << 3) | 2;

/** The chunk the bytes encode, as the generated decoder reads it, its data a view of `bytes`. */
export function decodeDataChunk(bytes: Uint8Array): DataChunk {
  const reader = new BinaryReader(bytes);
  const chunk: DataChunk = { data: Buffer.alloc(0), stream: 0, offset: 0, time: undefined };
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    switch (tag) {
      case DATA_TAG: {
        const view = reader.bytes();
        chunk.data = Buffer.from(view.buffer, view.byteOffset, view.byteLength);
        continue;
      }
      case STREAM_TAG:
        chunk.stream = reader.int32();
        continue;
      case OFFSET_TAG:
        chunk.offset = safeNumber(reader.uint64());
        continue;
      case TIME_TAG: {
        const { seconds, nanos } = Timestamp.decode(reader, reader.uint32());
        chunk.time = new Date((seconds || 0) * 1_000 + (nanos || 0) / 1_000_000);
        continue;
      }
    }
    // An end-group tag, or none: where the generated decoder stops too.
    if ((tag & 7) === 4 || tag === 0) break;
    reader.skip(tag & 7);
  }
  return chunk;
}

function safeNumber(int64: bigint | string): number {
  const value = Number(int64.toString());
  if (value > Number.MAX_SAFE_INTEGER) throw new Error('Value is larger than Number.MAX_SAFE_INTEGER');
  return value;
}

/** The generated client's constructor, with output chunks decoded by decodeDataChunk. */
export const JobServiceViewingClient = makeGenericClientConstructor(
  { ...JobServiceService, getJobsStream: { ...JobServiceService.getJobsStream, responseDeserialize: decodeDataChunk } },
  'jobworker.v1.JobService',
) as unknown as typeof JobServiceClient;
