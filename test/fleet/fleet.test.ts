// A fleet of three real nodes on a real etcd cluster: placement, a job
// created on one node, run on another and streamed through a third, byte
// for byte, and the same answers on every node.
import { createCipheriv } from 'node:crypto';
import test from 'ava';
import fs from 'node:fs';
import { Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import { EtcdPermissionDeniedError } from 'etcd3';
import { GetJobsReq, JobStatus, NodeState, type Job } from '../../src/gen/jobworker/v1/jobworker.js';
import { FORWARDED_FOR_METADATA } from '../../src/supervisor/rpc/authz.js';
import { connectEtcd } from '../helpers/etcd-cluster.js';
import { collectStream, listAll, unary } from '../helpers/server.js';
import { PREFIX, nodesOf, startFleet, waitForFleet, type FleetNode } from '../helpers/fleet.js';

/** What `openssl enc -aes-128-ctr` with a zero key and iv makes of `bytes` zeros: random-looking, reproducible. */
function expectedNoise(bytes: number): Buffer {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16), Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(bytes)), cipher.final()]);
}
const NOISE = (mib: number) => `head -c ${mib}M /dev/zero | openssl enc -aes-128-ctr -K 00000000000000000000000000000000 -iv 00000000000000000000000000000000 -nosalt`;

test('three nodes: listed ready everywhere; a job created on n1 for n2 streams from n3 byte-exact to several followers; get, list and stop agree on every node', async (t) => {
  const { nodes } = await startFleet(t);
  const [n1, n2, n3] = nodes as [FleetNode, FleetNode, FleetNode];

  for (const node of nodes) {
    const { nodes: listed } = await nodesOf(node);
    t.deepEqual(listed.map((n) => [n.name, n.state, n.address]), nodes.map((n) => [n.name, NodeState.NODE_STATE_READY, `127.0.0.1:${n.port}`]));
    t.true(listed.every((n) => n.cpuPercent > 0 && n.memoryMb > 0 && n.version !== '' && n.lastHeartbeat !== undefined));
  }

  const { job } = await unary(n1.jobs, 'createJob', { command: 'sh', args: ['-c', `${NOISE(3)}; sleep 600`], node: 'n2' });
  t.is(job!.node, 'n2');
  t.is(job!.status, JobStatus.JOB_STATUS_RUNNING);
  const expected = expectedNoise(3 * 1024 * 1024);
  // Followers through a node that does not run the job, and through its own.
  const followers = [n3, n3, n1, n2].map((node) => collectStream(node.jobs, { id: job!.id, follow: true }));
  for (const node of nodes) {
    const { job: seen } = await unary(node.jobs, 'getJob', { id: job!.id });
    t.is(seen!.node, 'n2');
    t.is(seen!.status, JobStatus.JOB_STATUS_RUNNING);
    const listed = await listAll(node.jobs, {});
    t.deepEqual(listed.map((j) => j.id), [job!.id]);
  }
  // Both nodes audit a forwarded call: the one the client reached, and the job's, which names the forwarder.
  const audited = (node: FleetNode) => node.daemon.log.filter((line) => (line as { rpc?: string }).rpc === 'GetJob' && line.jobId === job!.id) as unknown as { cn: string; via?: string }[];
  t.true(audited(n1).some((line) => line.cn === 'admin' && line.via === undefined));
  t.true(audited(n2).some((line) => line.cn === 'admin' && line.via === 'n1'));
  // The output is all there before the stop (the job sleeps after it).
  const snapshot = await collectStream(n3.jobs, { id: job!.id, follow: false });
  t.true(snapshot.stdout.length <= expected.length);
  const { job: stopped } = await unary(n1.jobs, 'stopJob', { id: job!.id, graceMs: 0 });
  t.is(stopped!.status, JobStatus.JOB_STATUS_STOPPED);
  t.is(stopped!.node, 'n2');
  for (const output of await Promise.all(followers)) t.true(output.stdout.equals(expected), `a follower got ${output.stdout.length} bytes`);
  for (const node of nodes) {
    const { job: seen } = await unary(node.jobs, 'getJob', { id: job!.id });
    t.is(seen!.status, JobStatus.JOB_STATUS_STOPPED);
  }
});

