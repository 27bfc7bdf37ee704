import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { mkdtemp, readdir, rm, truncate, appendFile, writeFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { pooledBlockBytes } from '../../../src/supervisor/output/block-pool.js';
import { OutputCursor, offsetOfLastLines, offsetSince } from '../../../src/supervisor/output/cursor.js';
import { OutputLog, OutputUnreadableError, RETRY_MS, type OutputSlice } from '../../../src/supervisor/output/log.js';
import { StreamId } from '../../../src/workers/protocol.js';
import { tmpfs, waitUntil } from '../../helpers/host.js';

const logger = pino({ level: 'silent' });

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'jobworker-output-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function newLog(t: ExecutionContext, maxBytes = 1024 ** 3): Promise<OutputLog> {
  const log = new OutputLog({ dir: path.join(await tempDir(t), 'job'), maxBytes, logger });
  t.teardown(() => log.dispose());
  return log;
}

async function readAll(log: OutputLog, from: number, maxBytes: number, split = false): Promise<OutputSlice[]> {
  const cursor = new OutputCursor(log, from);
  const out: OutputSlice[] = [];
  try {
    for (;;) {
      const at = cursor.offset;
      // A copy: a slice of the tail in memory is valid only during the call.
      const slice = await cursor.next(maxBytes, split, (taken) => ({ ...taken, data: Buffer.from(taken.data) }));
      if (!slice) return out;
      if (slice.offset < at) throw new Error('a slice went backwards');
      out.push(slice);
    }
  } finally {
    await cursor.close();
  }
}

const bytesOf = (slices: OutputSlice[]) => Buffer.concat(slices.map((s) => s.data));

/** Appends like a pump: no more than room() allows before waiting. */
async function pump(log: OutputLog, writes: { stream: StreamId; data: Buffer; time?: number }[]): Promise<void> {
  for (const { stream, data, time } of writes) {
    await log.whenRoom();
    log.append(stream, data, time);
  }
}

function randomWrites(sizes: number[]): { stream: StreamId; data: Buffer }[] {
  return sizes.map((size, i) => ({ stream: i % 3 === 1 ? StreamId.Stderr : StreamId.Stdout, data: randomBytes(size) }));
}

async function checkReadsBack(t: ExecutionContext, log: OutputLog, written: { stream: StreamId; data: Buffer }[], what: string): Promise<void> {
  const all = Buffer.concat(written.map((w) => w.data));
  t.is(log.length, all.length, what);
  for (const max of [1000, 65_536, 10_000_000]) {
    const slices = await readAll(log, 0, max);
    t.true(slices.every((s) => s.data.length <= max), `${what}: at most ${max} per slice`);
    t.true(bytesOf(slices).equals(all), `${what}: every byte, max ${max}`);
  }
  for (const from of [1, 4096, 14_097, all.length - 1]) {
    t.true(bytesOf(await readAll(log, from, 65_536)).equals(all.subarray(from)), `${what}: from ${from}`);
  }
  const slices = await readAll(log, 0, 65_536);
  for (const stream of [StreamId.Stdout, StreamId.Stderr]) {
    t.true(
      bytesOf(slices.filter((s) => s.stream === stream)).equals(Buffer.concat(written.filter((w) => w.stream === stream).map((w) => w.data))),
      `${what}: stream ${stream} apart`,
    );
  }
}

test('output log: every byte reads back from any offset while in memory, once on disk, and after a restart', async (t) => {
  const log = await newLog(t);
  // Sizes that cross block boundaries (4 KiB growing to 256 KiB) many times.
  const written = randomWrites([1, 4095, 2, 10_000, 70_000, 1, 300_000, 2_000_000, 5, 700_000]);
  await pump(log, written);
  await checkReadsBack(t, log, written, 'live');
  await log.close();
  t.deepEqual(log.blocks, [], 'nothing kept in memory once closed');
  await checkReadsBack(t, log, written, 'closed');
  const reopened = await OutputLog.open({ dir: log.dir, maxBytes: 1024 ** 3, logger }, log.length);
  t.is(reopened.problem, '');
  await checkReadsBack(t, reopened, written, 'reopened');
});

