// The fleet's store failing under it: kill -9 of the etcd leader while
// clients create jobs through every node. The API resumes within seconds,
// and no job is doubled or lost: every create that answered OK is listed
// once, and nothing is listed that no create asked for.
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