test('placement: --node, constraints and free capacity; RESOURCE_EXHAUSTED naming why each node was refused; drain', async (t) => {
  const { nodes } = await startFleet(t, { args: (i) => ['--node-label', `zone=z${i + 1}`, '--node-label', 'disk=ssd', '--node-cpu', '100'] });
  const [n1, n2] = nodes as [FleetNode, FleetNode, FleetNode];
  const started: Job[] = [];
  t.teardown(() => Promise.all(started.map((job) => unary(n1.jobs, 'stopJob', { id: job.id, graceMs: 0 }).catch(() => undefined))));
  const create = async (extra: object) => {
    const { job } = await unary(n1.jobs, 'createJob', { command: 'sleep', args: ['600'], ...extra });
    started.push(job!);
    return job!;
  };
  t.is((await create({ constraints: { zone: 'z3' }, limits: { maxCpuPercent: 10 } })).node, 'n3');
  t.is((await create({ node: 'n2', limits: { maxCpuPercent: 10 } })).node, 'n2');
  // n2 and n3 have 10% taken: 60% fits only on n1 (the most free).
  t.is((await create({ limits: { maxCpuPercent: 95 } })).node, 'n1');
  const refused = (await unary(n2.jobs, 'createJob', { command: 'true', limits: { maxCpuPercent: 95 } }).catch((err: ServiceError) => err)) as ServiceError;
  t.is(refused.code, Status.RESOURCE_EXHAUSTED);
  t.regex(refused.details, /^no node can take the job: /);
  t.regex(refused.details, /n1: 5% CPU free of 100%, the job needs 95%/);
  t.regex(refused.details, /n2: 90% CPU free of 100%, the job needs 95%/);

  const drained = await new Promise<{ node?: { state: NodeState } }>((resolve, reject) => n1.fleet.drainNode({ name: 'n3' }, (err, res) => (err ? reject(err) : resolve(res))));
  t.is(drained.node!.state, NodeState.NODE_STATE_DRAINING);
  const onDrained = (await unary(n1.jobs, 'createJob', { command: 'true', node: 'n3' }).catch((err: ServiceError) => err)) as ServiceError;
  t.is(onDrained.code, Status.RESOURCE_EXHAUSTED);
  t.regex(onDrained.details, /n3: draining/);
  const constrained = (await unary(n1.jobs, 'createJob', { command: 'true', constraints: { zone: 'nowhere' } }).catch((err: ServiceError) => err)) as ServiceError;
  t.regex(constrained.details, /n1: label zone=z1, not nowhere/);
  // Its running job goes on.
  const { job: still } = await unary(n2.jobs, 'getJob', { id: started[0]!.id });
  t.is(still!.status, JobStatus.JOB_STATUS_RUNNING);
  await new Promise((resolve, reject) => n2.fleet.undrainNode({ name: 'n3' }, (err, res) => (err ? reject(err) : resolve(res))));
  t.is((await create({ node: 'n3', limits: { maxCpuPercent: 10 } })).node, 'n3');
  const missing = (await unary(n1.jobs, 'createJob', { command: 'true', node: 'n9' }).catch((err: ServiceError) => err)) as ServiceError;
  t.is(missing.code, Status.NOT_FOUND);
  t.is(missing.details, 'node n9 is not part of the fleet');
});

test("the fleet's edges: a client posing as a forwarding node is refused, a node cannot write another node's keys in etcd, metrics say their node, paging crosses nodes, pruned jobs leave etcd", async (t) => {
  const { nodes, etcd } = await startFleet(t, { args: (i) => ['--retain-jobs', '2', ...(i === 0 ? ['--metrics-listen', '127.0.0.1:0'] : [])] });
  const [n1, n2, n3] = nodes as [FleetNode, FleetNode, FleetNode];

  // An admin certificate sending the forwarding metadata gets nothing.
  const metadata = new Metadata();
  metadata.set(FORWARDED_FOR_METADATA, Buffer.from(JSON.stringify({ cn: 'root', role: 'admin' })));
  const posing = await new Promise<ServiceError>((resolve) => n1.jobs.getJobs(GetJobsReq.fromPartial({}), metadata, (err) => resolve(err!)));
  t.is(posing.code, Status.UNAUTHENTICATED);
  t.is(posing.details, "only a fleet node's certificate (OU node) may forward calls for another caller");

  // n1's etcd user (its certificate's CN) may write its own keys, not n2's.
  const asN1 = connectEtcd(t, etcd, { certPem: fs.readFileSync(`${n1.dir}/server-cert.pem`, 'utf8'), keyPem: fs.readFileSync(`${n1.dir}/server-key.pem`, 'utf8') });
  await asN1.put(`${PREFIX}nodes/n1/check`).value('ok');
  await t.throwsAsync(asN1.put(`${PREFIX}nodes/n2/alive`).value('{}'), { instanceOf: EtcdPermissionDeniedError });
  t.not(await etcd.root.get(`${PREFIX}nodes/n2/alive`).string(), '{}');

  // Jobs on every node, listed newest first across them, a page at a time, and by node.
  const ids: string[] = [];
  for (const node of ['n1', 'n2', 'n3', 'n1', 'n2', 'n3']) {
    const { job } = await unary(n2.jobs, 'createJob', { command: 'true', node, limits: { maxCpuPercent: 1 } });
    ids.push(job!.id);
  }
  await Promise.all(ids.map((id) => waitForFleet(() => unary(n3.jobs, 'getJob', { id }), ({ job }) => job!.status === JobStatus.JOB_STATUS_COMPLETED, `job ${id} completed`)));
  const first = await unary(n3.jobs, 'getJobs', { pageSize: 4 });
  const second = await unary(n3.jobs, 'getJobs', { pageSize: 4, pageToken: first.nextPageToken });
  t.deepEqual([...first.jobs, ...second.jobs].map((job) => job.id), [...ids].reverse());
  t.is(second.nextPageToken, '');
  t.deepEqual((await listAll(n1.jobs, { node: 'n2' })).map((job) => job.id), [ids[4], ids[1]]);

  // --retain-jobs 2 on each node: a third job ended on n1 prunes its oldest, here and in etcd.
  const { job: third } = await unary(n1.jobs, 'createJob', { command: 'true', node: 'n1', limits: { maxCpuPercent: 1 } });
  await waitForFleet(() => etcd.root.get(`${PREFIX}jobs/${ids[0]}`).string(), (value) => value === null, 'the pruned job to leave etcd');
  t.deepEqual(await etcd.root.getAll().prefix(`${PREFIX}claims/${ids[0]}/`).keys(), []);
  t.deepEqual((await listAll(n2.jobs, { node: 'n1' })).map((job) => job.id), [third!.id, ids[3]]);

  // Metrics carry the node's name.
  const metricsPort = n1.daemon.log.find((line) => line.msg === 'metrics at /metrics')!.port!;
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  t.regex(text, /^jobworker_job_starts_total\{result="started",node="n1"\} \d+$/m);
});