test('output log: bytes of one stream that arrive at one time read back as one slice; split gives each its time', async (t) => {
  const log = await newLog(t);
  log.append(StreamId.Stdout, Buffer.from('ab'), 1000);
  log.append(StreamId.Stdout, Buffer.from('cd'), 1000);
  log.append(StreamId.Stdout, Buffer.from('ef'), 2000);
  log.append(StreamId.Stderr, Buffer.from('gh'), 2000);
  // A clock that goes back is not believed: times never decrease.
  log.append(StreamId.Stderr, Buffer.from('ij'), 1500);
  const merged = (await readAll(log, 0, 100)).map((s) => [s.stream, s.data.toString()]);
  t.deepEqual(merged, [
    [StreamId.Stdout, 'abcdef'],
    [StreamId.Stderr, 'ghij'],
  ]);
  await log.close();
  const split = (await readAll(log, 0, 100, true)).map((s) => [s.data.toString(), s.time]);
  t.deepEqual(split, [
    ['abcd', 1000],
    ['ef', 2000],
    ['ghij', 2000],
  ]);
});

test('output log: past maxBytes the oldest output goes in whole segments; a reader from 0 is moved to the first byte kept', async (t) => {
  const maxBytes = 1024 * 1024;
  const log = await newLog(t, maxBytes);
  const written = randomWrites(Array.from({ length: 80 }, () => 64 * 1024));
  await pump(log, written);
  await log.close();
  const all = Buffer.concat(written.map((w) => w.data));
  t.true(log.start > 0);
  t.true(log.length - log.start <= maxBytes, `kept ${log.length - log.start}`);
  t.true(log.length - log.start >= maxBytes - maxBytes / 8 - 256 * 1024, `kept ${log.length - log.start}`);
  const slices = await readAll(log, 0, 65_536);
  t.is(slices[0]!.offset, log.start);
  t.true(bytesOf(slices).equals(all.subarray(log.start)));
  const files = await readdir(log.dir);
  const onDisk = (await Promise.all(files.filter((f) => f.endsWith('.out')).map((f) => stat(path.join(log.dir, f))))).reduce((n, s) => n + s.size, 0);
  t.is(onDisk, log.length - log.start, 'discarded segments are deleted');
  const reopened = await OutputLog.open({ dir: log.dir, maxBytes, logger }, log.length);
  t.is(reopened.start, log.start);
  t.true(bytesOf(await readAll(reopened, 0, 65_536)).equals(all.subarray(log.start)));
});

test('output log: since finds the first byte that arrived at or after a time; tail finds where the last N lines begin', async (t) => {
  const log = await newLog(t);
  const lines = Array.from({ length: 20_000 }, (_, i) => `line ${i}\n`);
  // 20,000 frames, 1 ms apart, most of them on disk by the time of the search.
  await pump(log, lines.map((line, i) => ({ stream: i % 2 ? StreamId.Stderr : StreamId.Stdout, data: Buffer.from(line), time: 1_000_000 + i })));
  log.append(StreamId.Stdout, Buffer.from('no newline'), 2_000_000);
  const text = lines.join('') + 'no newline';
  const offsetOfLine = (i: number) => Buffer.byteLength(lines.slice(0, i).join(''));
  for (const closed of [false, true]) {
    if (closed) await log.close();
    t.is(await offsetSince(log, 0), 0);
    t.is(await offsetSince(log, 1_000_000 + 12_345), offsetOfLine(12_345));
    t.is(await offsetSince(log, 1_000_000 + 19_999.5), offsetOfLine(20_000));
    t.is(await offsetSince(log, 3_000_000), log.length);
    t.is(await offsetOfLastLines(log, 0, log.length), log.length);
    t.is(await offsetOfLastLines(log, 1, log.length), offsetOfLine(20_000), 'the unterminated last line counts');
    t.is(await offsetOfLastLines(log, 3, log.length), offsetOfLine(19_998));
    t.is(await offsetOfLastLines(log, 1_000_000, log.length), 0);
    t.is(await offsetOfLastLines(log, 2, offsetOfLine(100)), offsetOfLine(98), 'a terminated last line');
    t.is(text.slice(await offsetOfLastLines(log, 2, log.length)), 'line 19999\nno newline');
  }
});

