// Job records kept across restarts: the real jobworkerd, SIGKILLed or
// stopped, started again on the same data directory.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { GetJobsStreamReq, JobStatus, OutputStream, type DataChunk, type Job, type JobServiceClient } from '../../../src/gen/jobworker/v1/jobworker.js';
import { JobHistory, type HistoryProblem, type StoredJob } from '../../../src/supervisor/jobs/history.js';
import { RESTARTED_WHILE_RUNNING } from '../../../src/supervisor/jobs/store.js';
import { adminClient, daemonSetup, startDaemon } from '../../helpers/daemon.js';
import { storedJob } from '../../helpers/history.js';
import { alive, groupsUnder, scratchDir, tmpfs, waitUntil } from '../../helpers/host.js';
import { collectStream, rejects, startTestServer, unary } from '../../helpers/server.js';
import { repoRoot } from '../../helpers/paths.js';

const limits = { maxCpuPercent: 50, maxMemoryMb: 64, maxIoBps: 0, maxPids: 0 };


const byId = (jobs: Job[]) => new Map(jobs.map((job) => [job.id, job]));

/** Where each run of one stream starts: how stdout and stderr interleave, however the chunks were cut. */
function runs(chunks: DataChunk[]): [number, OutputStream][] {
  return chunks.filter((c, i) => i === 0 || chunks[i - 1]!.stream !== c.stream).map((c) => [c.offset, c.stream]);
}

/** Random bytes in a file of the test's PKI dir, for jobs to `cat`. */
function randomFile(pki: string, name: string, bytes: number): { path: string; data: Buffer } {
  const data = randomBytes(bytes);
  const file = path.join(pki, name);
  fs.writeFileSync(file, data);
  return { path: file, data };
}

/** Bytes in a job's output files (<data>/output/<id>/*.out) as the disk has them now. */
function bytesOnDisk(pki: string, id: string): number {
  const dir = path.join(pki, 'data', 'output', id);
  if (!fs.existsSync(dir)) return 0;
  return fs
    .readdirSync(dir)
    .filter((name) => name.endsWith('.out'))
    .reduce((sum, name) => sum + fs.statSync(path.join(dir, name)).size, 0);
}

/** Reads a running job's output until `bytes` have come: it is then in the server's log. */
async function outputReaches(client: JobServiceClient, id: string, bytes: number): Promise<void> {
  const stream = client.getJobsStream(GetJobsStreamReq.fromPartial({ id, follow: true }));
  let seen = 0;
  for await (const chunk of stream as AsyncIterable<DataChunk>) {
    seen += chunk.data.length;
    if (seen >= bytes) break;
  }
  stream.cancel();
}

test.serial('after a SIGKILL the restarted server lists every earlier job with its output byte-exact; the one that was running is FAILED, its processes gone', async (t) => {
  const { pki, parent } = await daemonSetup(t);
  const out = randomFile(pki, 'out.bin', 3 * 1024 * 1024 + 17);
  const err = randomFile(pki, 'err.bin', 100_003);
  const first = await startDaemon(t, pki, parent, { hostView: true });
  const client = adminClient(t, pki, first.port);
  const done = (await unary(client, 'createJob', { command: 'sh', args: ['-c', `cat ${out.path}; cat ${err.path} >&2; echo hello; exit 3`], limits })).job!;
  const before = await collectStream(client, { id: done.id, follow: true });
  const running = (await unary(client, 'createJob', { command: 'sh', args: ['-c', `cat ${err.path} >&2; cat ${out.path}; exec sleep 600`], limits })).job!;
  // Written, not only read: a SIGKILL loses what the server had read but not yet written (README, Known limits).
  await waitUntil(() => bytesOnDisk(pki, running.id) === out.data.length + err.data.length, "the running job's output to be on disk", 30_000);
  first.process.kill('SIGKILL');
  await first.process;

  const second = await startDaemon(t, pki, parent, { hostView: true });
  const again = adminClient(t, pki, second.port, 'viewer');
  const jobs = byId((await unary(again, 'getJobs', {})).jobs);
  t.is(jobs.size, 2);
  const total = out.data.length + err.data.length + 6;
  t.like(jobs.get(done.id), { status: JobStatus.JOB_STATUS_FAILED, exitCode: 3, command: 'sh', owner: 'admin', outputBytes: total, outputProblem: '' });
  t.deepEqual(jobs.get(done.id)!.limits, done.limits);
  t.is(jobs.get(done.id)!.startedAt!.getTime(), done.startedAt!.getTime());
  const interrupted = jobs.get(running.id)!;
  t.is(interrupted.status, JobStatus.JOB_STATUS_FAILED);
  t.is(interrupted.message, RESTARTED_WHILE_RUNNING);
  t.is(interrupted.outputBytes, out.data.length + err.data.length, 'its output as far as the server had it');
  t.truthy(interrupted.endedAt);
  t.false(alive(running.pid), 'the job that was running is gone');
  t.deepEqual(groupsUnder(parent), []);
  t.truthy(second.log.find((line) => line.msg === 'a job was running when the server stopped: recorded FAILED' && line.jobId === running.id));

  // Output from before the restart, byte for byte, stdout and stderr apart and in order.
  const after = await collectStream(again, { id: done.id, follow: true });
  t.true(after.stdout.equals(Buffer.concat([out.data, Buffer.from('hello\n')])));
  t.true(after.stderr.equals(err.data));
  t.deepEqual(runs(after.chunks), runs(before.chunks), 'stdout and stderr interleaved as they were');
  const cut = await collectStream(again, { id: running.id, follow: false });
  t.true(cut.stderr.equals(err.data));
  t.true(cut.stdout.equals(out.data));
  // And the server goes on as before.
  const fresh = (await unary(adminClient(t, pki, second.port), 'createJob', { command: 'echo', args: ['new'], limits })).job!;
  t.is((await collectStream(again, { id: fresh.id, follow: true })).stdout.toString(), 'new\n');
  second.process.kill('SIGTERM');
  t.is((await second.process).exitCode, 0);
});

