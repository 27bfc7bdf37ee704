// The claims that decide a job's start and end, against a real etcd: made
// once, read back after a lost answer, never made for a node that has a
// heartbeat again, never bringing back a pruned job.
import { randomUUID } from 'node:crypto';
import test from 'ava';
import { JobStatus, type Job } from '../../src/gen/jobworker/v1/jobworker.js';
import { uuidv7 } from '../../src/fleet/job-id.js';
import { FleetKeys } from '../../src/fleet/keys.js';
import { FleetRecords } from '../../src/fleet/records.js';
import { startEtcdCluster } from '../helpers/etcd-cluster.js';

const job = (id: string, node: string, status = JobStatus.JOB_STATUS_INITIALIZING): Job => ({
  id, command: 'true', args: [], limits: undefined, status, pid: 0, cgroup: '', startedAt: new Date(), createdAt: new Date(), after: [], endedAt: undefined, exitCode: undefined, signal: '',
  oomKilled: false, owner: 'admin', message: '', outputBytes: 0, usage: undefined, outputStart: 0, outputProblem: '', isolation: undefined, workdir: '', node,
  name: '', labels: {}, timeoutMs: 0, stdin: false,
});

test('claims: one start per id (an attempt that won reads as won again), one end, none for a node with a heartbeat, none after pruning', async (t) => {
  const cluster = await startEtcdCluster(t, { members: 1, auth: false });
  const keys = new FleetKeys('/jobworker/');
  const records = new FleetRecords(cluster.root, keys);
  const id = uuidv7();
  const attempt = randomUUID();

  t.deepEqual(await records.claimStart(id, { node: 'x', attempt }, job(id, 'x')), { won: true });
  // The same attempt again (as when the client retried a transaction whose answer was lost): still won.
  t.deepEqual(await records.claimStart(id, { node: 'x', attempt }, job(id, 'x')), { won: true });
  // Anyone else, a cancel too: lost, told who won.
  t.deepEqual(await records.claimStart(id, { node: 'y', attempt: randomUUID() }, job(id, 'y')), { won: false, claim: { node: 'x', attempt } });
  const cancel = await records.cancelStart(id, 'z');
  t.false(cancel.won);
  t.deepEqual(await records.runningOn('x'), [id]);

  // x has a heartbeat: nobody may declare its job lost.
  await cluster.root.put(keys.nodeAlive('x')).value('{}');
  const lost = { ...job(id, 'x', JobStatus.JOB_STATUS_FAILED), message: 'lost' };
  t.deepEqual(await records.claimEnd(lost, { node: 'y', attempt: randomUUID(), lost: true }, 'x'), { won: false, claim: null });
  t.is((await records.job(id))!.status, JobStatus.JOB_STATUS_INITIALIZING);
  // Its heartbeat gone, one declaration wins; the node's own end then loses to it.
  await cluster.root.delete().key(keys.nodeAlive('x'));
  const declared = { node: 'y', attempt: randomUUID(), lost: true as const };
  t.deepEqual(await records.claimEnd(lost, declared, 'x'), { won: true });
  t.deepEqual(await records.claimEnd({ ...lost, message: 'exited' }, { node: 'x', attempt: randomUUID() }), { won: false, claim: declared });
  t.is((await records.job(id))!.message, 'lost');
  t.deepEqual(await records.runningOn('x'), []);

  // Pruned: record and claims go, and a late end claim brings nothing back.
  await records.forget(id, null);
  t.is(await records.job(id), null);
  t.deepEqual(await cluster.root.getAll().prefix(keys.claims(id)).keys(), []);
  t.deepEqual(await records.claimEnd(lost, { node: 'z', attempt: randomUUID(), lost: true }, 'x'), { won: false, claim: null });
  t.is(await records.job(id), null);
});