test('output log: damaged files are cut back to what both files agree on, and reported', async (t) => {
  const log = await newLog(t);
  const written = randomWrites(Array.from({ length: 40 }, () => 10_000)).map((w, i) => ({ ...w, time: i }));
  await pump(log, written);
  await log.close();
  const [index, data] = (await readdir(log.dir)).sort();
  // The disk lost the last 5,000 bytes of data; a crash left half an index entry.
  await truncate(path.join(log.dir, data!), log.length - 5_000);
  await appendFile(path.join(log.dir, index!), Buffer.alloc(7));
  const reopened = await OutputLog.open({ dir: log.dir, maxBytes: 1024 ** 3, logger }, log.length);
  t.regex(reopened.problem, /partial entry/);
  t.regex(reopened.problem, /frames claim bytes its data file lacks/);
  t.regex(reopened.problem, /the job wrote 400000 bytes, 10000 of them are not on disk/);
  t.is(reopened.length, log.length - 10_000, 'the frame the cut went through is gone whole');
  const all = Buffer.concat(written.map((w) => w.data));
  t.true(bytesOf(await readAll(reopened, 0, 65_536)).equals(all.subarray(0, reopened.length)));
  // Bytes with no entry (a crash between the two writes) are cut off too.
  await appendFile(path.join(log.dir, data!), Buffer.from('unindexed'));
  const again = await OutputLog.open({ dir: log.dir, maxBytes: 1024 ** 3, logger }, reopened.length);
  t.regex(again.problem, /9 bytes without index entries, cut off/);
  t.is(again.length, reopened.length);
  // A corrupt index entry in the middle is found by the reader, not served as output.
  const idx = path.join(log.dir, index!);
  const fd = fs.openSync(idx, 'r+');
  fs.writeSync(fd, Buffer.from([9]), 0, 1, 10 * 20 + 6);
  fs.closeSync(fd);
  await t.throwsAsync(readAll(again, 0, 65_536), { instanceOf: OutputUnreadableError, message: /unknown stream 9/ });
});

test('output log: a job with no output has no files; missing files are reported', async (t) => {
  const log = await newLog(t);
  await log.close();
  t.false(fs.existsSync(log.dir));
  const reopened = await OutputLog.open({ dir: log.dir, maxBytes: 1024 ** 3, logger }, 0);
  t.is(reopened.problem, '');
  t.is(reopened.length, 0);
  const lost = await OutputLog.open({ dir: log.dir, maxBytes: 1024 ** 3, logger }, 123);
  t.regex(lost.problem, /123 of them are not on disk/);
});

test('output log: waitFor resolves on the next append, at once when bytes are already there; close and abort release readers', async (t) => {
  const log = await newLog(t);
  const waiting = log.waitFor(0);
  t.is(log.waiting, 1);
  log.append(StreamId.Stdout, Buffer.from('x'));
  await waiting;
  t.is(log.waiting, 0);
  await log.waitFor(0);
  const abort = new AbortController();
  const aborted = log.waitFor(1, abort.signal);
  abort.abort(new Error('client went away'));
  await t.throwsAsync(aborted, { message: 'client went away' });
  t.is(log.waiting, 0);
  const waiters = Array.from({ length: 100 }, () => log.waitFor(1));
  await log.close();
  await Promise.all(waiters);
  t.throws(() => log.append(StreamId.Stdout, Buffer.from('x')), { message: /closed/ });
});

test.serial('output log: on a full disk capture pauses (room() goes to 0, problem says why) and resumes when space returns, losing nothing', async (t) => {
  const mount = await tmpfs(t, '4m');
  const filler = path.join(mount, 'filler');
  await writeFile(filler, Buffer.alloc(3 * 1024 * 1024));
  const log = new OutputLog({ dir: path.join(mount, 'job'), maxBytes: 1024 ** 3, logger });
  t.teardown(() => log.dispose());
  const written = randomWrites(Array.from({ length: 96 }, () => 32 * 1024));
  const pumping = pump(log, written);
  await waitUntil(() => log.problem.startsWith('output capture paused'), 'capture to pause');
  t.regex(log.problem, /no space left on device/i);
  await waitUntil(() => log.room() <= 0, 'the writer to be held back');
  await rm(filler);
  await pumping;
  await log.close();
  t.is(log.problem, '', `resumed within ${RETRY_MS} ms of space returning`);
  t.true(bytesOf(await readAll(log, 0, 65_536)).equals(Buffer.concat(written.map((w) => w.data))));
});

