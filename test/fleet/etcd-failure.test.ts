// The fleet's store failing under it: kill -9 of the etcd leader while
// clients create jobs through every node. The API resumes within seconds,
// and no job is doubled or lost: every create that answered OK is listed
// once, and nothing is listed that no create asked for. A node cut off from
// etcd while the rest of the fleet is not: its jobs are ended as lost, and
// no node tells of another ending in the meantime.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { JobStatus, NodeState } from '../../src/gen/jobworker/v1/jobworker.js';
import { alive, waitUntil } from '../helpers/host.js';
import { listAll, unary } from '../helpers/server.js';
import { nodesOf, startFleet, waitForFleet, type FleetNode } from '../helpers/fleet.js';

test('kill -9 of the etcd leader mid-creates: creates resume within seconds; every OK job listed once, none doubled', async (t) => {
  const { nodes, etcd } = await startFleet(t);
  const ok = new Map<string, number>();
  const failed: string[] = [];
  let killedAt = 0;
  let firstOkAfterKill = 0;
  let stop = false;
  const worker = async (node: FleetNode, n: number): Promise<void> => {
    for (let i = 0; !stop; i++) {
      const asked = Date.now();
      try {
        // Small limits: capacity is not what this test is about.
        const { job } = await unary(node.jobs, 'createJob', { command: 'true', args: [`${node.name}-${n}-${i}`], limits: { maxCpuPercent: 1, maxMemoryMb: 8 } });
        ok.set(job!.id, (ok.get(job!.id) ?? 0) + 1);
        if (killedAt && asked > killedAt && !firstOkAfterKill) firstOkAfterKill = Date.now();
      } catch (err) {
        failed.push(`${(err as ServiceError).code} ${(err as ServiceError).details}`);
      }
    }
  };
  const workers = nodes.flatMap((node) => [worker(node, 0), worker(node, 1)]);
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  const leader = await etcd.leader();
  const before = ok.size;
  await leader.kill('SIGKILL');
  killedAt = Date.now();
  // Creates go on until some have succeeded after the kill, or 20 s (then the assertion below fails).
  while (!firstOkAfterKill && Date.now() - killedAt < 20_000) await new Promise((resolve) => setTimeout(resolve, 100));
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  stop = true;
  await Promise.all(workers);
  t.log(`${before} jobs before the kill, ${ok.size} in all; ${failed.length} creates failed; first OK create asked after the kill answered ${firstOkAfterKill - killedAt} ms after it`);
  if (failed.length) t.log(`failures: ${[...new Set(failed)].slice(0, 5).join(' | ')}`);
  t.true(firstOkAfterKill > 0 && firstOkAfterKill - killedAt < 10_000, 'creates resumed within 10 s');
  t.true([...ok.values()].every((count) => count === 1));
  const listed = await listAll(nodes[0]!.jobs, {});
  const ids = listed.map((job) => job.id);
  t.is(new Set(ids).size, ids.length, 'no job listed twice');
  for (const id of ok.keys()) t.true(ids.includes(id), `job ${id} answered OK and is listed`);
  // A create that failed started nothing, unless its answer was lost on the way (then it is listed, once).
  t.true(ids.length <= ok.size + failed.length);
  t.true(ok.size > before, 'jobs were created after the kill');
});

