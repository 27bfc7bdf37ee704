// Quotas in a fleet: every node has the same --quota-file, and the use it is
// checked against is the whole fleet's, kept in etcd. Creates racing through
// every node for jobs on every node never overshoot a quota; a job's share
// is given back by its end wherever it is recorded (its node, or the node
// that declared it lost); `jobctl quota` on any node shows the fleet's use.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import type { ServiceError } from '@grpc/grpc-js';
import { issueCert } from '../../certs/pki.js';
import { openChannel } from '../../src/client/channel.js';
import { ERROR_CODE_TRAILER } from '../../src/common/error-codes.js';
import { JobStatus, type Job, type JobServiceClient } from '../../src/gen/jobworker/v1/jobworker.js';
import { jobctlPath } from '../helpers/paths.js';
import { unary } from '../helpers/server.js';
import { PREFIX, startFleet, waitForFleet, type FleetNode } from '../helpers/fleet.js';

/** The refusal of a call: its error code and message. */
async function refusal(promise: Promise<unknown>): Promise<{ errorCode: unknown; details: string }> {
  return promise.then(
    () => {
      throw new Error('the call was answered, not refused');
    },
    (err: ServiceError) => ({ errorCode: err.metadata?.get(ERROR_CODE_TRAILER)[0], details: err.details }),
  );
}

