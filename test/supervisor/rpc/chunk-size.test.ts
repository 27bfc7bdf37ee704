import test from 'ava';
import { MAX_CHUNK_BYTES, MIN_CHUNK_BYTES, chunkBytes } from '../../../src/supervisor/rpc/job-service.js';

test('output chunks: the largest while few streams are open, halving as more share the budget, never below the least', (t) => {
  t.is(chunkBytes(1), MAX_CHUNK_BYTES);
  t.is(chunkBytes(16), 256 * 1024);
  t.is(chunkBytes(17), 128 * 1024);
  t.is(chunkBytes(32), 128 * 1024);
  t.is(chunkBytes(33), 64 * 1024);
  t.is(chunkBytes(100), MIN_CHUNK_BYTES);
  t.is(chunkBytes(10_000), MIN_CHUNK_BYTES);
});