test('etcd out of reach past the lease: nodes take no new jobs (UNAVAILABLE), stop their own after --stop-jobs-after, and once etcd is back every node gives each job the same one ending', async (t) => {
  const { nodes, etcd } = await startFleet(t);
  const [n1, n2] = nodes as [FleetNode, FleetNode, FleetNode];
  const jobs = await Promise.all(
    [n1, n2].map(async (node) => (await unary(n1.jobs, 'createJob', { command: 'sleep', args: ['600'], node: node.name, limits: { maxCpuPercent: 1 } })).job!),
  );
  for (const member of etcd.members) member.pause();
  t.teardown(() => {
    for (const member of etcd.members) if (member.paused) member.resume();
  });
  const pausedAt = Date.now();
  const refused = (await unary(n1.jobs, 'createJob', { command: 'true' }).catch((err: ServiceError) => err)) as ServiceError;
  t.is(refused.code, Status.UNAVAILABLE);
  t.regex(refused.details, /^etcd did not answer/);
  // --node-lost-after 2s, --stop-jobs-after 3s: the jobs are stopped by their own nodes.
  await waitUntil(() => jobs.every((job) => !alive(job.pid)), 'the nodes to stop their jobs', 30_000);
  t.log(`jobs stopped ${Date.now() - pausedAt} ms after etcd went away`);
  for (const member of etcd.members) member.resume();
  for (const job of jobs) {
    const seen = await Promise.all(
      nodes.map(async (node) => (await waitForFleet(() => unary(node.jobs, 'getJob', { id: job.id }), ({ job: j }) => j!.status !== JobStatus.JOB_STATUS_RUNNING, `job ${job.id} ended on ${node.name}`, 30_000)).value.job!),
    );
    t.true([JobStatus.JOB_STATUS_STOPPED, JobStatus.JOB_STATUS_FAILED].includes(seen[0]!.status), seen[0]!.message);
    for (const other of seen) t.deepEqual([other.status, other.message, other.endedAt], [seen[0]!.status, seen[0]!.message, seen[0]!.endedAt]);
  }
  await waitForFleet(() => nodesOf(n1), ({ nodes: now }) => now.every((n) => n.state === NodeState.NODE_STATE_READY), 'every node ready again', 30_000);
});

test('a job that ends on a node cut off from etcd (the rest of the fleet is not): no node tells of that ending, which the fleet did not keep; every node and a waiter (while n3 is still cut off) give the one it kept', async (t) => {
  // n3 talks to e3 only; n1 and n2 to e1 and e2, which keep a quorum while e3 is paused.
  const { nodes, etcd } = await startFleet(t, { etcdEndpoints: (i, all) => (i === 2 ? [all[2]!] : all.slice(0, 2)) });
  const [n1, n2, n3] = nodes as [FleetNode, FleetNode, FleetNode];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-cut-off-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const gate = path.join(dir, 'gate');
  execFileSync('mkfifo', [gate]);
  const job = (await unary(n1.jobs, 'createJob', { command: 'sh', args: ['-c', `read line < ${gate}`], node: 'n3', limits: { maxCpuPercent: 1 } })).job!;
  t.is(job.status, JobStatus.JOB_STATUS_RUNNING);
  const e3 = etcd.members[2]!;
  e3.pause();
  t.teardown(() => {
    if (e3.paused) e3.resume();
  });
  // A waiter through n1, forwarded to n3 while n3 is not yet lost.
  const waited = unary(n1.jobs, 'waitJob', { id: job.id });
  // The job ends (exit 0) on n3, which cannot write that to etcd.
  fs.writeFileSync(gate, 'go\n');
  // Until the fleet ends it, n1 and n2 answer RUNNING (n3's own answer until then would be COMPLETED).
  const told: Array<[JobStatus, string]> = [];
  const ended = await waitForFleet(
    async () => {
      const answers = await Promise.all([n1, n2].map(async (node) => (await unary(node.jobs, 'getJob', { id: job.id })).job!));
      for (const answer of answers) if (answer.status !== JobStatus.JOB_STATUS_RUNNING) told.push([answer.status, answer.message]);
      return answers;
    },
    (answers) => answers.every((answer) => answer.status !== JobStatus.JOB_STATUS_RUNNING),
    'n1 and n2 to end the job',
    30_000,
  );
  const kept = ended.value[0]!;
  t.is(kept.status, JobStatus.JOB_STATUS_FAILED);
  t.is(kept.message, 'node n3 was lost (no heartbeat within 2s): the job was ended as lost; its output stays on that node');
  for (const answer of told) t.deepEqual(answer, [kept.status, kept.message]);
  // The waiter does not wait for n3 to reach etcd again: n3 could not say, so n1 read the fleet's record.
  const { job: waitedFor } = await waited;
  t.deepEqual([waitedFor!.status, waitedFor!.message, waitedFor!.endedAt], [kept.status, kept.message, kept.endedAt]);
  e3.resume();
  // n3 answers again, as the fleet kept it.
  const own = (await waitForFleet(() => unary(n3.jobs, 'getJob', { id: job.id }), ({ job: j }) => j!.status !== JobStatus.JOB_STATUS_RUNNING, 'n3 to answer', 30_000)).value.job!;
  t.deepEqual([own.status, own.message, own.endedAt], [kept.status, kept.message, kept.endedAt]);
});