test.serial('a clean shutdown records the jobs it stopped as STOPPED with their output, and the next start shows them so', async (t) => {
  const { pki, parent } = await daemonSetup(t);
  const out = randomFile(pki, 'out.bin', 1024 * 1024 + 5);
  const first = await startDaemon(t, pki, parent, { hostView: true });
  const client = adminClient(t, pki, first.port);
  const job = (await unary(client, 'createJob', { command: 'sh', args: ['-c', `cat ${out.path}; exec sleep 600`], limits })).job!;
  await outputReaches(client, job.id, out.data.length);
  first.process.kill('SIGTERM');
  t.is((await first.process).exitCode, 0);

  const second = await startDaemon(t, pki, parent, { hostView: true });
  const [again] = (await unary(adminClient(t, pki, second.port), 'getJobs', {})).jobs;
  t.is(again?.id, job.id);
  t.is(again?.status, JobStatus.JOB_STATUS_STOPPED);
  t.true((await collectStream(adminClient(t, pki, second.port), { id: job.id })).stdout.equals(out.data));
  t.false(second.log.some((line) => line.msg === 'a job was running when the server stopped: recorded FAILED'));
  second.process.kill('SIGTERM');
  await second.process;
});

test.serial('output damaged on disk is cut back, reported in the log and on the job, and the rest is served', async (t) => {
  const { pki, parent } = await daemonSetup(t);
  const out = randomFile(pki, 'out.bin', 300_000);
  const first = await startDaemon(t, pki, parent, { hostView: true });
  const client = adminClient(t, pki, first.port);
  const job = (await unary(client, 'createJob', { command: 'cat', args: [out.path], limits })).job!;
  await collectStream(client, { id: job.id, follow: true });
  first.process.kill('SIGTERM');
  await first.process;
  // The disk lost the end of the data file.
  const dir = path.join(pki, 'data', 'output', job.id);
  const data = fs.readdirSync(dir).find((name) => name.endsWith('.out'))!;
  fs.truncateSync(path.join(dir, data), 250_000);

  const second = await startDaemon(t, pki, parent, { hostView: true });
  const again = adminClient(t, pki, second.port);
  const logged = second.log.find((line) => line.msg === 'job output: not everything could be read back') as { jobId?: string; problem?: string } | undefined;
  t.is(logged?.jobId, job.id);
  const { job: damaged } = await unary(again, 'getJob', { id: job.id });
  t.regex(damaged!.outputProblem, /^output damaged: .*frames claim bytes its data file lacks, cut off; the job wrote 300000 bytes, \d+ of them are not on disk$/);
  const served = await collectStream(again, { id: job.id });
  t.true(served.stdout.length <= 250_000 && served.stdout.length > 0);
  t.true(served.stdout.equals(out.data.subarray(0, served.stdout.length)), 'what is kept is byte-exact');
  second.process.kill('SIGTERM');
  await second.process;
});

