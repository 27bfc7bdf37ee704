import test from 'ava';
import { DataChunk, OutputStream } from '../../../src/gen/jobworker/v1/jobworker.js';
import { ChunkMemory, encodeDataChunk } from '../../../src/supervisor/rpc/chunk-encoder.js';

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

test('a stream reuses the memory of a chunk once grpc-js has written it, never one still in flight', (t) => {
  const memory = new ChunkMemory(2);
  const chunk = (n: number, size = 262_144): DataChunk => ({ data: Buffer.alloc(size, n), stream: OutputStream.OUTPUT_STREAM_STDOUT, offset: n * size, time: undefined });
  const first = memory.encode(chunk(1));
  const second = memory.encode(chunk(2));
  t.not(first.message.buffer, second.message.buffer, 'two chunks in flight, two buffers');
  t.deepEqual(first.message, generated(chunk(1)));
  t.deepEqual(second.message, generated(chunk(2)));
  first.written();
  const third = memory.encode(chunk(3));
  t.is(third.message.buffer, first.message.buffer, 'the written chunk\'s memory is reused');
  t.deepEqual(third.message, generated(chunk(3)));
  t.deepEqual(second.message, generated(chunk(2)), 'the chunk still in flight is untouched');
  third.written();
  const smaller = memory.encode(chunk(4, 131_072));
  t.is(smaller.message.buffer, first.message.buffer, 'a free buffer big enough is used for a smaller chunk');
  t.deepEqual(smaller.message, generated(chunk(4, 131_072)));
  smaller.written();
  memory.release();
  const after = memory.encode(chunk(5));
  t.not(after.message.buffer, first.message.buffer, 'nothing is kept once released');
});

test('small chunks (a line, or the 64 KiB chunks of a hundred open streams) are not kept, and do not keep a stream from reusing its big ones', (t) => {
  const memory = new ChunkMemory(2);
  const line = { data: Buffer.from('line\n'), stream: OutputStream.OUTPUT_STREAM_STDOUT, offset: 1, time: undefined };
  const sixtyFour = { data: Buffer.alloc(65_536, 7), stream: OutputStream.OUTPUT_STREAM_STDOUT, offset: 2, time: undefined };
  for (const small of [line, line, sixtyFour, sixtyFour]) {
    const encoded = memory.encode(small);
    t.deepEqual(encoded.message, generated(small));
    encoded.written();
  }
  const big = (n: number) => ({ data: Buffer.alloc(262_144, n), stream: OutputStream.OUTPUT_STREAM_STDOUT, offset: n, time: undefined });
  const first = memory.encode(big(1));
  first.written();
  t.is(memory.encode(big(2)).message.buffer, first.message.buffer);
});

test('a chunk still in flight when its stream lets its memory go is not kept when grpc-js calls it back', (t) => {
  const memory = new ChunkMemory(2);
  const big = (n: number) => ({ data: Buffer.alloc(262_144, n), stream: OutputStream.OUTPUT_STREAM_STDOUT, offset: n, time: undefined });
  const inFlight = memory.encode(big(1));
  memory.release();
  inFlight.written();
  t.not(memory.encode(big(2)).message.buffer, inFlight.message.buffer, 'released: the late buffer was dropped');
});
