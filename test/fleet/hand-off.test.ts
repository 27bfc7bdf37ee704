// The hand-off of a job from the node a client reached to the node that
// runs it, with either of them crashing (SIGKILL) at each step: every step
// leaves exactly one outcome — the job never started and nothing recorded,
// or one job, recorded once, which ends as lost if its node died. And the
// claims themselves: one start per id, none after a cancel.
import { randomUUID } from 'node:crypto';
import test from 'ava';
import { credentials, status as Status, type ServiceError } from '@grpc/grpc-js';
import { withoutIpServerName } from '../../src/client/channel.js';
import { CreateJobReq, JobStatus, NodeServiceClient, WaitingJob, type CreateJobRes, type StartJobReq } from '../../src/gen/jobworker/v1/jobworker.js';
import { uuidv7 } from '../../src/fleet/job-id.js';
import { alive, processesOf, waitUntil } from '../helpers/host.js';
import { listAll, unary } from '../helpers/server.js';
import { PREFIX, startFleet, waitForFleet, type FleetNode } from '../helpers/fleet.js';
import fs from 'node:fs';

const CRASH = 'JOBWORKER_FLEET_CRASH_AT';

/** A command line no other process has, to find the job's processes on the host. */
function uniqueSleep(): { command: string; args: string[]; marker: string } {
  const marker = `${600 + Math.random()}`.slice(0, 12);
  return { command: 'sleep', args: [marker], marker };
}

async function lostEverywhere(nodes: FleetNode[], id: string): Promise<void> {
  for (const node of nodes) {
    await waitForFleet(() => unary(node.jobs, 'getJob', { id }), ({ job }) => job!.status === JobStatus.JOB_STATUS_FAILED, `job ${id} ended on ${node.name}`);
  }
}

test('the entry node dies before calling the chosen node: the client hears UNAVAILABLE, nothing ran, nothing is recorded', async (t) => {
  const { nodes } = await startFleet(t, { nodes: 2, env: (i): Record<string, string> => (i === 0 ? { [CRASH]: 'entry-before-hand-off' } : {}) });
  const [n1, n2] = nodes as [FleetNode, FleetNode];
  const job = uniqueSleep();
  const err = (await unary(n1.jobs, 'createJob', { ...job, node: 'n2' }).catch((e: ServiceError) => e)) as ServiceError;
  t.is(err.code, Status.UNAVAILABLE);
  t.deepEqual(await listAll(n2.jobs, {}), []);
  t.deepEqual(processesOf(job.marker), []);
});

test('the entry node dies after the chosen node answered: the client hears UNAVAILABLE, the job runs once and is listed once', async (t) => {
  const { nodes } = await startFleet(t, { nodes: 2, env: (i): Record<string, string> => (i === 0 ? { [CRASH]: 'entry-after-hand-off' } : {}) });
  const [n1, n2] = nodes as [FleetNode, FleetNode];
  const job = uniqueSleep();
  const err = (await unary(n1.jobs, 'createJob', { ...job, node: 'n2' }).catch((e: ServiceError) => e)) as ServiceError;
  t.is(err.code, Status.UNAVAILABLE);
  const listed = await listAll(n2.jobs, {});
  t.deepEqual(listed.map((j) => [j.node, j.status, j.args]), [['n2', JobStatus.JOB_STATUS_RUNNING, job.args]]);
  t.is(processesOf(job.marker).length, 1);
  await unary(n2.jobs, 'stopJob', { id: listed[0]!.id, graceMs: 0 });
});

