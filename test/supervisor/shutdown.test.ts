// Shutdown of the server and of the jobworkerd binary: every job stopped,
// every cgroup removed, exit 0.
import test from 'ava';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { execa } from 'execa';
import { GetJobsStreamReq, JobStatus, type Limits } from '../../src/gen/jobworker/v1/jobworker.js';
import { JobHistory } from '../../src/supervisor/jobs/history.js';
import { detectDriver } from '../../src/workers/cgroup/select.js';
import { repoRoot } from '../helpers/paths.js';
import { adminClient, daemonSetup, launchDaemon, startDaemon } from '../helpers/daemon.js';
import { storedJob } from '../helpers/history.js';
import { alive, groupsUnder, pidsIn, waitUntil } from '../helpers/host.js';
import { rejects, startTestServer, unary, waitForEnd } from '../helpers/server.js';

const limits: Limits = { maxCpuPercent: 0, maxMemoryMb: 0, maxIoBps: 0 };

test.serial('shutdown: stops every running job, even one ignoring SIGTERM, ends its followers and removes the cgroups', async (t) => {
  const ts = await startTestServer(t);
  const admin = ts.client('admin');
  const stubborn = (await unary(admin, 'createJob', { command: 'sh', args: ['-c', "trap '' TERM; echo up; while :; do sleep 1; done"], limits })).job!;
  const quiet = (await unary(admin, 'createJob', { command: 'sleep', args: ['600'], limits })).job!;
  const follower = ts.client('viewer').getJobsStream(GetJobsStreamReq.fromPartial({ id: stubborn.id, follow: true }));
  let received = '';
  const followed = new Promise<void>((resolve, reject) => {
    follower.on('data', (chunk: { data: Buffer }) => (received += chunk.data.toString()));
    follower.on('end', resolve);
    follower.on('error', reject);
  });
  // The follower is connected and streaming once the job's first line reaches it.
  await new Promise((resolve) => follower.once('data', resolve));
  await ts.server.shutdown();
  await followed;
  t.is(received, 'up\n', 'the follower got every byte and its stream ended');
  for (const job of [stubborn, quiet]) {
    t.is(ts.server.store.get(job.id)!.state, 'STOPPED');
    t.false(alive(job.pid));
  }
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
});

test.serial('shutdown: CreateJob during shutdown is refused as UNAVAILABLE', async (t) => {
  const ts = await startTestServer(t);
  const admin = ts.client('admin');
  await unary(admin, 'createJob', { command: 'sleep', args: ['600'], limits });
  const closing = ts.server.shutdown();
  const err = await rejects(unary(admin, 'createJob', { command: 'true', args: [], limits }));
  await closing;
  // Refused by the server shutting down its listener, or by the runner if the call got in first: UNAVAILABLE either way, so clients retry elsewhere.
  t.is(err.code, Status.UNAVAILABLE, err.details);
  t.deepEqual(ts.server.store.list().map((job) => job.command), ['sleep'], 'nothing started');
});

/** Where a parent group named `parent` would be in each hierarchy of this host. */
function parentDirs(parent: string): string[] {
  const v2 = detectDriver('/sys/fs/cgroup') === 'v2';
  const roots = v2 ? ['/sys/fs/cgroup'] : fs.readdirSync('/sys/fs/cgroup').map((name) => path.join('/sys/fs/cgroup', name));
  return roots.map((root) => path.join(root, parent)).filter((dir) => fs.existsSync(dir));
}

test.serial('shutdown: the cgroup parent the server made is removed in every hierarchy; one that was there before it stays', async (t) => {
  const made = await startTestServer(t);
  await waitForEnd(made.client('admin'), (await unary(made.client('admin'), 'createJob', { command: 'true', limits })).job!.id);
  t.true(parentDirs(made.server.cgroupParent).length > 0);
  await made.server.shutdown();
  t.deepEqual(parentDirs(made.server.cgroupParent), []);

  // An operator's own group (in one hierarchy, on v1): the server uses it and leaves it.
  const parent = `jobworker-test-own-parent-${process.pid}`;
  const own = detectDriver('/sys/fs/cgroup') === 'v2' ? `/sys/fs/cgroup/${parent}` : `/sys/fs/cgroup/memory/${parent}`;
  fs.mkdirSync(own);
  t.teardown(() => fs.rmSync(own, { recursive: true, force: true }));
  const kept = await startTestServer(t, { cgroupParent: parent });
  await waitForEnd(kept.client('admin'), (await unary(kept.client('admin'), 'createJob', { command: 'true', limits })).job!.id);
  await kept.server.shutdown();
  t.deepEqual(parentDirs(parent), [own]);
});

