// A job's supervision when things go wrong around it: a job-init that never
// gets to exec, one killed before it could, a supervisor thread that dies.
// Whatever happens, nothing is left running, parked or recorded that should
// not be.
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { status as Status } from '@grpc/grpc-js';
import { JobStatus, type Limits } from '../../../src/gen/jobworker/v1/jobworker.js';
import { pumpsRunning } from '../../../src/supervisor/output/ring-reader.js';
import { detectDriver } from '../../../src/workers/cgroup/select.js';
import { alive, groupsUnder, processesOf, waitUntil } from '../../helpers/host.js';
import { repoRoot } from '../../helpers/paths.js';
import { collectStream, rejects, startTestServer, unary } from '../../helpers/server.js';

const limits: Limits = { maxCpuPercent: 0, maxMemoryMb: 0, maxIoBps: 0 };
const STOPPED_JOB_INIT = path.join(repoRoot, 'test/fixtures/stopped-job-init.sh');
const v2 = detectDriver('/sys/fs/cgroup') === 'v2';

/** Fails a call that should have settled long before: the guard, never the wait. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const guard = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)));
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

/** The fixture's process (this test server's child) once it has stopped itself; SIGKILLed in teardown if the server left it. */
async function stoppedFixture(t: ExecutionContext): Promise<number> {
  let pid: number | undefined;
  await waitUntil(() => {
    pid = processesOf(STOPPED_JOB_INIT).find((p) => new RegExp(`^\\d+ \\(.*\\) T ${process.pid} `).test(fs.readFileSync(`/proc/${p}/stat`, 'utf8')));
    return pid !== undefined;
  }, 'the stand-in job-init to stop itself');
  t.teardown(() => {
    if (alive(pid!)) process.kill(pid!, 'SIGKILL');
  });
  return pid!;
}

/** SIGKILL is delivered, and acted on, a moment after it is sent. */
const killed = (pid: number): Promise<void> => waitUntil(() => !alive(pid), `process ${pid} to die`);

test.serial('start: a job-init stopped before it joined its cgroup is killed once the start time-out is out, and CreateJob fails', async (t) => {
  // Long enough for the stand-in to reach its SIGSTOP first, even in the slow
  // v2 VM (1 s was not, once: the server killed it while its shell started).
  const ts = await startTestServer(t, { jobInitPath: STOPPED_JOB_INIT, startTimeoutMs: 5_000 });
  const creating = unary(ts.client('admin'), 'createJob', { command: 'true', limits });
  // Awaited below; if the fixture fails first, its rejection must not also fail the file.
  creating.catch(() => undefined);
  const pid = await stoppedFixture(t);
  const err = await rejects(within(creating, 30_000, 'CreateJob'));
  t.is(err.code, Status.INTERNAL);
  t.is(err.details, 'job-init did not exec the command within 5000 ms');
  await killed(pid);
  t.deepEqual((await unary(ts.client('viewer'), 'getJobs', {})).jobs, []);
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
});

test.serial("start: a supervisor thread that dies mid-start leaves no job-init running and no output pump parked", async (t) => {
  const ts = await startTestServer(t, { jobInitPath: STOPPED_JOB_INIT, workers: 1 });
  const creating = unary(ts.client('admin'), 'createJob', { command: 'true', limits });
  // Awaited below; if the fixture fails first, its rejection must not also fail the file.
  creating.catch(() => undefined);
  const pid = await stoppedFixture(t);
  await ts.server.endSupervisorThread(ts.server.supervisorThreads()[0]!);
  const err = await rejects(within(creating, 20_000, 'CreateJob'));
  t.is(err.code, Status.INTERNAL);
  t.regex(err.details, /^the job's supervisor thread failed while starting it: /);
  // The thread spawned it and died without a word: the server found it by the job's id in its arguments.
  await killed(pid);
  t.is(pumpsRunning(), 0, "the job's output pump ended");
  t.deepEqual(fs.readdirSync(path.join(ts.pki, 'data/output')), [], 'no output directory');
  t.deepEqual((await unary(ts.client('viewer'), 'getJobs', {})).jobs, []);
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
});

test.serial('running: a supervisor thread that dies kills its job, which ends FAILED; its followers end and its pump is released', async (t) => {
  const ts = await startTestServer(t, { workers: 1 });
  const admin = ts.client('admin');
  const job = (await unary(admin, 'createJob', { command: 'sh', args: ['-c', 'echo up; exec sleep 600'], limits })).job!;
  const following = collectStream(ts.client('viewer'), { id: job.id, follow: true });
  await waitUntil(() => ts.server.store.get(job.id)!.log.length > 0, 'the first line');
  await ts.server.endSupervisorThread(ts.server.supervisorThreads()[0]!);
  const output = await within(following, 20_000, 'the follower');
  t.is(output.stdout.toString(), 'up\n');
  const ended = (await unary(admin, 'getJob', { id: job.id })).job!;
  t.is(ended.status, JobStatus.JOB_STATUS_FAILED);
  t.regex(ended.message, /^supervision failed: /);
  t.false(alive(job.pid));
  t.is(pumpsRunning(), 0);
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
  // The pool has a thread again: jobs still start.
  t.is((await unary(admin, 'createJob', { command: 'true', limits })).job!.status, JobStatus.JOB_STATUS_RUNNING);
});

/** The job parent's freezer: jobs created under a frozen parent are frozen the moment job-init joins their group. */
function freezeParent(parent: string, frozen: boolean): void {
  if (v2) fs.writeFileSync(`/sys/fs/cgroup/${parent}/cgroup.freeze`, frozen ? '1' : '0');
  else fs.writeFileSync(`/sys/fs/cgroup/freezer/${parent}/freezer.state`, frozen ? 'FROZEN' : 'THAWED');
}

/** A job group under the parent whose job-init has joined it and is frozen there; its pid. */
function frozenJobInit(parent: string): number | undefined {
  const root = v2 ? `/sys/fs/cgroup/${parent}` : `/sys/fs/cgroup/freezer/${parent}`;
  for (const group of fs.readdirSync(root, { withFileTypes: true }).filter((entry) => entry.isDirectory())) {
    const dir = path.join(root, group.name);
    const pids = fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    const frozen = v2 ? /^frozen 1$/m.test(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8')) : fs.readFileSync(path.join(dir, 'freezer.state'), 'utf8').trim() === 'FROZEN';
    if (pids.length === 1 && frozen) return pids[0];
  }
  return undefined;
}

test.serial('start: a job-init killed before it could exec the command (kill -9, the OOM killer during setup) is a failed start, not a job', async (t) => {
  const ts = await startTestServer(t);
  const parent = ts.server.cgroupParent;
  freezeParent(parent, true);
  t.teardown(() => freezeParent(parent, false));
  const creating = unary(ts.client('admin'), 'createJob', { command: 'echo', args: ['ran'], limits });
  let pid: number | undefined;
  await waitUntil(() => (pid = frozenJobInit(parent)) !== undefined, 'job-init to join its group and be frozen there');
  process.kill(pid!, 'SIGKILL');
  freezeParent(parent, false);
  const err = await rejects(within(creating, 20_000, 'CreateJob'));
  t.is(err.code, Status.INTERNAL);
  t.is(err.details, 'job-init was killed by SIGKILL before it could exec the command');
  t.deepEqual((await unary(ts.client('viewer'), 'getJobs', {})).jobs, [], 'nothing recorded');
  t.deepEqual(groupsUnder(parent), []);
});
