// What the fleet does when a node dies or freezes: its unfinished jobs end
// as lost within the loss time, everywhere; the survivors answer
// throughout; a stream relayed from it ends UNAVAILABLE after the bytes it
// had; and when the node comes back it agrees with the fleet, killing what
// the fleet has ended.
import net from 'node:net';
import test from 'ava';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { JobStatus, NodeState, OutputStream, type DataChunk } from '../../src/gen/jobworker/v1/jobworker.js';
import { GetJobsStreamReq } from '../../src/gen/jobworker/v1/jobworker.js';
import { alive, waitUntil } from '../helpers/host.js';
import { collectStream, listAll, unary } from '../helpers/server.js';
import { nodesOf, startFleet, waitForFleet, type FleetNode } from '../helpers/fleet.js';

/** --node-lost-after in FLEET_TIMERS, and a generous margin for a loaded machine. */
const LOST_AFTER_MS = 2_000;
const MARGIN_MS = 8_000;

test('SIGKILL of a node: its jobs end FAILED as lost on every node in time, a relayed follow ends UNAVAILABLE naming it after its bytes, survivors answer, its restart agrees', async (t) => {
  const { nodes } = await startFleet(t);
  const [n1, n2, n3] = nodes as [FleetNode, FleetNode, FleetNode];
  const { job } = await unary(n1.jobs, 'createJob', { command: 'sh', args: ['-c', 'echo started; exec sleep 600'], node: 'n2' });
  const { job: other } = await unary(n1.jobs, 'createJob', { command: 'sleep', args: ['600'], node: 'n3' });
  t.teardown(() => unary(n3.jobs, 'stopJob', { id: other!.id, graceMs: 0 }).catch(() => undefined));

  // A follower through n3 of the job on n2: it has the first line before n2 dies.
  const chunks: DataChunk[] = [];
  const follow = n3.jobs.getJobsStream(GetJobsStreamReq.fromPartial({ id: job!.id, follow: true }));
  const ended = new Promise<ServiceError>((resolve, reject) => {
    follow.on('data', (chunk: DataChunk) => chunks.push(chunk));
    follow.on('error', resolve);
    follow.on('end', () => reject(new Error('the relayed follow ended as if the job had ended')));
  });
  await waitUntil(() => chunks.length > 0, 'the first output through n3');

  n2.daemon.process.kill('SIGKILL');
  await n2.daemon.process;
  const killedAt = Date.now();
  const failure = await ended;
  t.is(failure.code, Status.UNAVAILABLE);
  t.regex(failure.details, /^node n2 \(127\.0\.0\.1:\d+\) is unavailable: /);
  t.deepEqual(Buffer.concat(chunks.filter((c) => c.stream === OutputStream.OUTPUT_STREAM_STDOUT).map((c) => c.data)).toString(), 'started\n');

  const { value: lost, ms } = await waitForFleet(() => unary(n1.jobs, 'getJob', { id: job!.id }), ({ job: seen }) => seen!.status === JobStatus.JOB_STATUS_FAILED, 'the job to be ended as lost');
  t.log(`ended as lost ${Date.now() - killedAt} ms after the SIGKILL (--node-lost-after 2s), seen ${ms} ms into polling`);
  t.true(Date.now() - killedAt < LOST_AFTER_MS + MARGIN_MS);
  t.regex(lost.job!.message, /^node n2 was lost \(no heartbeat within 2s\): the job was ended as lost; its output stays on that node$/);
  t.is(lost.job!.node, 'n2');
  // The same on every survivor, and the survivors' own jobs are untouched.
  const { job: onN3 } = await unary(n3.jobs, 'getJob', { id: job!.id });
  t.deepEqual(onN3, lost.job);
  const { job: still } = await unary(n1.jobs, 'getJob', { id: other!.id });
  t.is(still!.status, JobStatus.JOB_STATUS_RUNNING);
  const { nodes: listed } = await nodesOf(n1);
  t.is(listed.find((n) => n.name === 'n2')!.state, NodeState.NODE_STATE_LOST);
  // Nothing can be placed there; stopping its job answers with the fleet's record.
  const refused = (await unary(n1.jobs, 'createJob', { command: 'true', node: 'n2' }).catch((err: ServiceError) => err)) as ServiceError;
  t.is(refused.code, Status.RESOURCE_EXHAUSTED);
  t.regex(refused.details, /n2: lost/);
  const { job: stopped } = await unary(n3.jobs, 'stopJob', { id: job!.id });
  t.is(stopped!.status, JobStatus.JOB_STATUS_FAILED);

  // Back: its restart kills what ran in its cgroups and it agrees with the fleet.
  t.true(alive(job!.pid), 'the job outlived its node, as jobs of a SIGKILLed jobworkerd do');
  await n2.restart();
  t.false(alive(job!.pid));
  await waitForFleet(() => nodesOf(n1), ({ nodes: now }) => now.find((n) => n.name === 'n2')?.state === NodeState.NODE_STATE_READY, 'n2 ready again');
  const { job: afterRestart } = await unary(n2.jobs, 'getJob', { id: job!.id });
  t.deepEqual(afterRestart, lost.job);
  t.deepEqual((await listAll(n2.jobs, { node: 'n2' })).map((j) => [j.id, j.status]), [[job!.id, JobStatus.JOB_STATUS_FAILED]]);
});

