// Shutdown of the server and of the jobworkerd binary: every job stopped,
// every cgroup removed, exit 0.
import test from 'ava';
import path from 'node:path';
import { execa } from 'execa';
import { GetJobsStreamReq, JobStatus, type Limits } from '../../src/gen/jobworker/v1/jobworker.js';
import { repoRoot } from '../helpers/paths.js';
import { adminClient, daemonSetup, startDaemon } from '../helpers/daemon.js';
import { alive, groupsUnder, pidsIn, waitUntil } from '../helpers/host.js';
import { startTestServer, unary } from '../helpers/server.js';

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
  const err = await unary(admin, 'createJob', { command: 'true', args: [], limits }).then(
    () => undefined,
    (e: { code: number }) => e,
  );
  await closing;
  t.truthy(err, 'the call failed');
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
