import test from 'ava';
import { randomBytes } from 'node:crypto';
import { MemoryOutputLog, type OutputLog } from '../../src/supervisor/output-log.js';
import { StreamId } from '../../src/workers/protocol.js';

function readAll(log: OutputLog, from: number, maxBytes: number): { stream: StreamId; data: Buffer }[] {
  const out: { stream: StreamId; data: Buffer }[] = [];
  for (let offset = from; ; ) {
    const slice = log.read(offset, maxBytes);
    if (!slice) return out;
    if (slice.offset !== offset) throw new Error('slice offset mismatch');
    out.push({ stream: slice.stream, data: Buffer.from(slice.data) });
    offset += slice.data.length;
  }
}

test('output log: reads return every byte from any offset, never more than asked, one stream per slice', (t) => {
  const log = new MemoryOutputLog();
  const written: { stream: StreamId; data: Buffer }[] = [];
  // Sizes chosen to cross segment boundaries (4 KiB doubling to 1 MiB).
  for (const [i, size] of [1, 4095, 2, 10_000, 70_000, 1, 300_000, 2_000_000].entries()) {
    const data = randomBytes(size);
    const stream = i % 2 === 0 ? StreamId.Stdout : StreamId.Stderr;
    log.append(stream, data);
    written.push({ stream, data });
  }
  const all = Buffer.concat(written.map((w) => w.data));
  t.is(log.length, all.length);
  for (const max of [1, 1000, 65_536, 10_000_000]) {
    const slices = readAll(log, 0, max);
    t.true(slices.every((s) => s.data.length <= max));
    t.true(Buffer.concat(slices.map((s) => s.data)).equals(all));
  }
  for (const from of [0, 1, 4096, 14_097, all.length - 1]) {
    t.true(Buffer.concat(readAll(log, from, 65_536).map((s) => s.data)).equals(all.subarray(from)));
  }
  // Per stream, bytes match what was written to that stream.
  const slices = readAll(log, 0, 65_536);
  for (const stream of [StreamId.Stdout, StreamId.Stderr]) {
    t.true(
      Buffer.concat(slices.filter((s) => s.stream === stream).map((s) => s.data)).equals(
        Buffer.concat(written.filter((w) => w.stream === stream).map((w) => w.data)),
      ),
    );
  }
});

test('output log: consecutive appends to one stream read back as one run', (t) => {
  const log = new MemoryOutputLog();
  log.append(StreamId.Stdout, Buffer.from('ab'));
  log.append(StreamId.Stdout, Buffer.from('cd'));
  log.append(StreamId.Stderr, Buffer.from('ef'));
  t.deepEqual(readAll(log, 0, 100).map((s) => [s.stream, s.data.toString()]), [
    [StreamId.Stdout, 'abcd'],
    [StreamId.Stderr, 'ef'],
  ]);
});

test('output log: read past the end returns null', (t) => {
  const log = new MemoryOutputLog();
  t.is(log.read(0, 10), null);
  log.append(StreamId.Stdout, Buffer.from('x'));
  t.is(log.read(1, 10), null);
});

test('output log: waitFor resolves on the next append, at once when bytes are already there', async (t) => {
  const log = new MemoryOutputLog();
  const waiting = log.waitFor(0);
  t.is(log.waiting, 1);
  log.append(StreamId.Stdout, Buffer.from('x'));
  await waiting;
  t.is(log.waiting, 0);
  await log.waitFor(0);
});

test('output log: close wakes every waiting reader', async (t) => {
  const log = new MemoryOutputLog();
  const waiters = Array.from({ length: 100 }, () => log.waitFor(0));
  log.close();
  await Promise.all(waiters);
  t.true(log.closed);
  await log.waitFor(5);
});

test('output log: an aborted reader is released at once and leaves nothing behind', async (t) => {
  const log = new MemoryOutputLog();
  const abort = new AbortController();
  const waiting = log.waitFor(0, abort.signal);
  t.is(log.waiting, 1);
  abort.abort(new Error('client went away'));
  await t.throwsAsync(waiting, { message: 'client went away' });
  t.is(log.waiting, 0);
  await t.throwsAsync(log.waitFor(0, abort.signal), { message: 'client went away' });
  t.is(log.waiting, 0);
});

test('output log: appending after close is a bug and throws', (t) => {
  const log = new MemoryOutputLog();
  log.close();
  t.throws(() => log.append(StreamId.Stdout, Buffer.from('x')));
});
