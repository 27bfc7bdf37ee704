// A job's stdin (CreateJobReq.stdin, WriteInput) through the real server,
// real job-init and real pipes: bytes arrive exactly, the end of the call is
// EOF, a slow job holds its writer back, and every refusal says why.
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { status as Status } from '@grpc/grpc-js';
import test from 'ava';
import { connect, JobStatus, type Job, type JobworkerClient } from 'jobworker/client';
import { outputOf, refusal } from '../helpers/client-lib.js';
import { HOST_VIEW, startTestServer, type Role, type TestServer } from '../helpers/server.js';

const MIB = 1024 * 1024;
let isolated: TestServer;
let hostView: TestServer;

test.before(async () => {
  // Jobs in every namespace (job-init's PID 1 and its outside process around the job), and jobs that see the test's files.
  [isolated, hostView] = await Promise.all([startTestServer(), startTestServer(undefined, { isolation: HOST_VIEW })]);
});

test.after.always(async () => {
  await Promise.all([isolated?.stop(), hostView?.stop()]);
});

function clientOf(server: TestServer, role: Role = 'admin'): JobworkerClient {
  const env = server.env(role);
  return connect({ server: server.address, ca: env.JOBWORKER_CA!, cert: env.JOBWORKER_CERT!, key: env.JOBWORKER_KEY! });
}

/** Yields `data` in 256 KiB pieces, counting what was taken; waits for `gate` before the rest once `holdAfter` bytes are out. */
async function* pieces(data: Buffer, taken: { bytes: number }, hold?: { after: number; gate: Promise<void> }): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += 256 * 1024) {
    if (hold && at >= hold.after) await hold.gate;
    const piece = data.subarray(at, at + 256 * 1024);
    taken.bytes += piece.length;
    yield piece;
  }
}

