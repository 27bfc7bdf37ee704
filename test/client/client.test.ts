// The client library (jobworker/client) against a real server: run and
// stream, cancellation, and the typed errors jobctl shows.
import { once } from 'node:events';
import fs from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import {
  connect,
  ConfigError,
  exitCodeOf,
  JobStatus,
  OutputStream,
  RunAbortedError,
  ServerError,
  UnavailableError,
  type DataChunk,
  type JobworkerClient,
  type Job,
} from 'jobworker/client';
import * as source from '../../src/client/index.js';
import { connectionFailure } from '../../src/client/errors.js';
import { Job as JobMessage } from '../../src/gen/jobworker/v1/jobworker.js';
import { repoRoot } from '../helpers/paths.js';
import { startTestServer, type Role, type TestServer } from '../helpers/server.js';

const MISSING_ID = '123e4567-e89b-12d3-a456-426614174000';
let server: TestServer;

test.before(async () => {
  server = await startTestServer(undefined, { metricsListen: '127.0.0.1:0' });
});

/** The server's count of GetJobsStream calls still sending, from its metrics. */
async function openStreams(): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${server.server.metricsPort}/metrics`);
  return Number(/^jobworker_output_streams_open (\d+)$/m.exec(await response.text())?.[1]);
}

/** Until the server has let go of every stream (a cancel reaches it asynchronously). */
async function streamsClosed(): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((await openStreams()) !== 0) {
    if (Date.now() > deadline) throw new Error('a cancelled stream is still open on the server');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test.after.always(async () => {
  await server?.stop();
});

function client(role: Role = 'admin', address = `localhost:${server.server.port}`): JobworkerClient {
  const env = server.env(role);
  return connect({ server: address, ca: env.JOBWORKER_CA!, cert: env.JOBWORKER_CERT!, key: env.JOBWORKER_KEY! });
}

/** An admin client for one test, closed after it. */
function adminFor(t: { teardown(fn: () => void): void }): JobworkerClient {
  const made = client();
  t.teardown(() => made.close());
  return made;
}

const text = (chunks: DataChunk[], stream: OutputStream): string =>
  Buffer.concat(chunks.filter((c) => c.stream === stream).map((c) => c.data)).toString();

test('the package exports the library as jobworker/client', (t) => {
  // Node resolved the import through package.json "exports" to the same module as the source's build.
  t.is(connect, source.connect);
});

test('run: resolves with the ended job and its exit code, every chunk handed over in order', async (t) => {
  const jobs = adminFor(t);
  const chunks: DataChunk[] = [];
  let started: Job | undefined;
  const { job, exitCode } = await jobs.run(
    { command: 'sh', args: ['-c', 'printf out; printf err >&2; exit 3'] },
    { onStart: (j) => (started = j), onOutput: (chunk) => void chunks.push(chunk) },
  );
  t.is(exitCode, 3);
  t.is(job.status, JobStatus.JOB_STATUS_FAILED);
  t.is(started?.id, job.id);
  t.is(text(chunks, OutputStream.OUTPUT_STREAM_STDOUT), 'out');
  t.is(text(chunks, OutputStream.OUTPUT_STREAM_STDERR), 'err');
});

test('run: a slow onOutput gets every byte of a large output, exactly', async (t) => {
  const jobs = adminFor(t);
  const hash = createHash('sha256');
  let bytes = 0;
  let stderr = '';
  const { exitCode } = await jobs.run(
    { command: 'sh', args: ['-c', 'head -c 8388608 /dev/urandom > /tmp/data; cat /tmp/data; sha256sum /tmp/data >&2'], limits: { maxMemoryMb: 256 } },
    {
      onOutput: async (chunk) => {
        if (chunk.stream === OutputStream.OUTPUT_STREAM_STDERR) stderr += chunk.data.toString();
        else {
          hash.update(chunk.data);
          bytes += chunk.data.length;
        }
        // A consumer that yields on every chunk, as one writing somewhere would.
        await new Promise((resolve) => setImmediate(resolve));
      },
    },
  );
  t.is(exitCode, 0, stderr);
  t.is(bytes, 8_388_608);
  t.is(stderr.split(' ')[0], hash.digest('hex'));
});

test('run: an abort after the job ended by itself changes nothing: run() resolves', async (t) => {
  const jobs = adminFor(t);
  const abort = new AbortController();
  let id = '';
  const { job, exitCode } = await jobs.run(
    { command: 'sh', args: ['-c', 'echo last words'] },
    {
      signal: abort.signal,
      onStart: (started) => (id = started.id),
      // Abort only once the server has the job ended (run() reads no further meanwhile).
      onOutput: async () => {
        while ((await jobs.get(id)).status === JobStatus.JOB_STATUS_RUNNING) await new Promise((resolve) => setTimeout(resolve, 20));
        abort.abort();
      },
    },
  );
  t.is(job.status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(exitCode, 0);
});

test('run: aborting stops the job, delivers the rest of its output, and rejects with how it ended', async (t) => {
  const jobs = adminFor(t);
  const abort = new AbortController();
  const chunks: DataChunk[] = [];
  const script = 'trap "echo bye; exit 0" TERM; echo started; while :; do sleep 0.05; done';
  const error = await t.throwsAsync(
    jobs.run(
      { command: 'sh', args: ['-c', script] },
      {
        signal: abort.signal,
        graceMs: 10_000,
        onOutput: (chunk) => {
          chunks.push(chunk);
          abort.abort(new Error('enough'));
        },
      },
    ),
    { instanceOf: RunAbortedError },
  );
  t.is(error?.code, 'ABORTED');
  t.is((error?.cause as Error).message, 'enough');
  t.is(error?.job.status, JobStatus.JOB_STATUS_STOPPED);
  // It caught the SIGTERM and exited 0: that is its exit code, stopped or not.
  t.is(error?.job.exitCode, 0);
  t.is(error?.exitCode, 0);
  t.is(text(chunks, OutputStream.OUTPUT_STREAM_STDOUT), 'started\nbye\n');
  t.is((await jobs.get(error!.job.id)).status, JobStatus.JOB_STATUS_STOPPED);
});

// Serial (ava runs these before the others): no other test starts jobs meanwhile.
test.serial('run: a signal aborted already starts nothing', async (t) => {
  const jobs = adminFor(t);
  const before = (await jobs.list()).length;
  const reason = new Error('not now');
  await t.throwsAsync(jobs.run({ command: 'true' }, { signal: AbortSignal.abort(reason) }), { is: reason });
  t.is((await jobs.list()).length, before);
});

// Serial (with the next): the server's count of open streams is this test's alone.
test.serial('stream: an async iterable from the first byte of a running job; breaking out cancels the call and leaves the job running', async (t) => {
  const jobs = adminFor(t);
  const job = await jobs.create({ command: 'sh', args: ['-c', 'echo first; exec sleep 600'] });
  t.teardown(() => jobs.stop(job.id, { graceMs: 0 }).catch(() => undefined));
  for await (const chunk of jobs.stream(job.id, { follow: true })) {
    t.is(chunk.data.toString(), 'first\n');
    t.is(chunk.offset, 0);
    t.is(await openStreams(), 1);
    break;
  }
  await streamsClosed();
  t.is((await jobs.get(job.id)).status, JobStatus.JOB_STATUS_RUNNING);
  // Without follow: what there is now, and the stream ends.
  const now: DataChunk[] = [];
  for await (const chunk of jobs.stream(job.id)) now.push(chunk);
  t.is(text(now, OutputStream.OUTPUT_STREAM_STDOUT), 'first\n');
  t.is((await jobs.stop(job.id, { graceMs: 0 })).status, JobStatus.JOB_STATUS_STOPPED);
});

test.serial('stream: aborting mid-stream rejects with the reason, cancels the call and leaves the job running', async (t) => {
  const jobs = adminFor(t);
  const job = await jobs.create({ command: 'sh', args: ['-c', 'echo first; exec sleep 600'] });
  t.teardown(() => jobs.stop(job.id, { graceMs: 0 }).catch(() => undefined));
  const abort = new AbortController();
  const reason = new Error('the harness is done');
  const seen: string[] = [];
  await t.throwsAsync(
    (async () => {
      for await (const chunk of jobs.stream(job.id, { follow: true, signal: abort.signal })) {
        seen.push(chunk.data.toString());
        abort.abort(reason);
      }
    })(),
    { is: reason },
  );
  t.deepEqual(seen, ['first\n']);
  await streamsClosed();
  t.is((await jobs.get(job.id)).status, JobStatus.JOB_STATUS_RUNNING);
});

// Serial, for the same reason: the two jobs must be the newest.
test.serial('list: newest first, filtered by status, at most limit', async (t) => {
  const jobs = adminFor(t);
  const first = (await jobs.run({ command: 'true' })).job;
  const second = (await jobs.run({ command: 'false' })).job;
  const [newest, next] = await jobs.list({ limit: 2 });
  t.deepEqual([newest?.id, next?.id], [second.id, first.id]);
  const failed = await jobs.list({ status: JobStatus.JOB_STATUS_FAILED });
  t.true(failed.some((job) => job.id === second.id));
  t.false(failed.some((job) => job.id === first.id));
});

test('errors: the server\'s refusals are ServerErrors with its stable code and one-line message', async (t) => {
  const jobs = adminFor(t);
  const missing = await t.throwsAsync(jobs.get(MISSING_ID), { instanceOf: ServerError });
  t.is(missing?.code, 'JOB_NOT_FOUND');
  t.is(missing?.grpcStatus, 5);
  t.is(missing?.message, `job ${MISSING_ID} not found`);

  const notFound = await t.throwsAsync(jobs.create({ command: 'no-such-command-here' }), { instanceOf: ServerError });
  t.is(notFound?.code, 'EXEC_FAILED');
  const limits = await t.throwsAsync(jobs.create({ command: 'true', limits: { maxMemoryMb: 1 } }), { instanceOf: ServerError });
  t.is(limits?.code, 'INVALID_LIMITS');

  const viewer = client('viewer');
  t.teardown(() => viewer.close());
  const denied = await t.throwsAsync(viewer.create({ command: 'true' }), { instanceOf: ServerError });
  t.is(denied?.code, 'PERMISSION_DENIED');
  t.is(denied?.message, 'permission denied: role "viewer" may not CreateJob');
  const streamed = await t.throwsAsync(
    (async () => {
      for await (const chunk of viewer.stream(MISSING_ID)) t.fail(String(chunk));
    })(),
    { instanceOf: ServerError },
  );
  t.is(streamed?.code, 'JOB_NOT_FOUND');
});

test('errors: certificate files that cannot be read are a ConfigError, before any call', (t) => {
  const env = server.env();
  const error = t.throws(() => connect({ server: server.address, ca: '/nonexistent/ca.pem', cert: env.JOBWORKER_CERT!, key: env.JOBWORKER_KEY! }), { instanceOf: ConfigError });
  t.is(error?.code, 'CONFIG');
  t.regex(error!.message, /^cannot read CA certificate \/nonexistent\/ca\.pem: /);
});

test('errors: a refused connection is an UnavailableError saying so', async (t) => {
  const listener = net.createServer().listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const { port } = listener.address() as AddressInfo;
  listener.close();
  await once(listener, 'close');
  const jobs = client('admin', `127.0.0.1:${port}`);
  t.teardown(() => jobs.close());
  const error = await t.throwsAsync(jobs.get(MISSING_ID), { instanceOf: UnavailableError });
  t.is(error?.code, 'UNAVAILABLE');
  t.is(error?.message, `cannot reach server 127.0.0.1:${port}: connection refused`);
});

test('errors: until the first connection, each call has its own connect timeout, and is cancelled when it runs out', async (t) => {
  // Accepts TCP connections and says nothing: the TLS handshake hangs.
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((socket) => sockets.add(socket)).listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.teardown(async () => {
    // grpc-js gives up a hung handshake only after its own 20 s, closed client or not.
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  });
  const address = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
  const env = server.env();
  const jobs = connect({ server: address, ca: env.JOBWORKER_CA!, cert: env.JOBWORKER_CERT!, key: env.JOBWORKER_KEY!, connectTimeoutMs: 300 });
  t.teardown(() => jobs.close());
  const started = Date.now();
  const error = await t.throwsAsync(jobs.list(), { instanceOf: UnavailableError });
  t.is(error?.code, 'CONNECT_TIMEOUT');
  t.is(error?.message, `cannot reach server ${address}: timed out after 0.3 s`);
  // A later call waits its own 0.3 s, not failing at once on the first one's timer.
  const again = Date.now();
  await t.throwsAsync(jobs.create({ command: 'true' }), { instanceOf: UnavailableError, message: /timed out after 0\.3 s/ });
  t.true(Date.now() - again >= 250, `the second call failed after ${Date.now() - again} ms`);
  t.true(again - started >= 250);
});

test('errors: a CreateJob cut short by the connect timeout was never sent: once the connection comes up, the server has no such job', async (t) => {
  // A proxy to the real server that holds every connection back until told to go on.
  let release!: () => void;
  const go = new Promise<void>((resolve) => (release = resolve));
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((inbound) => {
    sockets.add(inbound);
    inbound.pause();
    void go.then(() => {
      const outbound = net.connect(server.server.port, '127.0.0.1');
      sockets.add(outbound);
      inbound.pipe(outbound).pipe(inbound);
      inbound.resume();
      for (const socket of [inbound, outbound]) socket.on('error', () => undefined);
    });
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => proxy.close(() => resolve()));
  });
  const env = server.env();
  const marker = `never-sent-${process.pid}-${Date.now()}`;
  const held = connect({ server: `localhost:${(proxy.address() as AddressInfo).port}`, ca: env.JOBWORKER_CA!, cert: env.JOBWORKER_CERT!, key: env.JOBWORKER_KEY!, connectTimeoutMs: 300 });
  t.teardown(() => held.close());
  await t.throwsAsync(held.create({ command: 'echo', args: [marker] }), { instanceOf: UnavailableError, message: /timed out after 0\.3 s/ });
  // The connection comes up; a call on it now is sent after anything still queued on the channel.
  // (Each try waits its own 0.3 s for the first connection: a loaded machine may need a few.)
  release();
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await held.list({ limit: 1 });
      break;
    } catch (err) {
      if (!(err instanceof UnavailableError && err.code === 'CONNECT_TIMEOUT') || Date.now() > deadline) throw err;
    }
  }
  const jobs = await adminFor(t).list();
  t.false(jobs.some((job) => job.args.includes(marker)), 'the CreateJob that timed out started nothing');
});

test('errors: grpc-js connection reports become short reasons', (t) => {
  t.is(connectionFailure('No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: '), 'connection refused');
  t.is(
    connectionFailure('No connection established. Last error: Error: self-signed certificate in certificate chain. Resolution note: '),
    'TLS handshake failed (self-signed certificate in certificate chain)',
  );
  t.regex(connectionFailure('No connection established. Last error: read ECONNRESET (2026-01-01T00:00:00.000Z). Resolution note: ')!, /^TLS handshake failed/);
  t.is(connectionFailure('the server is shutting down'), undefined);
});

test('exitCodeOf: shell conventions', (t) => {
  const job = (fields: Partial<Job>): Job => JobMessage.fromPartial({ id: MISSING_ID, command: 'x', status: JobStatus.JOB_STATUS_FAILED, pid: 1, ...fields });
  t.is(exitCodeOf(job({ status: JobStatus.JOB_STATUS_COMPLETED, exitCode: 0 })), 0);
  t.is(exitCodeOf(job({ exitCode: 3 })), 3);
  t.is(exitCodeOf(job({ signal: 'SIGKILL' })), 137);
  t.is(exitCodeOf(job({})), 1);
  t.is(exitCodeOf(job({ status: JobStatus.JOB_STATUS_STOPPED, signal: 'SIGKILL' })), 137);
  t.is(exitCodeOf(job({ status: JobStatus.JOB_STATUS_STOPPED, signal: 'SIGTERM' })), 143);
  t.is(exitCodeOf(job({ status: JobStatus.JOB_STATUS_STOPPED, exitCode: 0 })), 0, "a stopped job that exited by itself: its own exit code");
});

test('the library writes nothing to its user\'s stderr: no TLS ServerName warning (DEP0123) when the server is named by IP', async (t) => {
  const env = server.env();
  const program = [
    "import { connect } from 'jobworker/client';",
    `const client = connect({ server: '127.0.0.1:${server.server.port}', ca: ${JSON.stringify(env.JOBWORKER_CA)}, cert: ${JSON.stringify(env.JOBWORKER_CERT)}, key: ${JSON.stringify(env.JOBWORKER_KEY)} });`,
    'const jobs = await client.list({ limit: 1 });',
    'client.close();',
    "console.log('listed', jobs.length);",
  ].join('\n');
  const result = await execa('node', ['--input-type=module', '-e', program], { cwd: repoRoot, reject: false });
  t.is(result.exitCode, 0, result.stderr);
  t.regex(result.stdout, /^listed [01]$/);
  t.is(result.stderr, '');
});

test('the README harness: 100 jobs at once, every one followed to its end, exit codes tallied', async (t) => {
  const result = await execa('node', [path.join(repoRoot, 'dist/examples/harness.js'), '100'], { env: server.env(), reject: false });
  t.is(result.exitCode, 0, result.stderr);
  const summary = JSON.parse(result.stdout) as { jobs: number; exitCodes: Record<string, number>; outputBytes: number; failures: string[] };
  t.deepEqual(summary.failures, []);
  t.deepEqual(summary.exitCodes, { 0: 34, 1: 33, 2: 33 });
  // "job 0\n" … "job 99\n"
  t.is(summary.outputBytes, 10 * 6 + 90 * 7);
});

test('the README shows examples/harness.ts as it is', (t) => {
  const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const example = fs.readFileSync(path.join(repoRoot, 'examples/harness.ts'), 'utf8');
  t.true(readme.includes(`\`\`\`ts\n${example}\`\`\``), 'README.md has an out-of-date copy of examples/harness.ts');
});