test('SIGSTOP of a node past its lease: its jobs end as lost; when it runs again it finds its lease gone, stops those jobs and registers again', async (t) => {
  const { nodes } = await startFleet(t);
  const [n1, n2] = nodes as [FleetNode, FleetNode, FleetNode];
  const { job } = await unary(n1.jobs, 'createJob', { command: 'sleep', args: ['600'], node: 'n2' });
  n2.daemon.process.kill('SIGSTOP');
  t.teardown(() => n2.daemon.process.kill('SIGCONT'));
  const { value: lost } = await waitForFleet(() => unary(n1.jobs, 'getJob', { id: job!.id }), ({ job: seen }) => seen!.status === JobStatus.JOB_STATUS_FAILED, 'the job to be ended as lost');
  t.regex(lost.job!.message, /^node n2 was lost/);
  t.true(alive(job!.pid), 'a frozen node cannot stop its jobs');
  n2.daemon.process.kill('SIGCONT');
  await waitUntil(() => !alive(job!.pid), 'n2 to stop the job the fleet ended', 15_000);
  await waitForFleet(() => nodesOf(n1), ({ nodes: now }) => now.find((n) => n.name === 'n2')?.state === NodeState.NODE_STATE_READY, 'n2 ready again');
  // The fleet's record stands.
  const { job: after } = await unary(n2.jobs, 'getJob', { id: job!.id });
  t.deepEqual(after, lost.job);
  const { job: placed } = await unary(n1.jobs, 'createJob', { command: 'true', node: 'n2' });
  t.is(placed!.node, 'n2');
});

test('SIGTERM of a node: its jobs end STOPPED in the fleet, it is draining while it stops them, then leaves the list', async (t) => {
  const { nodes } = await startFleet(t, { nodes: 2, args: () => ['--stop-grace', '3000'] });
  const [n1, n2] = nodes as [FleetNode, FleetNode];
  // A job that takes its time to stop: the node drains meanwhile.
  const { job } = await unary(n1.jobs, 'createJob', { command: 'sh', args: ['-c', 'trap "sleep 2; exit 0" TERM; while :; do sleep 0.1; done'], node: 'n2' });
  n2.daemon.process.kill('SIGTERM');
  await waitForFleet(() => nodesOf(n1), ({ nodes: now }) => now.find((n) => n.name === 'n2')?.state === NodeState.NODE_STATE_DRAINING, 'n2 draining while it stops');
  const refused = (await unary(n1.jobs, 'createJob', { command: 'true', node: 'n2' }).catch((err: ServiceError) => err)) as ServiceError;
  t.regex(refused.details, /n2: draining/);
  const exit = await n2.daemon.process;
  t.is(exit.exitCode, 0);
  const { job: ended } = await unary(n1.jobs, 'getJob', { id: job!.id });
  t.is(ended!.status, JobStatus.JOB_STATUS_STOPPED);
  t.is(ended!.exitCode, 0);
  t.deepEqual((await nodesOf(n1)).nodes.map((n) => n.name), ['n1']);
});

test('a node restarted at another address (its port taken while it was down): it registers there, and the fleet places and forwards to it', async (t) => {
  const { nodes } = await startFleet(t, { nodes: 2 });
  const [n1, n2] = nodes as [FleetNode, FleetNode];
  const oldPort = n2.port;
  n2.daemon.process.kill('SIGKILL');
  await n2.daemon.process.catch(() => undefined);
  // Someone else takes its port meanwhile.
  const squatter = net.createServer();
  await new Promise<void>((resolve) => squatter.listen(oldPort, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
  await n2.restart();
  t.not(n2.port, oldPort);
  await waitForFleet(() => nodesOf(n1), ({ nodes: now }) => now.find((n) => n.name === 'n2')?.address === `127.0.0.1:${n2.port}`, 'n2 registered at its new address');
  const { job } = await unary(n1.jobs, 'createJob', { command: 'sh', args: ['-c', 'echo from-n2'], node: 'n2' });
  t.is(job!.node, 'n2');
  const { stdout } = await collectStream(n1.jobs, { id: job!.id, follow: true });
  t.is(stdout.toString(), 'from-n2\n');
});