test('the chosen node dies after its start claim, before starting: the create answers the claimed job once the fleet has ended it as lost; nothing ever ran', async (t) => {
  const { nodes } = await startFleet(t, { env: (i): Record<string, string> => (i === 1 ? { [CRASH]: 'owner-after-claim' } : {}) });
  const [n1, n2, n3] = nodes as [FleetNode, FleetNode, FleetNode];
  const job = uniqueSleep();
  const { job: created } = await unary(n1.jobs, 'createJob', { ...job, node: 'n2' });
  t.is(created!.node, 'n2');
  // Not answered while its start was unsettled: its node is gone, so it ended as lost.
  t.is(created!.status, JobStatus.JOB_STATUS_FAILED);
  t.regex(created!.message, /^node n2 was lost/);
  await lostEverywhere([n1, n3], created!.id);
  t.deepEqual((await listAll(n3.jobs, {})).map((j) => j.id), [created!.id]);
  t.deepEqual(processesOf(job.marker), []);
  // Back, n2 agrees: the job stays ended, nothing starts.
  await n2.restart();
  const { job: after } = await unary(n2.jobs, 'getJob', { id: created!.id });
  t.is(after!.status, JobStatus.JOB_STATUS_FAILED);
  t.deepEqual(processesOf(job.marker), []);
});

test('the chosen node dies after starting the job, before answering: the create answers the job once ended as lost; the restarted node kills it', async (t) => {
  const { nodes } = await startFleet(t, { env: (i): Record<string, string> => (i === 1 ? { [CRASH]: 'owner-after-start' } : {}) });
  const [n1, n2, n3] = nodes as [FleetNode, FleetNode, FleetNode];
  const job = uniqueSleep();
  const { job: created } = await unary(n1.jobs, 'createJob', { ...job, node: 'n2' });
  t.is(created!.node, 'n2');
  const [pid] = processesOf(job.marker);
  t.truthy(pid, 'the job started once');
  t.is(processesOf(job.marker).length, 1);
  await lostEverywhere([n1, n3], created!.id);
  t.deepEqual((await listAll(n1.jobs, {})).map((j) => j.id), [created!.id]);
  await n2.restart();
  await waitUntil(() => !alive(pid!), 'the restarted node to kill the job');
  const { job: after } = await unary(n2.jobs, 'getJob', { id: created!.id });
  t.regex(after!.message, /^node n2 was lost/);
});

