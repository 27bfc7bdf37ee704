import test from 'ava';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { decodeDataChunk } from '../../src/client/chunk-decoder.js';
import { DataChunk, OutputStream } from '../../src/gen/jobworker/v1/jobworker.js';

const encode = (chunk: DataChunk) => Buffer.from(DataChunk.encode(chunk).finish());
const plain = (chunk: DataChunk) => ({ ...chunk, data: Buffer.from(chunk.data) });

test('reads what the generated decoder reads, at every varint width of length and offset, with and without a time', (t) => {
  for (const length of [0, 1, 127, 128, 16_384, 262_144]) {
    for (const offset of [0, 1, 128, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
      for (const stream of [OutputStream.OUTPUT_STREAM_UNSPECIFIED, OutputStream.OUTPUT_STREAM_STDERR, -1 as OutputStream]) {
        for (const time of [undefined, new Date(0), new Date(1_764_417_600_123)]) {
          const bytes = encode({ data: Buffer.alloc(length, length % 251), stream, offset, time });
          t.deepEqual(plain(decodeDataChunk(bytes)), plain(DataChunk.decode(bytes)), JSON.stringify({ length, offset, stream, time }));
        }
      }
    }
  }
});

test('the data is a view of the message, not a copy', (t) => {
  const bytes = encode({ data: Buffer.from('hello\n'), stream: OutputStream.OUTPUT_STREAM_STDOUT, offset: 7, time: undefined });
  const chunk = decodeDataChunk(bytes);
  t.is(chunk.data.toString(), 'hello\n');
  t.is(chunk.data.buffer, bytes.buffer);
});

test('skips fields it does not know, as the generated decoder does, and refuses a message cut short', (t) => {
  const writer = new BinaryWriter();
  writer.uint32((9 << 3) | 2).bytes(Buffer.from('future field'));
  writer.uint32((1 << 3) | 2).bytes(Buffer.from('data'));
  writer.uint32((10 << 3) | 0).uint64(12345);
  writer.uint32((3 << 3) | 0).uint64(99);
  writer.uint32((11 << 3) | 5).fixed32(7);
  const bytes = Buffer.from(writer.finish());
  t.deepEqual(plain(decodeDataChunk(bytes)), plain(DataChunk.decode(bytes)));
  t.is(decodeDataChunk(bytes).offset, 99);
  const cut = bytes.subarray(0, bytes.length - 3);
  t.throws(() => DataChunk.decode(cut));
  t.throws(() => decodeDataChunk(cut));
});
