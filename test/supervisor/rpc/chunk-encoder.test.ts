import test from 'ava';
import { DataChunk, OutputStream } from '../../../src/gen/jobworker/v1/jobworker.js';
import { encodeDataChunk } from '../../../src/supervisor/rpc/chunk-encoder.js';

const generated = (chunk: DataChunk) => Buffer.from(DataChunk.encode(chunk).finish());

test('writes the bytes the generated encoder writes, at every varint width of length and offset', (t) => {
  const lengths = [0, 1, 127, 128, 16_383, 16_384, 65_536];
  const offsets = [0, 1, 127, 128, 2 ** 21 - 1, 2 ** 21, 2 ** 32 - 1, 2 ** 32, 2 ** 35 + 12_345, Number.MAX_SAFE_INTEGER];
  const streams = [OutputStream.OUTPUT_STREAM_UNSPECIFIED, OutputStream.OUTPUT_STREAM_STDOUT, OutputStream.OUTPUT_STREAM_STDERR];
  for (const length of lengths) {
    const data = Buffer.alloc(length, length % 251);
    for (const offset of offsets) {
      for (const stream of streams) {
        const chunk = { data, stream, offset, time: undefined };
        t.deepEqual(encodeDataChunk(chunk), generated(chunk), JSON.stringify({ length, offset, stream }));
      }
    }
  }
});

test('decodes back to the chunk it encoded', (t) => {
  const chunk = { data: Buffer.from('hello\n'), stream: OutputStream.OUTPUT_STREAM_STDERR, offset: 2 ** 33 + 7, time: new Date(1_764_417_600_123) };
  const decoded = DataChunk.decode(encodeDataChunk(chunk));
  t.deepEqual({ ...decoded, data: Buffer.from(decoded.data) }, chunk);
});

test('an out-of-range enum value still encodes as the generated encoder does', (t) => {
  const chunk = { data: Buffer.from('x'), stream: -1 as OutputStream, offset: 3, time: undefined };
  t.deepEqual(encodeDataChunk(chunk), generated(chunk));
});

test('writes the bytes the generated encoder writes for chunk times', (t) => {
  for (const ms of [0, 1, 999, 1000, 1_764_417_600_000, 1_764_417_600_123, 2 ** 40 + 7]) {
    const chunk = { data: Buffer.from('line\n'), stream: OutputStream.OUTPUT_STREAM_STDOUT, offset: 12, time: new Date(ms) };
    t.deepEqual(encodeDataChunk(chunk), generated(chunk), String(ms));
  }
});