test('quotas count the whole fleet: racing creates through every node never overshoot; an end anywhere, a lost node too, gives the share back; rate and failed starts; jobctl quota on any node', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-fleet-quotas-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const quotaFile = path.join(dir, 'quotas.conf');
  fs.writeFileSync(quotaFile, 'cn=admin running=3 memory=1024\ncn=alice rate=2/m\nrole=admin running=1\n');
  // Each start waits 300 ms between reading its owner's use and claiming: racing starts all read the same use.
  const { etcd, ca, nodes } = await startFleet(t, { args: () => ['--quota-file', quotaFile], env: () => ({ JOBWORKER_FLEET_DELAY_AT: 'quota-read:300' }) });
  const [n1, n2, n3] = nodes as [FleetNode, FleetNode, FleetNode];
  const started: Job[] = [];
  // Through a node that is up at the end (one is killed below).
  t.teardown(() => Promise.all(started.map((job) => Promise.any(nodes.map((node) => unary(node.jobs, 'stopJob', { id: job.id, graceMs: 0 }))).catch(() => undefined))));
  const runningKeys = async (cn: string) => (await etcd.root.getAll().prefix(`${PREFIX}quota/${cn}/running/`).keys()).length;

  // 24 creates at once, eight through each node, for jobs on every node.
  const racing = nodes.flatMap((via, i) =>
    [0, 1, 2, 3, 4, 5, 6, 7].map((k) => unary(via.jobs, 'createJob', { command: 'sleep', args: ['600'], node: nodes[(i + k) % 3]!.name, limits: { maxCpuPercent: 10, maxMemoryMb: 64, maxIoBps: 0, maxPids: 0 } })),
  );
  const outcomes = await Promise.allSettled(racing);
  for (const outcome of outcomes) if (outcome.status === 'fulfilled') started.push(outcome.value.job!);
  t.is(started.length, 3, 'exactly the quota, never more');
  const refused = outcomes.filter((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected').map((outcome) => (outcome.reason as ServiceError).details);
  t.deepEqual(new Set(refused), new Set([`quota exceeded: running jobs: limit 3, cn=admin has 3 running or starting in the fleet (rule cn=admin at ${quotaFile}:1)`]));
  t.is(await runningKeys('admin'), 3);
  const running = (await unary(n2.jobs, 'getJobs', { status: JobStatus.JOB_STATUS_RUNNING })).jobs;
  t.is(running.length, 3, 'and nothing else was started anywhere');

  // Every node says the fleet's use, through jobctl too.
  const jobctl = (node: FleetNode, args: string[]) =>
    execa('node', [jobctlPath, ...args], {
      env: { JOBWORKER_SERVER: `127.0.0.1:${node.port}`, JOBWORKER_CA: `${node.dir}/ca-cert.pem`, JOBWORKER_CERT: `${node.dir}/client-admin-cert.pem`, JOBWORKER_KEY: `${node.dir}/client-admin-key.pem` },
      reject: false,
      timeout: 60_000,
    });
  for (const node of nodes) {
    const shown = await jobctl(node, ['quota', '--json']);
    t.is(shown.exitCode, 0, shown.stderr);
    const quota = JSON.parse(shown.stdout) as { rule: string; use: { running: number; memoryMb: number } };
    t.deepEqual([quota.rule, quota.use.running, quota.use.memoryMb], ['cn=admin', 3, 192], `through ${node.name}`);
  }

  // A stop through one node makes room for a start through another at once (the stop answers once the fleet has the end).
  const SIXTY_FOUR = { maxCpuPercent: 10, maxMemoryMb: 64, maxIoBps: 0, maxPids: 0 };
  const other = (...names: string[]): FleetNode => nodes.find((node) => !names.includes(node.name))!;
  const first = started[0]!;
  await unary(other(first.node).jobs, 'stopJob', { id: first.id, graceMs: 0 });
  const admitted = (await unary(other(first.node).jobs, 'createJob', { command: 'sleep', args: ['600'], node: first.node, limits: SIXTY_FOUR })).job!;
  started.push(admitted);
  t.is(admitted.node, first.node);
  // memory: two jobs of 64 MiB run; 900 more would pass 1024.
  await unary(n1.jobs, 'stopJob', { id: started[1]!.id, graceMs: 0 });
  t.deepEqual(await refusal(unary(n3.jobs, 'createJob', { command: 'true', limits: { ...SIXTY_FOUR, maxMemoryMb: 900 } })), {
    errorCode: 'QUOTA_EXCEEDED',
    details: `quota exceeded: memory (the --max-memory of running jobs, MiB): limit 1024, cn=admin uses 128 in the fleet and this job asks 900 (rule cn=admin at ${quotaFile}:1)`,
  });

  // A node lost with jobs of admin's: the fleet ends them as lost, and their shares are given back.
  const lost = nodes.find((node) => node.name === admitted.node)!;
  const [survivor, last] = nodes.filter((node) => node !== lost) as [FleetNode, FleetNode];
  const onLost = (await unary(survivor.jobs, 'getJobs', { status: JobStatus.JOB_STATUS_RUNNING, node: lost.name })).jobs.length;
  t.true(onLost >= 1);
  lost.daemon.process.kill('SIGKILL');
  await lost.daemon.process.catch(() => undefined);
  // Ended as lost, its share still counts: a node cut off rather than dead runs its jobs until --stop-jobs-after (3 s here).
  await waitForFleet(() => unary(survivor.jobs, 'getJob', { id: admitted.id }), (res) => res.job!.status === JobStatus.JOB_STATUS_FAILED, 'the job ended as lost', 30_000);
  t.is(await runningKeys('admin'), 2);
  await waitForFleet(() => unary(survivor.jobs, 'getQuota', {}), (quota) => quota.use!.running === 2 - onLost, "the lost node's jobs given back", 30_000);
  t.is(await runningKeys('admin'), 2 - onLost);

  // rate=2/m for alice, counted across nodes; a start that failed is not counted.
  const alicePair = await issueCert(ca, { cn: 'alice', ou: 'admin', kind: 'client' });
  fs.writeFileSync(path.join(dir, 'alice-cert.pem'), alicePair.certPem);
  fs.writeFileSync(path.join(dir, 'alice-key.pem'), alicePair.keyPem, { mode: 0o600 });
  const alice = (node: FleetNode): JobServiceClient => {
    const client = openChannel({ server: `127.0.0.1:${node.port}`, ca: `${node.dir}/ca-cert.pem`, cert: path.join(dir, 'alice-cert.pem'), key: path.join(dir, 'alice-key.pem') });
    t.teardown(() => client.close());
    return client;
  };
  const [a2, a3] = [alice(survivor), alice(last)];
  const failed = await refusal(unary(a2, 'createJob', { command: '/no/such/command', limits: SIXTY_FOUR, node: last.name }));
  t.regex(failed.details, /no\/such\/command/);
  t.is((await unary(a3, 'getQuota', {})).use!.created, 0, 'a failed start is not counted');
  await unary(a2, 'createJob', { command: 'true', limits: SIXTY_FOUR, node: last.name });
  await unary(a3, 'createJob', { command: 'true', limits: SIXTY_FOUR, node: survivor.name });
  t.deepEqual(await refusal(unary(a2, 'createJob', { command: 'true', limits: SIXTY_FOUR, node: survivor.name })), {
    errorCode: 'QUOTA_EXCEEDED',
    details: `quota exceeded: rate: limit 2 jobs per minute, cn=alice created 2 in the last one in the fleet (rule cn=alice at ${quotaFile}:2)`,
  });
  // Another CN's quota, asked of any node.
  const aliceSeen = await unary(last.jobs, 'getQuota', { owner: 'alice' });
  t.deepEqual([aliceSeen.rule, aliceSeen.use!.created, aliceSeen.use!.running], ['cn=alice', 2, 0]);

  // A role's rule, for a start handed to another node: the caller's role travels with it.
  const bobPair = await issueCert(ca, { cn: 'bob', ou: 'admin', kind: 'client' });
  fs.writeFileSync(path.join(dir, 'bob-cert.pem'), bobPair.certPem);
  fs.writeFileSync(path.join(dir, 'bob-key.pem'), bobPair.keyPem, { mode: 0o600 });
  const bob = openChannel({ server: `127.0.0.1:${survivor.port}`, ca: `${survivor.dir}/ca-cert.pem`, cert: path.join(dir, 'bob-cert.pem'), key: path.join(dir, 'bob-key.pem') });
  t.teardown(() => bob.close());
  started.push((await unary(bob, 'createJob', { command: 'sleep', args: ['600'], limits: SIXTY_FOUR, node: last.name })).job!);
  t.deepEqual(await refusal(unary(bob, 'createJob', { command: 'true', limits: SIXTY_FOUR, node: last.name })), {
    errorCode: 'QUOTA_EXCEEDED',
    details: `quota exceeded: running jobs: limit 1, cn=bob has 1 running or starting in the fleet (rule role=admin at ${quotaFile}:3)`,
  });
  const bobSeen = await unary(last.jobs, 'getQuota', { owner: 'bob' });
  t.deepEqual([bobSeen.rule, bobSeen.use!.running], ['role=admin', 1], "another CN's role is the fleet's to know");

  // Every job ended: no share is left in etcd.
  for (const job of started) await unary(survivor.jobs, 'stopJob', { id: job.id, graceMs: 0 }).catch(() => undefined);
  await waitForFleet(() => runningKeys('admin'), (count) => count === 0, 'every share given back');
  t.is(await runningKeys('alice'), 0);
  t.is(await runningKeys('bob'), 0);
});
