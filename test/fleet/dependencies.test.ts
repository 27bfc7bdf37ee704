// Jobs that wait for others across the fleet (CreateJobReq.after): accepted
// through any node, WAITING on no node while the jobs they wait for run on
// others; placed and started once those have ended as asked (followed from
// before their start, waited for, on the node asked), ended FAILED without
// running when one did not, stopped through another node, and taken over
// by another node when the one that kept them dies. Dependencies end when
// the test writes to their stdin: no timing.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type JobworkerClient } from 'jobworker/client';
import { execa } from 'execa';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { DependencyCondition, JobStatus, type Job } from '../../src/gen/jobworker/v1/jobworker.js';
import { jobctlPath } from '../helpers/paths.js';
import { collectStream, unary, type PartialRequestOf } from '../helpers/server.js';
import { PREFIX, startFleet, waitForFleet, type FleetNode } from '../helpers/fleet.js';

/** A job that runs until the test writes a line to it, then exits with `code`. */
const gate = (node: string, code = 0) => ({ command: 'sh', args: ['-c', `read line; echo "got $line"; exit ${code}`], stdin: true, node });

function clientOf(node: FleetNode): JobworkerClient {
  return connect({ server: `127.0.0.1:${node.port}`, ca: `${node.dir}/ca-cert.pem`, cert: `${node.dir}/client-admin-cert.pem`, key: `${node.dir}/client-admin-key.pem` });
}

/** Lets a gate() job end (one that exits as it reads may end before its bytes are counted as taken: its end is what counts). */
async function open(client: JobworkerClient, id: string): Promise<void> {
  await client.writeInput(id, Buffer.from('go\n')).catch((err: unknown) => {
    if (!(err instanceof Error && 'code' in err && err.code === 'INPUT_REFUSED' && err.message.endsWith('then the job ended'))) throw err;
  });
}

const waitJob = (node: FleetNode, id: string): Promise<Job> => unary(node.jobs, 'waitJob', { id }).then((res) => res.job!);