test.serial('jobworkerd: SIGTERM stops the jobs, removes their cgroups and exits 0', async (t) => {
  const { pki, parent } = await daemonSetup(t);
  const daemon = await startDaemon(t, pki, parent);
  const job = (await unary(adminClient(t, pki, daemon.port), 'createJob', { command: 'sleep', args: ['600'], limits })).job!;
  t.is(job.status, JobStatus.JOB_STATUS_RUNNING);
  daemon.process.kill('SIGTERM');
  const result = await daemon.process;
  t.is(result.exitCode, 0, result.stderr);
  t.false(alive(job.pid));
  t.deepEqual(groupsUnder(parent), []);
});

test.serial('jobworkerd: after a crash (SIGKILL) the next start kills the orphaned jobs and removes their cgroups', async (t) => {
  const { pki, parent } = await daemonSetup(t);
  const crashed = await startDaemon(t, pki, parent);
  const job = (await unary(adminClient(t, pki, crashed.port), 'createJob', { command: 'sh', args: ['-c', 'setsid sleep 600 & exec sleep 600'], limits })).job!;
  crashed.process.kill('SIGKILL');
  await crashed.process;
  t.true(alive(job.pid), 'the job outlived its server');
  // job-init outside and inside the job's PID namespace, the job, and the child it set free.
  await waitUntil(() => pidsIn(job.cgroup).length === 4, 'the job to fork its escaping child');
  const orphans = pidsIn(job.cgroup);

  const restarted = await startDaemon(t, pki, parent);
  t.deepEqual(orphans.filter(alive), [], 'every process of the orphaned job is gone');
  t.deepEqual(groupsUnder(parent), []);
  const logged = restarted.log.find((entry) => entry.msg === 'removed a job cgroup left by an earlier run');
  t.is(logged?.jobId, job.id);
  t.true(logged?.hadProcesses);
  restarted.process.kill('SIGTERM');
  t.is((await restarted.process).exitCode, 0);
});

/** Jobs of an earlier run in the history, each with a line of output on disk: what a start reads back. */
function earlierJobs(dataDir: string, count: number): void {
  const history = JobHistory.open(dataDir, []);
  const started = Date.now() - 3600_000;
  const entry = Buffer.alloc(20);
  entry[6] = 1;
  entry[7] = 1;
  entry.writeUInt32LE(3, 8);
  entry.writeDoubleLE(started, 12);
  try {
    for (let i = 0; i < count; i++) {
      const id = randomUUID();
      history.put(storedJob(id, { startedAt: new Date(started + i), outputBytes: 3 }));
      const dir = path.join(dataDir, 'output', id);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, '0000000000000000.out'), 'ok\n');
      fs.writeFileSync(path.join(dir, '0000000000000000.idx'), entry);
    }
  } finally {
    history.close();
  }
}

test.serial("jobworkerd: SIGTERM during a long start (10,000 outputs to read back, a crash's jobs to kill) lets it finish the clean-up, serve nothing and exit 0", async (t) => {
  const { pki, parent } = await daemonSetup(t);
  const crashed = await startDaemon(t, pki, parent);
  const job = (await unary(adminClient(t, pki, crashed.port), 'createJob', { command: 'sleep', args: ['600'], limits })).job!;
  crashed.process.kill('SIGKILL');
  await crashed.process;
  // About 1.5 s of reading back here: the signal lands within milliseconds of the start.
  earlierJobs(path.join(pki, 'data'), 10_000);
  const daemon = launchDaemon(t, pki, parent, { args: ['--retain-jobs', '20000'] });
  await daemon.logged('jobworkerd starting');
  daemon.process.kill('SIGTERM');
  const result = await daemon.process;
  t.is(result.exitCode, 0, result.stderr);
  t.true(daemon.log.some((entry) => entry.msg === 'stopped while starting: nothing was served'));
  t.false(daemon.log.some((entry) => entry.msg === 'jobworkerd listening'));
  t.false(alive(job.pid), "the crashed run's job was killed");
  t.deepEqual(groupsUnder(parent), []);
  const history = JobHistory.open(path.join(pki, 'data'), []);
  t.teardown(() => history.close());
  t.is(history.load([]).find((stored) => stored.id === job.id)?.state, 'FAILED', 'and recorded as interrupted');
});

test('jobworkerd: an unreadable certificate file is one clear line and exit 2', async (t) => {
  const result = await execa('node', [path.join(repoRoot, 'bin/jobworkerd.js'), '--ca', '/nonexistent/ca.pem'], { reject: false });
  t.is(result.exitCode, 2);
  t.regex(result.stderr, /^jobworkerd: --ca \/nonexistent\/ca\.pem: no such file/);
  t.is(result.stderr.split('\n').length, 1);
});

test('jobworkerd: a bad flag value is refused by name: one line, exit 2', async (t) => {
  const result = await execa('node', [path.join(repoRoot, 'bin/jobworkerd.js'), '--cgroup-driver', 'v3'], { reject: false });
  t.is(result.exitCode, 2);
  t.is(result.stderr, 'jobworkerd: invalid value for --cgroup-driver: expected one of "auto", "v1", or "v2" (got "v3") (see "jobworkerd --help")');
  t.is(result.stdout, '');
});