test.serial('a job history SQLite cannot read is moved aside and reported; the server starts with a new one', async (t) => {
  const { pki, parent } = await daemonSetup(t);
  fs.mkdirSync(`${pki}/data`);
  fs.writeFileSync(`${pki}/data/jobs.db`, 'this is not a database, but the disk said it was'.repeat(100));
  const daemon = await startDaemon(t, pki, parent, { hostView: true });
  const problem = daemon.log.find((line) => line.msg === 'job history: not everything could be read back') as { problem?: string } | undefined;
  t.regex(problem?.problem ?? '', /jobs\.db is unreadable .*moved to .*jobs\.db\.corrupt-/);
  t.true(fs.readdirSync(`${pki}/data`).some((name) => name.startsWith('jobs.db.corrupt-')), 'the unreadable file is kept for a human to look at');
  const client = adminClient(t, pki, daemon.port);
  t.deepEqual((await unary(client, 'getJobs', {})).jobs, []);
  const job = (await unary(client, 'createJob', { command: 'true', args: [], limits })).job!;
  t.is(job.status, JobStatus.JOB_STATUS_RUNNING);
  daemon.process.kill('SIGTERM');
  await daemon.process;
});

test('a data directory that cannot be created stops the server with the reason', async (t) => {
  const { pki, parent } = await daemonSetup(t);
  const result = await execa(
    'node',
    [
      path.join(repoRoot, 'bin/jobworkerd.js'),
      ...['--listen', '127.0.0.1:0', '--ca', `${pki}/ca-cert.pem`, '--cert', `${pki}/server-cert.pem`, '--key', `${pki}/server-key.pem`],
      ...['--cgroup-parent', parent, '--data-dir', `${pki}/missing/data`],
    ],
    { reject: false },
  );
  t.is(result.exitCode, 2);
  t.regex(result.stderr, /^jobworkerd: cannot start: cannot create the data directory \/tmp\/\S+\/missing\/data: ENOENT/);
});

test('a record that does not parse is reported and left out; the others load', (t) => {
  const dir = scratchDir(t, os.tmpdir());
  const job = (id: string): StoredJob =>
    storedJob(id, {
      args: ['a', 'b'],
      limits: { cpuPercent: 100, memoryBytes: 2 ** 20, ioBps: 0, pids: 64 },
      pid: 42,
      startedAt: new Date(1_700_000_000_000),
      endedAt: new Date(1_700_000_001_000),
      outputBytes: 12,
    });
  const history = JobHistory.open(dir, []);
  history.put(job('good'));
  history.put(job('bad'));
  history.close();
  const db = new Database(path.join(dir, 'jobs.db'));
  db.prepare("UPDATE jobs SET state = 'EXPLODED' WHERE id = 'bad'").run();
  db.close();

  const problems: HistoryProblem[] = [];
  const reopened = JobHistory.open(dir, problems);
  t.teardown(() => reopened.close());
  t.deepEqual(reopened.load(problems), [job('good')]);
  t.deepEqual(problems, [{ jobId: 'bad', problem: 'unreadable record, left out: unknown state "EXPLODED"' }]);
});

test('a job history from before isolation existed opens: its jobs load with none recorded, and new ones keep theirs', (t) => {
  const dir = scratchDir(t, os.tmpdir());
  // The schema as the first release wrote it.
  const old = new Database(path.join(dir, 'jobs.db'));
  old.exec(`CREATE TABLE jobs (id TEXT PRIMARY KEY, command TEXT NOT NULL, args TEXT NOT NULL, limits TEXT NOT NULL, owner TEXT NOT NULL,
    pid INTEGER NOT NULL, cgroup TEXT NOT NULL, started_at INTEGER NOT NULL, state TEXT NOT NULL, ended_at INTEGER, exit_code INTEGER,
    signal TEXT, oom_killed INTEGER NOT NULL, message TEXT NOT NULL, usage TEXT, output_bytes INTEGER NOT NULL) STRICT`);
  old.prepare(`INSERT INTO jobs VALUES ('before', 'true', '[]', '{"cpuPercent":100,"memoryBytes":1048576,"ioBps":0,"pids":64}', 'admin', 42,
    '/jobworker/before', 1700000000000, 'COMPLETED', 1700000001000, 0, NULL, 0, '', NULL, 0)`).run();
  old.close();

  const history = JobHistory.open(dir, []);
  t.teardown(() => history.close());
  const [before] = history.load([]);
  t.is(before?.id, 'before');
  t.is(before?.isolation, null);
  t.is(before?.workdir, null);
  const isolation = { pidNamespace: true, mountNamespace: true, network: 'none' as const, uid: 65534, gid: 65534, rootfs: null };
  history.put({ ...before!, id: 'after', isolation, workdir: '/srv' });
  t.deepEqual(
    history.load([]).map((job) => [job.isolation, job.workdir]),
    [
      [null, null],
      [isolation, '/srv'],
    ],
  );
});