test('a job waits for jobs of other nodes: accepted through one node, WAITING on none, started on the node asked once its dependency completed, followed and waited for from before; a failed dependency ends it without running; a stop through another node ends it; a dead keeper is replaced', async (t) => {
  const { etcd, nodes } = await startFleet(t);
  const [n1, n2, n3] = nodes as [FleetNode, FleetNode, FleetNode];
  const clients = nodes.map(clientOf);
  t.teardown(() => clients.forEach((client) => client.close()));
  const [c1, c2] = clients as [JobworkerClient, JobworkerClient, JobworkerClient];
  const waitingKeys = async () => (await etcd.root.getAll().prefix(`${PREFIX}waiting/`).keys()).sort();
  // Whatever a failed assertion leaves: stopped through a node that is still up (n2 is killed below).
  const made: string[] = [];
  t.teardown(() => Promise.all(made.map((id) => unary(n1.jobs, 'stopJob', { id, graceMs: 0 }).catch(() => unary(n3.jobs, 'stopJob', { id, graceMs: 0 })).catch(() => undefined))));
  const create = async (via: FleetNode, request: PartialRequestOf<'createJob'>): Promise<Job> => {
    const job = (await unary(via.jobs, 'createJob', request)).job!;
    made.push(job.id);
    return job;
  };

  // The dependency runs on n1; the dependent is created through n2, to run on n3.
  const build = await create(n1, { ...gate('n1'), name: 'build' });
  t.is(build.status, JobStatus.JOB_STATUS_RUNNING);
  const deploy = await create(n2, { command: 'sh', args: ['-c', 'echo deployed'], after: [{ job: 'build', condition: DependencyCondition.DEPENDENCY_CONDITION_UNSPECIFIED }], node: 'n3', name: 'deploy' });
  t.is(deploy.status, JobStatus.JOB_STATUS_WAITING);
  t.is(deploy.node, '', 'a waiting job is on no node');
  t.is(deploy.message, `waiting for job ${build.id}`);
  t.deepEqual(deploy.after, [{ job: build.id, condition: DependencyCondition.DEPENDENCY_CONDITION_OK }]);
  t.is(deploy.pid, 0);
  t.is(deploy.startedAt, undefined);
  t.deepEqual(await waitingKeys(), [`${PREFIX}waiting/n2/${deploy.id}`], 'kept by the node that accepted it');
  // Every node has it, as the fleet keeps it.
  for (const node of nodes) {
    const { job } = await unary(node.jobs, 'getJob', { id: 'deploy' });
    t.is(job!.status, JobStatus.JOB_STATUS_WAITING, `through ${node.name}`);
    t.is(job!.id, deploy.id);
  }
  t.deepEqual(
    (await unary(n3.jobs, 'getJobs', { status: JobStatus.JOB_STATUS_WAITING })).jobs.map((job) => job.id),
    [deploy.id],
  );
  // Its name is held from its acceptance, across the fleet.
  const taken = (await unary(n3.jobs, 'createJob', { command: 'true', name: 'deploy' }).catch((err: ServiceError) => err)) as ServiceError;
  t.is(taken.code, Status.ALREADY_EXISTS);
  // Followed, and waited for, from before its start, through nodes that are not its own.
  const followed = collectStream(n1.jobs, { id: deploy.id, follow: true });
  const waited = waitJob(n1, deploy.id);
  // A dependency that does not exist: NOT_FOUND naming it, nothing recorded.
  const missing = (await unary(n2.jobs, 'createJob', { command: 'true', after: [{ job: 'nope', condition: 0 }] }).catch((err: ServiceError) => err)) as ServiceError;
  t.is(missing.code, Status.NOT_FOUND);
  t.regex(missing.details, /^after\[0\]: .*nope/);

  // A second dependent of build, through n3, stopped through n1 while it waits.
  const doomed = await create(n3, { command: 'echo', args: ['never'], after: [{ job: build.id, condition: DependencyCondition.DEPENDENCY_CONDITION_ANY }] });
  const stopped = (await unary(n1.jobs, 'stopJob', { id: doomed.id, graceMs: 0 })).job!;
  t.is(stopped.status, JobStatus.JOB_STATUS_STOPPED);
  t.is(stopped.message, 'stopped while waiting: it never ran');
  t.is((await unary(n2.jobs, 'getJob', { id: doomed.id })).job!.status, JobStatus.JOB_STATUS_STOPPED);
  // Its keeper lets its entry go at its next pass.
  await waitForFleet(waitingKeys, (keys) => !keys.some((key) => key.endsWith(doomed.id)), 'the stopped job to leave waiting/');

  // A dependency that fails (exit 3) ends its :ok dependent FAILED without running; an :any one runs.
  const failing = await create(n3, gate('n3', 3));
  const unmet = await create(n1, { command: 'echo', args: ['never'], after: [{ job: failing.id, condition: DependencyCondition.DEPENDENCY_CONDITION_OK }] });
  const anyway = await create(n1, { command: 'echo', args: ['anyway'], after: [{ job: failing.id, condition: DependencyCondition.DEPENDENCY_CONDITION_ANY }] });
  await open(clients[2]!, failing.id);
  const failed = await waitJob(n2, unmet.id);
  t.is(failed.status, JobStatus.JOB_STATUS_FAILED);
  t.true(failed.message.startsWith(`not run: dependency ${failing.id} ended FAILED`), failed.message);
  t.is(failed.pid, 0);
  t.is(failed.startedAt, undefined);
  const ran = await waitJob(n3, anyway.id);
  t.is(ran.status, JobStatus.JOB_STATUS_COMPLETED);
  t.is((await collectStream(n2.jobs, { id: anyway.id })).stdout.toString(), 'anyway\n');

  // build completes (its stdin written through n2): deploy starts on n3, once.
  await open(c2, build.id);
  const done = await waited;
  const built = (await unary(n3.jobs, 'getJob', { id: build.id })).job!;
  t.log(`deploy (on n3) started ${done.startedAt!.getTime() - built.endedAt!.getTime()} ms after build (on n1) ended; heartbeat 200 ms`);
  t.is(done.status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(done.node, 'n3');
  t.is(done.exitCode, 0);
  t.deepEqual(done.after, [{ job: build.id, condition: DependencyCondition.DEPENDENCY_CONDITION_OK }]);
  t.true(done.createdAt!.getTime() < done.startedAt!.getTime(), 'created when accepted, started when its dependency ended');
  t.is((await followed).stdout.toString(), 'deployed\n', 'the follower got its output from the first byte');
  t.is((await collectStream(n2.jobs, { id: 'deploy' })).stdout.toString(), 'deployed\n');
  t.deepEqual(await waitingKeys(), []);

  // jobctl create --after through one node, jobctl wait through another.
  const jobctl = (node: FleetNode, args: string[]) =>
    execa('node', [jobctlPath, ...args], {
      env: { JOBWORKER_SERVER: `127.0.0.1:${node.port}`, JOBWORKER_CA: `${node.dir}/ca-cert.pem`, JOBWORKER_CERT: `${node.dir}/client-admin-cert.pem`, JOBWORKER_KEY: `${node.dir}/client-admin-key.pem` },
      reject: false,
      timeout: 60_000,
    });
  const test2 = await create(n1, gate('n1'));
  const created = await jobctl(n3, ['create', '--after', `${test2.id}:ok`, '--', 'echo', 'tested']);
  t.is(created.exitCode, 0, created.stderr);
  const tested = created.stdout.trim();
  made.push(tested);
  const shown = await jobctl(n2, ['get', '--json', tested]);
  t.is((JSON.parse(shown.stdout) as { status: string }).status, 'WAITING');
  const jobctlWait = jobctl(n2, ['wait', tested]);
  await open(c1, test2.id);
  const waitedOut = await jobctlWait;
  t.is(waitedOut.exitCode, 0, waitedOut.stderr);
  t.is((await collectStream(n1.jobs, { id: tested })).stdout.toString(), 'tested\n');

  // The node that keeps a waiting job dies: another takes it over, and it runs once, elsewhere.
  const held = await create(n1, gate('n1'));
  const orphan = await create(n2, { command: 'echo', args: ['orphan ran'], after: [{ job: held.id, condition: 0 }] });
  t.deepEqual(await waitingKeys(), [`${PREFIX}waiting/n2/${orphan.id}`]);
  n2.daemon.process.kill('SIGKILL');
  await n2.daemon.process;
  const { value: moved } = await waitForFleet(waitingKeys, (keys) => keys.length === 1 && !keys[0]!.includes('/waiting/n2/'), 'another node to take the waiting job over');
  t.regex(moved[0]!, new RegExp(`/waiting/n[13]/${orphan.id}$`));
  await open(c1, held.id);
  const orphanDone = await waitJob(n3, orphan.id);
  t.is(orphanDone.status, JobStatus.JOB_STATUS_COMPLETED);
  t.not(orphanDone.node, 'n2');
  t.is((await collectStream(n1.jobs, { id: orphan.id })).stdout.toString(), 'orphan ran\n', 'started once');
  t.deepEqual(await waitingKeys(), []);
});

test("a waiting job in a fleet under a quota: refused at creation when it could never start or no node could ever take it; when its dependency ends with the owner's quota full it waits on, saying so, and starts once a job ends anywhere", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-fleet-after-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const quotaFile = path.join(dir, 'quotas.conf');
  fs.writeFileSync(quotaFile, 'cn=admin running=2 memory=2048\n');
  const { nodes } = await startFleet(t, { args: (i) => ['--quota-file', quotaFile, '--node-label', `zone=z${i + 1}`] });
  const [n1, n2, n3] = nodes as [FleetNode, FleetNode, FleetNode];
  const clients = nodes.map(clientOf);
  t.teardown(() => clients.forEach((client) => client.close()));
  const made: string[] = [];
  t.teardown(() => Promise.all(made.map((id) => unary(n1.jobs, 'stopJob', { id, graceMs: 0 }).catch(() => undefined))));
  const create = async (via: FleetNode, request: PartialRequestOf<'createJob'>): Promise<Job> => {
    const job = (await unary(via.jobs, 'createJob', request)).job!;
    made.push(job.id);
    return job;
  };
  const refused = (via: FleetNode, request: PartialRequestOf<'createJob'>) => unary(via.jobs, 'createJob', request).then(
    () => {
      throw new Error('created, not refused');
    },
    (err: ServiceError) => err,
  );

  const first = await create(n1, gate('n1'));
  const listed = (await unary(n1.jobs, 'getJobs', {})).jobs.length;
  // Past the owner's memory quota on its own: it could never start.
  const tooBig = await refused(n2, { command: 'true', limits: { maxMemoryMb: 4096, maxCpuPercent: 0, maxIoBps: 0, maxPids: 0 }, after: [{ job: first.id, condition: 0 }] });
  t.is(tooBig.code, Status.RESOURCE_EXHAUSTED);
  t.regex(tooBig.details, /^quota exceeded: memory .*limit 2048/);
  // A constraint no node has: it would wait for ever.
  const nowhere = await refused(n3, { command: 'true', constraints: { zone: 'z9' }, after: [{ job: first.id, condition: 0 }] });
  t.is(nowhere.code, Status.RESOURCE_EXHAUSTED);
  t.is(nowhere.details, 'no node could ever take the job, so it would wait for ever: n1: label zone=z1, not z9; n2: label zone=z2, not z9; n3: label zone=z3, not z9');
  t.is((await unary(n1.jobs, 'getJobs', {})).jobs.length, listed, 'nothing recorded');

  // Two jobs run (the quota's two); two more wait for the first, which frees one place as it ends.
  const second = await create(n2, gate('n2'));
  const a = await create(n2, { ...gate('n3'), after: [{ job: first.id, condition: 0 }] });
  const b = await create(n3, { ...gate('n3'), after: [{ job: first.id, condition: 0 }] });
  t.is(a.status, JobStatus.JOB_STATUS_WAITING);
  await open(clients[0]!, first.id);
  // One of them takes the place first gave back; the other waits on, saying why.
  const dependents = async () => Promise.all([a.id, b.id].map(async (id) => (await unary(n1.jobs, 'getJob', { id })).job!));
  const { value: settled } = await waitForFleet(
    dependents,
    (jobs) => jobs.some((job) => job.status === JobStatus.JOB_STATUS_RUNNING) && jobs.some((job) => job.message.includes('waiting for room')),
    'one dependent to run and the other to wait for room',
  );
  const running = settled.find((job) => job.status === JobStatus.JOB_STATUS_RUNNING)!;
  const heldBack = settled.find((job) => job.id !== running.id)!;
  t.is(running.node, 'n3');
  t.is(heldBack.status, JobStatus.JOB_STATUS_WAITING);
  t.is(heldBack.message, `its dependencies have ended; waiting for room in its owner's quota: quota exceeded: running jobs: limit 2, cn=admin has 2 running or starting in the fleet (rule cn=admin at ${quotaFile}:1)`);
  t.is((await unary(n2.jobs, 'getJobs', { status: JobStatus.JOB_STATUS_RUNNING })).jobs.length, 2, 'never more than the quota');
  // The running one ends: the held-back one takes its place.
  await open(clients[2]!, running.id);
  await waitForFleet(async () => (await unary(n3.jobs, 'getJob', { id: heldBack.id })).job!, (job) => job.status === JobStatus.JOB_STATUS_RUNNING, 'the held-back dependent to start');
  await open(clients[2]!, heldBack.id);
  const heldDone = await waitJob(n2, heldBack.id);
  t.is(heldDone.status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(heldDone.node, 'n3');
  t.is((await collectStream(n1.jobs, { id: heldBack.id })).stdout.toString(), 'got go\n');
  await open(clients[1]!, second.id);
});
