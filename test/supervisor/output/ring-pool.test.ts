import test from 'ava';
import { RingPool } from '../../../src/supervisor/output/ring-pool.js';
import { RingReader } from '../../../src/supervisor/output/ring-reader.js';
import { RingWriter } from '../../../src/workers/ring-writer.js';
import { StreamId } from '../../../src/workers/protocol.js';

test('a ring given back is the next one taken, empty and open again, whatever its last job left in it', (t) => {
  const pool = new RingPool(1024);
  const ring = pool.take();
  const writer = new RingWriter(ring);
  t.is(writer.write(StreamId.Stdout, Buffer.from('the last job\'s bytes')), 20);
  writer.close();
  pool.give(ring);
  const again = pool.take();
  t.is(again, ring);
  // A reader of the new job finds nothing, and the ring is not closed.
  const reader = new RingReader(again);
  const read = (): [StreamId, string][] => {
    const out: [StreamId, string][] = [];
    reader.drain((stream, bytes) => out.push([stream, Buffer.from(bytes).toString()]));
    return out;
  };
  t.deepEqual(read(), []);
  t.false(reader.finished);
  const next = new RingWriter(again);
  t.is(next.write(StreamId.Stderr, Buffer.from('new')), 3);
  t.deepEqual(read(), [[StreamId.Stderr, 'new']]);
  // Empty again: a new ring.
  t.not(pool.take(), again);
});

test('a ring given back twice is handed out once: two jobs never share one', (t) => {
  const pool = new RingPool(1024);
  const ring = pool.take();
  pool.give(ring);
  pool.give(ring);
  t.is(pool.take(), ring);
  t.not(pool.take(), ring);
});