test.serial('output log: a job printing one byte at a time cannot grow the tail past its bound while the disk is full', async (t) => {
  const mount = await tmpfs(t, '1m');
  await writeFile(path.join(mount, 'filler'), Buffer.alloc(1024 * 1024 - 64 * 1024)).catch(() => undefined);
  const log = new OutputLog({ dir: path.join(mount, 'job'), maxBytes: 1024 ** 3, logger });
  t.teardown(() => log.dispose());
  let time = 0;
  while (log.room() > 0) {
    log.append(time % 2 ? StreamId.Stderr : StreamId.Stdout, Buffer.from('x'), time++);
    // Let the writes run (and fail): what is not written is what the bound is about.
    if (time % 1000 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  const memory = log.blocks.reduce((n, b) => n + b.data.length + b.index.length, 0);
  t.true(memory <= 2 * 1024 * 1024 + 5 * 1024, `tail memory ${memory} after ${time} one-byte frames`);
});

test.serial('output log: a block the log has dropped goes to the next log that needs one, and neither log reads another\'s bytes', async (t) => {
  const first = await newLog(t);
  const firstWrites = randomWrites(Array.from({ length: 24 }, () => 64 * 1024));
  await pump(first, firstWrites);
  // A follower sees the tail in memory while the writes go on, copying what it keeps (SliceTaker).
  const followed = await readAll(first, 0, 65_536);
  await first.close();
  t.deepEqual(first.blocks, [], 'every block dropped once closed');
  t.true(pooledBlockBytes() >= 256 * 1024, `${pooledBlockBytes()} bytes of blocks kept for reuse`);
  t.true(bytesOf(followed).equals(Buffer.concat(firstWrites.map((w) => w.data))));

  const second = await newLog(t);
  const secondWrites = randomWrites(Array.from({ length: 24 }, () => 64 * 1024));
  await pump(second, secondWrites);
  await second.close();
  await checkReadsBack(t, second, secondWrites, 'the log that reused the blocks');
  await checkReadsBack(t, first, firstWrites, 'the log that gave them back');
});

test('output log: the block being filled reaches the disk soon after its bytes arrive, not only once it is full or the log closes', async (t) => {
  const log = await newLog(t);
  log.append(StreamId.Stdout, Buffer.from('one line\n'));
  const file = path.join(log.dir, '0000000000000000.out');
  const size = () => (fs.existsSync(file) ? fs.statSync(file).size : 0);
  await waitUntil(() => size() === 9, 'the line on disk');
  log.append(StreamId.Stderr, Buffer.from('two'));
  await waitUntil(() => size() === 12, 'the next bytes on disk');
  t.false(log.closed);
  t.is(log.blocks.length, 1, 'the block being filled stays for followers');
});

test('output log: big reads from disk go into one buffer the cursor keeps, each slice right while its taker has it; small ones get their own memory', async (t) => {
  const log = await newLog(t);
  const written = randomWrites(Array.from({ length: 16 }, () => 256 * 1024));
  await pump(log, written);
  await log.close();
  const all = Buffer.concat(written.map((w) => w.data));
  const cursor = new OutputCursor(log, 0);
  t.teardown(() => cursor.close());
  const memories: ArrayBufferLike[] = [];
  const read: Buffer[] = [];
  for (;;) {
    const copy = await cursor.next(256 * 1024, false, (slice) => {
      memories.push(slice.data.buffer);
      return Buffer.from(slice.data);
    });
    if (!copy) break;
    read.push(copy);
  }
  t.true(Buffer.concat(read).equals(all));
  t.true(memories.length >= 16);
  t.true(memories.every((memory) => memory === memories[0]), 'one buffer for every big read');
  cursor.offset = 0;
  const small = await cursor.next(1000, false, (slice) => slice.data.buffer);
  t.not(small, memories[0], 'a small read is not given the big buffer');
});

test('output log: a cursor refuses a second read while one is in flight (both would fill its read buffer)', async (t) => {
  const log = await newLog(t);
  await pump(log, randomWrites([300 * 1024]));
  await log.close();
  const cursor = new OutputCursor(log, 0);
  t.teardown(() => cursor.close());
  const first = cursor.next(256 * 1024, false, (slice) => Buffer.from(slice.data));
  await t.throwsAsync(cursor.next(256 * 1024, false, (slice) => slice.data.length), { message: 'a cursor reads one slice at a time' });
  t.is((await first)!.length, 256 * 1024);
});
