import test from 'ava';
import { randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { RingReader, pumpRing } from '../../src/supervisor/output/ring-reader.js';
import { StreamId } from '../../src/workers/protocol.js';
import { MIN_RECORD, createRing } from '../../src/workers/ring-layout.js';
import { RingWriter } from '../../src/workers/ring-writer.js';

interface Received {
  stream: StreamId;
  bytes: Buffer;
}

function drainAll(reader: RingReader): Received[] {
  const out: Received[] = [];
  reader.drain((stream, bytes) => out.push({ stream, bytes: Buffer.from(bytes) }));
  return out;
}

function sameBytes(t: { true: (v: boolean, m?: string) => void }, actual: Buffer, expected: Buffer, message?: string): void {
  // ava's deep equality walks a Buffer byte by byte: too slow and deep for megabytes.
  t.true(actual.length === expected.length && actual.equals(expected), message ?? `${actual.length} bytes vs ${expected.length} expected, or content differs`);
}

function concat(records: Received[], stream?: StreamId): Buffer {
  return Buffer.concat(records.filter((r) => stream === undefined || r.stream === stream).map((r) => r.bytes));
}

test('ring: rejects a capacity that is not a power of two', (t) => {
  t.throws(() => createRing(1000), { instanceOf: RangeError });
  t.throws(() => createRing(32), { instanceOf: RangeError });
});

test('ring: a drain with a budget stops at the first record boundary past it; the next drain goes on from there', (t) => {
  const sab = createRing(1024);
  const writer = new RingWriter(sab);
  const reader = new RingReader(sab);
  for (const text of ['aaaa', 'bbbb', 'cccc']) t.is(writer.write(StreamId.Stdout, Buffer.from(text)), 4);
  const first: string[] = [];
  // Each record is a 4-byte header and 4 bytes: a budget of 9 takes two whole records.
  t.is(reader.drain((_stream, bytes) => first.push(Buffer.from(bytes).toString()), 9), 16);
  t.deepEqual(first, ['aaaa', 'bbbb']);
  const rest = drainAll(reader);
  t.deepEqual(rest.map((r) => r.bytes.toString()), ['cccc']);
});

test('ring: a record comes out with its stream and bytes', (t) => {
  const sab = createRing(64);
  const writer = new RingWriter(sab);
  const reader = new RingReader(sab);
  t.is(writer.write(StreamId.Stderr, Buffer.from('oops')), 4);
  t.is(writer.write(StreamId.Stdout, Buffer.from('ok')), 2);
  const got = drainAll(reader);
  t.deepEqual(got.map((r) => [r.stream, r.bytes.toString()]), [
    [StreamId.Stderr, 'oops'],
    [StreamId.Stdout, 'ok'],
  ]);
});

test('ring: a full ring takes no more until the reader frees space', (t) => {
  const sab = createRing(64);
  const writer = new RingWriter(sab);
  const reader = new RingReader(sab);
  const data = randomBytes(100);
  const first = writer.write(StreamId.Stdout, data);
  t.is(first, 64 - 4, 'one record fills the ring, header included');
  t.is(writer.write(StreamId.Stdout, data.subarray(first)), 0);
  t.deepEqual(concat(drainAll(reader)), data.subarray(0, first));
  const second = writer.write(StreamId.Stdout, data.subarray(first));
  t.is(second, 40);
  t.deepEqual(concat(drainAll(reader)), data.subarray(first));
});

test('ring: never writes a record into less than a header and one byte', (t) => {
  const sab = createRing(64);
  const writer = new RingWriter(sab);
  const reader = new RingReader(sab);
  t.is(writer.write(StreamId.Stdout, Buffer.alloc(64 - 4 - MIN_RECORD + 1)), 64 - 4 - MIN_RECORD + 1);
  t.is(writer.write(StreamId.Stdout, Buffer.alloc(10)), 0, 'free space is MIN_RECORD - 1');
  drainAll(reader);
  t.is(writer.write(StreamId.Stdout, Buffer.alloc(10)), 10);
});

const wrapAround = test.macro({
  exec(t, capacity: number, chunkSizes: number[]) {
    const sab = createRing(capacity);
    const writer = new RingWriter(sab);
    const reader = new RingReader(sab);
    const sent: Received[] = [];
    const received: Received[] = [];
    let i = 0;
    // Enough rounds to wrap the indexes many times over.
    for (let round = 0; round < 2000; round++) {
      const size = chunkSizes[i++ % chunkSizes.length]!;
      const stream = round % 3 === 0 ? StreamId.Stderr : StreamId.Stdout;
      let chunk = randomBytes(size);
      while (chunk.length > 0) {
        const n = writer.write(stream, chunk);
        if (n > 0) sent.push({ stream, bytes: chunk.subarray(0, n) });
        chunk = chunk.subarray(n);
        if (n === 0 || round % 2 === 0) received.push(...drainAll(reader));
      }
    }
    received.push(...drainAll(reader));
    sameBytes(t, concat(received, StreamId.Stdout), concat(sent, StreamId.Stdout));
    sameBytes(t, concat(received, StreamId.Stderr), concat(sent, StreamId.Stderr));
    t.deepEqual(received.map((r) => r.stream).filter((s, k, all) => k === 0 || all[k - 1] !== s), sent.map((r) => r.stream).filter((s, k, all) => k === 0 || all[k - 1] !== s), 'stream order kept');
  },
  title: (_title, capacity: number, chunkSizes: number[]) => `ring: wrap-around keeps every byte and the order (capacity ${capacity}, chunks ${chunkSizes.join('/')})`,
});

test(wrapAround, 64, [1]);
test(wrapAround, 64, [3, 7, 59, 60, 61, 200]);
test(wrapAround, 128, [5, 123, 124, 127, 128, 129]);
test(wrapAround, 4096, [1, 4095, 4096, 17, 65536]);

test('ring: indexes that wrap past 2^32 keep working', (t) => {
  const sab = createRing(64);
  const state = new Int32Array(sab, 0, 4);
  // Start both indexes just below 2^32 (as int32: -10).
  state[0] = -10;
  state[1] = -10;
  const writer = new RingWriter(sab);
  const reader = new RingReader(sab);
  const data = randomBytes(50);
  t.is(writer.write(StreamId.Stdout, data), 50);
  t.deepEqual(concat(drainAll(reader)), data);
  t.is(state[0], 44, 'write index wrapped to 44');
  t.is(state[0], state[1]);
});

test('ring: a writer on another thread and pumpRing on this one move 32 MiB intact', async (t) => {
  const sab = createRing(4096);
  const total = 32 * 1024 * 1024;
  const worker = new Worker(
    `
    const { workerData } = require('node:worker_threads');
    const { createHash } = require('node:crypto');
    // A pending Atomics.waitAsync does not keep a thread's event loop alive.
    const keepAlive = setInterval(() => {}, 1000);
    import(workerData.writer).then(async ({ RingWriter }) => {
      const writer = new RingWriter(workerData.sab);
      let x = 1;
      const hash = createHash('sha256');
      for (let sent = 0; sent < workerData.total; ) {
        const chunk = Buffer.alloc(Math.min(1 + (sent % 9973), workerData.total - sent));
        for (let i = 0; i < chunk.length; i++) { x = (x * 1103515245 + 12345) >>> 0; chunk[i] = x >>> 24; }
        hash.update(chunk);
        let rest = chunk;
        while (rest.length > 0) {
          const n = writer.write(sent % 2, rest);
          rest = rest.subarray(n);
          if (n === 0) await writer.waitForSpace();
        }
        sent += chunk.length;
      }
      writer.close();
      clearInterval(keepAlive);
      require('node:worker_threads').parentPort.postMessage(hash.digest('hex'));
    });
    `,
    { eval: true, workerData: { sab, total, writer: new URL('../../src/workers/ring-writer.js', import.meta.url).href } },
  );
  t.teardown(() => worker.terminate());
  const { createHash } = await import('node:crypto');
  const hash = createHash('sha256');
  let received = 0;
  const expected = new Promise<string>((resolve) => worker.once('message', resolve));
  await pumpRing(new RingReader(sab), {
    append: (_stream, bytes) => {
      hash.update(bytes);
      received += bytes.length;
    },
    room: () => Number.POSITIVE_INFINITY,
    whenRoom: () => Promise.resolve(),
  });
  t.is(received, total);
  t.is(hash.digest('hex'), await expected);
});