/** V8's full collection, for a test that checks what the server still holds (ava runs without --expose-gc). */
function collector(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

// Serial: ava runs it before the others in this file, so the memory it reads is the server's and its own.
test.serial('input the job has taken is not kept: a call that writes 96 MiB and stays open holds the server to its window, not to what it wrote', async (t) => {
  const gc = collector();
  const client = clientOf(isolated);
  t.teardown(() => client.close());
  const job = await client.create({ command: 'wc', args: ['-c'], stdin: true });
  const piece = Buffer.alloc(64 * 1024, 'x');
  const total = 96 * MIB;
  let allSent!: () => void;
  const sent = new Promise<void>((resolve) => (allSent = resolve));
  let endCall!: () => void;
  const callEnds = new Promise<void>((resolve) => (endCall = resolve));
  async function* input(): AsyncGenerator<Uint8Array> {
    for (let at = 0; at < total; at += piece.length) yield piece;
    allSent();
    await callEnds;
  }
  gc();
  const before = process.memoryUsage().arrayBuffers;
  t.teardown(() => endCall());
  const writing = client.writeInput(job.id, input());
  // Awaited below; if an assertion fails first, its failure must not also fail the file.
  writing.catch(() => undefined);
  await sent;
  // The job takes what is still on its way; then only what the server still references survives a collection.
  let held = Number.POSITIVE_INFINITY;
  for (const giveUp = Date.now() + 20_000; Date.now() < giveUp; await new Promise((resolve) => setTimeout(resolve, 200))) {
    gc();
    held = process.memoryUsage().arrayBuffers - before;
    if (held < 16 * MIB) break;
  }
  t.true(held < 16 * MIB, `${(held / MIB).toFixed(1)} MiB of ArrayBuffers still held after the job took ${total / MIB} MiB of an open call`);
  endCall();
  t.is(await writing, total);
  t.is(await outputOf(client, job.id), `${total}\n`);
});

test('64 MiB of binary input reach a job that reads late byte-exact; until it reads, the writer is held back', async (t) => {
  const client = clientOf(hostView);
  t.teardown(() => client.close());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-input-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const gate = path.join(dir, 'gate');
  execFileSync('mkfifo', [gate]);
  const data = randomBytes(64 * MIB);
  // The job reads nothing until the test opens its gate.
  const job = await client.create({ command: 'sh', args: ['-c', `cat ${gate} >/dev/null; exec sha256sum`], stdin: true });
  t.true(job.stdin);
  const taken = { bytes: 0 };
  const writing = client.writeInput(job.id, pieces(data, taken));
  // The pipe, the server's window and gRPC's buffers fill, then nothing more is taken from the writer.
  let last = -1;
  while (taken.bytes !== last) {
    last = taken.bytes;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
  t.true(taken.bytes < 16 * MIB, `the writer got ${taken.bytes} bytes ahead of a job that read nothing`);
  t.true(taken.bytes > 0);
  fs.writeFileSync(gate, 'go\n');
  t.is(await writing, data.length);
  t.is(await outputOf(client, job.id), `${createHash('sha256').update(data).digest('hex')}  -\n`);
  t.is((await client.get(job.id)).status, JobStatus.JOB_STATUS_COMPLETED);
});

test('the end of the call is EOF, in every namespace; run() with input is `sha256sum < file`', async (t) => {
  const client = clientOf(isolated);
  t.teardown(() => client.close());
  const job = await client.create({ command: 'wc', args: ['-l'], stdin: true });
  t.is(await client.writeInput(job.id, Buffer.from('a\nb\nc\n')), 6);
  t.is(await outputOf(client, job.id), '3\n');
  const ended = await client.wait(job.id);
  t.is(ended.status, JobStatus.JOB_STATUS_COMPLETED);

  const data = randomBytes(3 * MIB + 17);
  let output = '';
  const result = await client.run({ command: 'sha256sum' }, { input: pieces(data, { bytes: 0 }), onOutput: (chunk) => void (output += Buffer.from(chunk.data).toString()) });
  t.is(result.exitCode, 0);
  t.true(result.job.stdin);
  t.is(output, `${createHash('sha256').update(data).digest('hex')}  -\n`);
});

test('a writer that goes away mid-way closes the job\'s stdin: the job reads EOF and ends, nothing hangs', async (t) => {
  const client = clientOf(isolated);
  t.teardown(() => client.close());
  // It says when the first bytes have reached it, then counts the rest.
  const job = await client.create({ command: 'sh', args: ['-c', 'head -c 1000 >/dev/null; echo got-some; exec wc -c'], stdin: true });
  const taken = { bytes: 0 };
  const never = new Promise<void>(() => undefined);
  const writer = new AbortController();
  const writing = client.writeInput(job.id, pieces(randomBytes(4 * MIB), taken, { after: MIB, gate: never }), { signal: writer.signal });
  for await (const _ of client.stream(job.id, { follow: true })) break;
  writer.abort(new Error('the writer gave up'));
  await t.throwsAsync(writing, { message: 'the writer gave up' });
  const ended = await client.wait(job.id);
  t.is(ended.status, JobStatus.JOB_STATUS_COMPLETED);
  // What the server had taken before the writer left, and not a byte of what it never sent.
  const [said, counted] = (await outputOf(client, job.id)).split('\n');
  t.is(said, 'got-some');
  t.true(Number(counted) >= 0 && Number(counted) <= MIB - 1000, `wc -c counted ${counted}`);
  // Its input had its one writer.
  const again = await refusal(client.writeInput(job.id, Buffer.from('x')));
  t.is(again.code, 'INPUT_REFUSED');
});

test('one writer at a time, once; a viewer may not write; no input to a job without stdin or one that has ended', async (t) => {
  const client = clientOf(isolated);
  const viewer = clientOf(isolated, 'viewer');
  t.teardown(() => {
    client.close();
    viewer.close();
  });
  const job = await client.create({ command: 'cat', stdin: true });
  const first = new AbortController();
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  async function* twoLines(): AsyncGenerator<Uint8Array> {
    yield Buffer.from('hello\n');
    await held;
    yield Buffer.from('world\n');
  }
  const firstWriting = client.writeInput(job.id, twoLines(), { signal: first.signal });
  // The job has echoed the first line: the first writer holds the input.
  for await (const _ of client.stream(job.id, { follow: true })) break;
  const second = await refusal(client.writeInput(job.id, Buffer.from('other\n')));
  t.is(second.code, 'INPUT_REFUSED');
  t.is(second.grpcStatus, Status.FAILED_PRECONDITION);
  t.is(second.message, `job ${job.id} already has a writer on its input (one at a time)`);
  const denied = await refusal(viewer.writeInput(job.id, Buffer.from('x')));
  t.is(denied.grpcStatus, Status.PERMISSION_DENIED);
  t.is(denied.message, 'permission denied: role "viewer" may not WriteInput');
  release();
  t.is(await firstWriting, 12);
  t.is(await outputOf(client, job.id), 'hello\nworld\n');
  const closed = await refusal(client.writeInput(job.id, Buffer.from('x')));
  t.is(closed.code, 'INPUT_REFUSED');
  t.regex(closed.message, /input was closed by its writer|has ended/);

  const plain: Job = await client.create({ command: 'cat' });
  t.false(plain.stdin);
  const noStdin = await refusal(client.writeInput(plain.id, Buffer.from('x')));
  t.is(noStdin.code, 'INPUT_REFUSED');
  t.is(noStdin.message, `job ${plain.id} was not created with stdin (CreateJobReq.stdin, jobctl create -i): its stdin is /dev/null`);
  // Its stdin is /dev/null: cat ends at once.
  t.is((await client.wait(plain.id)).status, JobStatus.JOB_STATUS_COMPLETED);
  const ended = await refusal(client.writeInput(plain.id, Buffer.from('x')));
  t.is(ended.code, 'INPUT_REFUSED');
});

test('a job that ends while its writer sends nothing ends the call; one that took every byte before ending answers OK', async (t) => {
  const client = clientOf(isolated);
  t.teardown(() => client.close());
  // The writer sends a line, then nothing more, ever (a terminal nobody types into).
  async function* oneLineThenSilence(): AsyncGenerator<Uint8Array> {
    yield Buffer.from('only\n');
    await new Promise<void>(() => undefined);
  }
  const job = await client.create({ command: 'head', args: ['-n', '1'], stdin: true });
  const err = await refusal(client.writeInput(job.id, oneLineThenSilence()));
  t.is(err.code, 'INPUT_REFUSED');
  t.is(err.message, `job ${job.id} took 5 bytes of input, then the job ended`);
  t.is(await outputOf(client, job.id), 'only\n');
  // Every byte in the pipe before the job exits, whether the end reaches its thread first or not: OK, every time.
  for (let i = 0; i < 10; i++) {
    const short = await client.create({ command: 'head', args: ['-c', '2'], stdin: true });
    t.is(await client.writeInput(short.id, Buffer.from('abcd')), 4);
  }
});

test('input racing the job\'s exit: the writer is told how much the job took, the job ends as it did', async (t) => {
  for (const server of [isolated, hostView]) {
    const client = clientOf(server);
    t.teardown(() => client.close());
    const job = await client.create({ command: 'head', args: ['-c', '10'], stdin: true });
    const err = await refusal(client.writeInput(job.id, randomBytes(32 * MIB)));
    t.is(err.code, 'INPUT_REFUSED');
    t.regex(err.message, new RegExp(`^job ${job.id} took \\d+ bytes of input, then (the job closed its stdin|the job ended)$`));
    const ended = await client.wait(job.id);
    t.is(ended.status, JobStatus.JOB_STATUS_COMPLETED);
    t.is(ended.outputBytes, 10);
  }
});