test.serial('with the data directory full, CreateJob is refused with RESOURCE_EXHAUSTED and the job it started is stopped', async (t) => {
  const dir = await tmpfs(t, '256k');
  const ts = await startTestServer(t, { dataDir: path.join(dir, 'data') });
  const client = ts.client('admin');
  const first = (await unary(client, 'createJob', { command: 'true', args: [], limits })).job!;
  await collectStream(client, { id: first.id, follow: true });
  // Fill what is left of the filesystem.
  await execa('sh', ['-c', `cat /dev/zero > "${dir}/filler"`], { reject: false });

  const err = await rejects(unary(client, 'createJob', { command: 'sleep', args: ['600'], limits }));
  t.is(err.code, Status.RESOURCE_EXHAUSTED);
  t.regex(err.details, /cannot record job \S+ in the job history: .*full.*; the job was stopped/i);
  t.deepEqual(groupsUnder(ts.server.cgroupParent), [], 'the job that could not be recorded is gone');
  t.deepEqual((await unary(client, 'getJobs', {})).jobs.map((job) => job.id), [first.id]);

  // Space again: recording works again.
  fs.rmSync(`${dir}/filler`);
  const later = (await unary(client, 'createJob', { command: 'true', args: [], limits })).job!;
  t.is(later.status, JobStatus.JOB_STATUS_RUNNING);
  await collectStream(client, { id: later.id, follow: true });
});

test('a waiting job is kept with the environment it is to start with, until it starts; its creation time and dependencies stay', (t) => {
  const dir = scratchDir(t, os.tmpdir());
  const history = JobHistory.open(dir, []);
  t.teardown(() => history.close());
  const createdAt = new Date(1_700_000_000_000);
  const after = [{ id: 'first', condition: 'any' as const }];
  const waiting = storedJob('second', { state: 'WAITING', pid: 0, cgroup: '', createdAt, startedAt: null, endedAt: null, exitCode: null, after, env: { TOKEN: 'x' } });
  history.put(storedJob('first', { createdAt: new Date(1_600_000_000_000), startedAt: new Date(1_600_000_000_000) }));
  history.put(waiting);
  t.deepEqual(history.load([])[1], waiting);
  // Started: pid, cgroup and start time are written, the environment is gone.
  const startedAt = new Date(1_700_000_005_000);
  history.put({ ...waiting, state: 'RUNNING', pid: 42, cgroup: '/jobworker/second', startedAt, env: null });
  const [, started] = history.load([]);
  t.like(started, { state: 'RUNNING', pid: 42, cgroup: '/jobworker/second', env: null, after });
  t.is(started!.startedAt!.getTime(), startedAt.getTime());
  t.is(started!.createdAt.getTime(), createdAt.getTime());
});

test.serial('a job waiting when the server is SIGKILLed waits on after the restart, and runs with its environment once its dependency has ended', async (t) => {
  const { pki, parent } = await daemonSetup(t);
  const first = await startDaemon(t, pki, parent, { hostView: true });
  const client = adminClient(t, pki, first.port);
  const dependency = (await unary(client, 'createJob', { command: 'sleep', args: ['600'], limits })).job!;
  const after = [{ job: dependency.id, condition: 2 }];
  const waiting = (await unary(client, 'createJob', { command: 'sh', args: ['-c', 'echo "$SECRET"'], env: ['SECRET=kept'], limits, after })).job!;
  t.is(waiting.status, JobStatus.JOB_STATUS_WAITING);
  first.process.kill('SIGKILL');
  await first.process;

  const second = await startDaemon(t, pki, parent, { hostView: true });
  const again = adminClient(t, pki, second.port);
  // The restart ended the dependency FAILED; the waiting job, :any, ran.
  const ended = (await unary(again, 'waitJob', { id: waiting.id })).job!;
  t.is(ended.status, JobStatus.JOB_STATUS_COMPLETED);
  t.is((await collectStream(again, { id: waiting.id, follow: true })).stdout.toString(), 'kept\n');
  t.is((await unary(again, 'getJob', { id: dependency.id })).job!.message, RESTARTED_WHILE_RUNNING);
  t.false(alive(dependency.pid));
  second.process.kill('SIGTERM');
  t.is((await second.process).exitCode, 0);
});