test('start claims: a second StartJob of one id starts nothing (ALREADY_EXISTS), nor one after the entry node cancelled it (ABORTED), nor a waiting job\'s once its keeper rewrote its entry or it was stopped (ABORTED); only node certificates may call StartJob', async (t) => {
  const { nodes, etcd } = await startFleet(t, { nodes: 1 });
  const [n1] = nodes as [FleetNode];
  const nodeCert = (name: string) => ({ cert: fs.readFileSync(`${n1.dir}/server-cert.pem`), key: fs.readFileSync(`${n1.dir}/server-key.pem`), name });
  const asNode = nodeCert('n1');
  const ca = fs.readFileSync(`${n1.dir}/ca-cert.pem`);
  const client = (cert: Buffer, key: Buffer) => new NodeServiceClient(`127.0.0.1:${n1.port}`, withoutIpServerName(credentials.createSsl(ca, key, cert)));
  const node = client(asNode.cert, asNode.key);
  const admin = client(fs.readFileSync(`${n1.dir}/client-admin-cert.pem`), fs.readFileSync(`${n1.dir}/client-admin-key.pem`));
  t.teardown(() => {
    node.close();
    admin.close();
  });
  const start = (on: NodeServiceClient, request: StartJobReq) => new Promise<CreateJobRes>((resolve, reject) => on.startJob(request, (err, res) => (err ? reject(err) : resolve(res))));
  const job = uniqueSleep();
  const request = (id: string): StartJobReq => ({ id, request: CreateJobReq.fromPartial(job), owner: 'someone', ownerRole: 'admin', attempt: randomUUID(), keeper: '', waitingRevision: '', createdAt: undefined });

  const id = uuidv7();
  const { job: started } = await start(node, request(id));
  t.teardown(() => unary(n1.jobs, 'stopJob', { id, graceMs: 0 }).catch(() => undefined));
  t.is(started!.owner, 'someone');
  const again = (await start(node, request(id)).catch((e: ServiceError) => e)) as ServiceError;
  t.is(again.code, Status.ALREADY_EXISTS);
  t.is(again.details, `job ${id} was already started by node n1`);
  t.is(processesOf(job.marker).length, 1);

  const cancelled = uuidv7();
  await etcd.root.put(`${PREFIX}claims/${cancelled}/start`).value(JSON.stringify({ node: 'n9', attempt: randomUUID(), cancelled: true }));
  const late = (await start(node, request(cancelled)).catch((e: ServiceError) => e)) as ServiceError;
  t.is(late.code, Status.ABORTED);
  t.is(late.details, `job ${cancelled}: its start was cancelled by node n9`);
  t.is(processesOf(job.marker).length, 1);

  const byAdmin = (await start(admin, request(uuidv7())).catch((e: ServiceError) => e)) as ServiceError;
  t.is(byAdmin.code, Status.PERMISSION_DENIED);
  t.is(byAdmin.details, 'permission denied: role "admin" may not StartJob');
  t.is(processesOf(job.marker).length, 1);

  // A job that waits (after the one above, which runs on): its start holds only while its keeper's entry is as the keeper read it.
  const waiting = uniqueSleep();
  const tenth = { maxCpuPercent: 10, maxMemoryMb: 0, maxIoBps: 0, maxPids: 0 };
  const { job: accepted } = await unary(n1.jobs, 'createJob', { ...waiting, limits: tenth, after: [{ job: id, condition: 0 }] });
  t.teardown(() => unary(n1.jobs, 'stopJob', { id: accepted!.id, graceMs: 0 }).catch(() => undefined));
  const entryKey = `${PREFIX}waiting/n1/${accepted!.id}`;
  const entry = async () => {
    const kv = (await etcd.root.get(entryKey).exec()).kvs[0]!;
    return { revision: kv.mod_revision, start: WaitingJob.decode(kv.value).start! };
  };
  const kept = await entry();
  const waited = (revision: string): StartJobReq => ({ ...kept.start, attempt: randomUUID(), keeper: 'n1', waitingRevision: revision });
  // The keeper rewrote its entry since (it heard nothing back from a hand-off): a claim with the old revision starts nothing.
  await etcd.root.put(entryKey).value(Buffer.from(WaitingJob.encode({ start: kept.start, met: [] }).finish()));
  const stale = (await start(node, waited(kept.revision)).catch((e: ServiceError) => e)) as ServiceError;
  t.is(stale.code, Status.ABORTED);
  t.is(stale.details, `job ${accepted!.id} no longer waits as node n1 saw it (stopped, or handed on again): not started here`);
  t.is(processesOf(waiting.marker).length, 0);
  t.is((await unary(n1.jobs, 'getJob', { id: accepted!.id })).job!.status, JobStatus.JOB_STATUS_WAITING);
  // With the entry as it is now: started, the entry taken with the claim, its creation time and dependency kept.
  const { job: startedWaited } = await start(node, waited((await entry()).revision));
  t.is(startedWaited!.status, JobStatus.JOB_STATUS_RUNNING);
  t.deepEqual(startedWaited!.createdAt, accepted!.createdAt);
  t.deepEqual(startedWaited!.after, accepted!.after);
  t.is((await etcd.root.get(entryKey).exec()).kvs.length, 0);
  t.is(processesOf(waiting.marker).length, 1);

  // A waiting job stopped: a start with its keeper's revision starts nothing.
  const { job: other } = await unary(n1.jobs, 'createJob', { ...uniqueSleep(), limits: tenth, after: [{ job: id, condition: 0 }] });
  const otherKey = `${PREFIX}waiting/n1/${other!.id}`;
  const otherKv = (await etcd.root.get(otherKey).exec()).kvs[0]!;
  t.is((await unary(n1.jobs, 'stopJob', { id: other!.id })).job!.status, JobStatus.JOB_STATUS_STOPPED);
  const afterStop = (await start(node, { ...WaitingJob.decode(otherKv.value).start!, attempt: randomUUID(), keeper: 'n1', waitingRevision: otherKv.mod_revision }).catch((e: ServiceError) => e)) as ServiceError;
  t.is(afterStop.code, Status.ABORTED);
  t.is((await unary(n1.jobs, 'getJob', { id: other!.id })).job!.status, JobStatus.JOB_STATUS_STOPPED);
});
