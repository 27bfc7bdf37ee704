// Jobs that wait for others (CreateJobReq.after, jobctl create --after),
// through a real server: WAITING with no cgroup and no process until every
// dependency has ended; run when each ended as asked, else ended FAILED
// without running, naming the dependency; stopped while waiting; followed
// from before their start; refused precisely when a reference is bad, with
// nothing recorded; taken up again after a restart; held back by a quota.
// Dependencies end when the test writes to their stdin: no timing.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import test from 'ava';
import { DependencyCondition, JobStatus, UnavailableError, type Job, type JobworkerClient, type ServerError } from 'jobworker/client';
import { QuotaRules } from '../../src/supervisor/policy/quotas.js';
import { clientOf, outputOf, refusal } from '../helpers/client-lib.js';
import { groupsUnder } from '../helpers/host.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let client: JobworkerClient;
let dataDir: string;

const connectTo = clientOf;

test.before(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-after-'));
  server = await startTestServer(undefined, { dataDir });
  client = connectTo(server);
});

test.after.always(async () => {
  client?.close();
  await server?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

// What a test leaves running or waiting (a failed assertion) must not hold the next one's quota or names.
test.afterEach.always(async () => {
  for (const status of [JobStatus.JOB_STATUS_WAITING, JobStatus.JOB_STATUS_RUNNING]) {
    for (const job of await client.list({ status })) await client.stop(job.id, { graceMs: 0 });
  }
});

/** A job that runs until the test writes to it, then exits with `code`. */
const gate = (code = 0) => ({ command: 'sh', args: ['-c', `read line; exit ${code}`], stdin: true });
/**
 * Lets a gate() job end. A job that reads its line and exits at once may
 * end before its supervisor has counted the bytes as taken (INPUT_REFUSED,
 * "… then the job ended"): how the job ended is what the tests check.
 */
const open = (id: string) =>
  client.writeInput(id, Buffer.from('go\n')).catch((err: unknown) => {
    if (!(err instanceof Error && 'code' in err && err.code === 'INPUT_REFUSED' && err.message.endsWith('then the job ended'))) throw err;
  });

/** Does any hierarchy hold a cgroup of this job? */
const hasGroup = (id: string): boolean => groupsUnder(server.server.cgroupParent).some((dir) => path.basename(dir) === id);

/** The job once `done` holds for it, read with GetJob. */
async function once(c: JobworkerClient, id: string, done: (job: Job) => boolean, what: string): Promise<Job> {
  let job = await c.get(id);
  const deadline = Date.now() + 20_000;
  while (!done(job)) {
    if (Date.now() > deadline) throw new Error(`job ${id} never got ${what}: ${job.message}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    job = await c.get(id);
  }
  return job;
}

test.serial('a job waits, with no cgroup and no process, until its dependency completes; then it runs, and a follower from before its start gets every byte', async (t) => {
  const first = await client.create({ ...gate(), name: 'first-step' });
  const second = await client.create({ command: 'sh', args: ['-c', 'printf "%s" "$GREETING"; head -c 300000 /dev/zero | tr "\\0" x'], env: ['GREETING=hello '], after: [{ job: 'first-step' }], name: 'second-step', labels: { step: '2' } });
  t.is(second.status, JobStatus.JOB_STATUS_WAITING);
  t.is(second.pid, 0);
  t.is(second.cgroup, '');
  t.is(second.startedAt, undefined);
  t.truthy(second.createdAt);
  t.deepEqual(second.after, [{ job: first.id, condition: DependencyCondition.DEPENDENCY_CONDITION_OK }]);
  t.is(second.message, `waiting for job ${first.id}`);
  t.false(hasGroup(second.id));
  // Its name is held: it has not ended.
  const taken = await refusal(client.create({ command: 'true', name: 'second-step' }));
  t.is(taken.code, 'NAME_TAKEN');
  t.is((await client.list({ status: JobStatus.JOB_STATUS_WAITING })).map((job) => job.id).join(), second.id);

  const followed = outputOf(client, second.id);
  await open(first.id);
  const done = await client.wait(second.id);
  t.is(done.status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(done.exitCode, 0);
  t.true(done.startedAt!.getTime() >= done.createdAt!.getTime());
  t.true(done.startedAt!.getTime() >= (await client.get(first.id)).endedAt!.getTime());
  t.is(await followed, `hello ${'x'.repeat(300_000)}`);
  // Listed where it was created, after its dependency; found by its label.
  const listed = (await client.list({ labels: { step: '2' } })).map((job) => job.id);
  t.deepEqual(listed, [second.id]);
  const newest = (await client.list({ limit: 2 })).map((job) => job.id);
  t.deepEqual(newest, [second.id, first.id]);
});

test.serial('a dependency that fails ends its dependents FAILED without running, down the chain, each naming what it waited for', async (t) => {
  const a = await client.create({ ...gate(3), name: 'build' });
  const b = await client.create({ command: 'echo', args: ['never'], after: [{ job: a.id }] });
  const c = await client.create({ command: 'echo', args: ['never'], after: [{ job: b.id, condition: DependencyCondition.DEPENDENCY_CONDITION_OK }] });
  const cleanup = await client.create({ command: 'echo', args: ['cleaned'], after: [{ job: 'build', condition: DependencyCondition.DEPENDENCY_CONDITION_ANY }] });
  await open(a.id);
  const [bEnd, cEnd, cleanupEnd] = await Promise.all([client.wait(b.id), client.wait(c.id), client.wait(cleanup.id)]);
  t.is(bEnd.status, JobStatus.JOB_STATUS_FAILED);
  t.is(bEnd.message, `not run: dependency ${a.id} (build) ended FAILED: exited with code 3`);
  t.is(bEnd.exitCode, undefined);
  t.is(bEnd.startedAt, undefined);
  t.is(bEnd.outputBytes, 0);
  t.is(cEnd.status, JobStatus.JOB_STATUS_FAILED);
  t.is(cEnd.message, `not run: dependency ${b.id} ended FAILED: not run: dependency ${a.id} (build) ended FAILED: exited with code 3`);
  // :any runs whatever the end.
  t.is(cleanupEnd.status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(await outputOf(client, cleanup.id), 'cleaned\n');
  t.false(hasGroup(b.id));
  t.false(hasGroup(c.id));
});

test.serial('a dependency that has already ended is judged at once: a completed one lets the job run, a failed one ends it', async (t) => {
  const ok = await client.create({ command: 'true' });
  await client.wait(ok.id);
  const bad = await client.create({ command: 'false' });
  await client.wait(bad.id);
  const runs = await client.create({ command: 'echo', args: ['ran'], after: [{ job: ok.id }] });
  const never = await client.create({ command: 'echo', args: ['ran'], after: [{ job: ok.id }, { job: bad.id }] });
  t.is((await client.wait(runs.id)).status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(await outputOf(client, runs.id), 'ran\n');
  const ended = await client.wait(never.id);
  t.is(ended.status, JobStatus.JOB_STATUS_FAILED);
  t.is(ended.message, `not run: dependency ${bad.id} ended FAILED: exited with code 1`);
});

test.serial('stopping a waiting job ends it STOPPED without running; its waiters and followers are released', async (t) => {
  const dependency = await client.create(gate());
  const waiting = await client.create({ command: 'echo', args: ['never'], after: [{ job: dependency.id }], name: 'stop-me' });
  const waited = client.wait(waiting.id);
  const followed = outputOf(client, waiting.id);
  const stopped = await client.stop('stop-me');
  t.is(stopped.status, JobStatus.JOB_STATUS_STOPPED);
  t.is(stopped.message, 'stopped while waiting: it never ran');
  t.is((await waited).status, JobStatus.JOB_STATUS_STOPPED);
  t.is(await followed, '');
  // Its dependency runs on, unaffected; its end starts nothing.
  t.is((await client.get(dependency.id)).status, JobStatus.JOB_STATUS_RUNNING);
  await open(dependency.id);
  await client.wait(dependency.id);
  t.is((await client.get(waiting.id)).status, JobStatus.JOB_STATUS_STOPPED);
});

test.serial('input written to a job that waits is held until it starts, then taken byte-exact', async (t) => {
  const dependency = await client.create(gate());
  const consumer = await client.create({ command: 'sha256sum', stdin: true, after: [{ job: dependency.id }] });
  const data = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
  const written = client.writeInput(consumer.id, data);
  t.is((await client.get(consumer.id)).status, JobStatus.JOB_STATUS_WAITING);
  await open(dependency.id);
  t.is(await written, data.length);
  t.is((await client.wait(consumer.id)).status, JobStatus.JOB_STATUS_COMPLETED);
  const digest = (await import('node:crypto')).createHash('sha256').update(data).digest('hex');
  t.is(await outputOf(client, consumer.id), `${digest}  -\n`);
});

test.serial('a job named in the after of a waiting job is kept past --retain-jobs until it has been judged', async (t) => {
  const small = await startTestServer(t, { retainJobs: 1 });
  const c = connectTo(small);
  t.teardown(() => c.close());
  const done = await c.create({ command: 'true' });
  await c.wait(done.id);
  const gateJob = await c.create(gate());
  const waiting = await c.create({ command: 'echo', args: ['both'], after: [{ job: done.id }, { job: gateJob.id }] });
  // Ended jobs past the one kept: the oldest go, but not the one waited for.
  for (let i = 0; i < 3; i += 1) {
    // Waited for from before its end: once ended it may be pruned at once.
    const filler = await c.create(gate());
    const ended = c.wait(filler.id);
    await c.writeInput(filler.id, Buffer.from('go\n')).catch(() => undefined);
    await ended;
  }
  t.is((await c.list()).length, 3, 'the one kept, the one waited for, and the gate');
  t.is((await c.get(done.id)).status, JobStatus.JOB_STATUS_COMPLETED);
  await c.writeInput(gateJob.id, Buffer.from('go\n')).catch(() => undefined);
  t.is((await c.wait(waiting.id)).status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(await outputOf(c, waiting.id), 'both\n');
});

test.serial('bad references are refused, each saying which, and nothing is recorded', async (t) => {
  const before = (await client.list()).length;
  const running = await client.create(gate());
  const cases: [Parameters<JobworkerClient['create']>[0]['after'], number, ServerError['code'], string][] = [
    [[{ job: '123e4567-e89b-12d3-a456-426614174000' }], Status.NOT_FOUND, 'JOB_NOT_FOUND', 'after[0]: job 123e4567-e89b-12d3-a456-426614174000 not found'],
    [[{ job: running.id }, { job: 'no-such-name' }], Status.NOT_FOUND, 'JOB_NOT_FOUND', 'after[1]: no job is named "no-such-name"'],
    [[{ job: 'not a ref' }], Status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'after[0]: expected a job id (a UUID such as 123e4567-e89b-12d3-a456-426614174000) or a job name, got "not a ref"'],
    [[{ job: running.id }, { job: running.id, condition: DependencyCondition.DEPENDENCY_CONDITION_ANY }], Status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', `after[1]: job ${running.id} is already a dependency`],
    [[{ job: running.id, condition: 7 as DependencyCondition }], Status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'after[0].condition must be OK or ANY, got 7'],
    [Array.from({ length: 33 }, () => ({ job: running.id })), Status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'after takes at most 32 jobs, got 33'],
  ];
  for (const [after, grpcStatus, code, message] of cases) {
    const err = await refusal(client.create({ command: 'true', after }));
    t.is(err.grpcStatus, grpcStatus, message);
    t.is(err.code, code);
    t.is(err.message, message);
  }
  // The request's own checks come first, as for any job.
  const limits = await refusal(client.create({ command: 'true', limits: { maxCpuPercent: 100_000 }, after: [{ job: running.id }] }));
  t.is(limits.code, 'INVALID_LIMITS');
  t.is((await client.list()).length, before + 1);
  t.is((await client.list({ status: JobStatus.JOB_STATUS_WAITING })).length, 0);
  await client.stop(running.id, { graceMs: 0 });
});

test.serial('a dependent held back by its owner\'s quota waits, saying so, and starts once there is room', async (t) => {
  server.server.setQuotas(QuotaRules.parse('cn=admin running=1', 'quotas'));
  t.teardown(() => server.server.setQuotas(QuotaRules.NONE));
  const done = await client.create({ command: 'true' });
  await client.wait(done.id);
  const holder = await client.create(gate());
  const held = await client.create({ command: 'echo', args: ['after quota'], after: [{ job: done.id }] });
  const waiting = await once(client, held.id, (job) => job.message.startsWith('waiting for room'), 'held back by the quota');
  t.is(waiting.status, JobStatus.JOB_STATUS_WAITING);
  t.is(waiting.message, "waiting for room in its owner's quota: quota exceeded: running jobs: limit 1, cn=admin has 1 running or starting (rule cn=admin at quotas:1)");
  t.false(hasGroup(held.id));
  await open(holder.id);
  t.is((await client.wait(held.id)).status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(await outputOf(client, held.id), 'after quota\n');
  // One that could never start under the rule is refused as it is created, nothing recorded.
  server.server.setQuotas(QuotaRules.parse('cn=admin memory=32', 'quotas'));
  const count = (await client.list()).length;
  const never = await refusal(client.create({ command: 'true', limits: { maxMemoryMb: 64 }, after: [{ job: done.id }] }));
  t.is(never.code, 'QUOTA_EXCEEDED');
  t.is(never.message, 'quota exceeded: memory (the --max-memory of running jobs, MiB): limit 32, cn=admin uses 0 and this job asks 64 (rule cn=admin at quotas:1)');
  t.is((await client.list()).length, count);
});

test.serial('waiting jobs are kept across a restart: each is judged by how its dependencies ended and runs with what it was given', async (t) => {
  const dependency = await client.create({ ...gate(), name: 'interrupted' });
  const anyEnd = await client.create({ command: 'sh', args: ['-c', 'echo "$GREETING from $PWD"'], env: ['GREETING=kept'], workdir: '/tmp', after: [{ job: dependency.id, condition: DependencyCondition.DEPENDENCY_CONDITION_ANY }], name: 'after-restart' });
  const okOnly = await client.create({ command: 'echo', args: ['never'], after: [{ job: dependency.id }] });
  const chained = await client.create({ command: 'echo', args: ['chained'], after: [{ job: anyEnd.id }] });
  // Whoever waits for a job that still waits when the server stops is told so, at once (not held for the drain time-out).
  const waiter = connectTo(server);
  t.teardown(() => waiter.close());
  const waited = waiter.wait(chained.id).then(
    () => new Error('answered'),
    (err: unknown) => err as Error,
  );
  await once(waiter, chained.id, () => true, 'read');
  client.close();
  // Shutdown stops the running dependency (STOPPED), and starts nothing: the waiting jobs wait on, and go on from there after the restart.
  await server.stop();
  const shutDown = await waited;
  t.true(shutDown instanceof UnavailableError);
  t.regex(shutDown.message, /the server is shutting down$/);
  server = await startTestServer(undefined, { dataDir });
  client = connectTo(server);
  t.is((await client.get(dependency.id)).status, JobStatus.JOB_STATUS_STOPPED);
  const ran = await client.wait('after-restart');
  t.is(ran.id, anyEnd.id);
  t.is(ran.status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(await outputOf(client, anyEnd.id), 'kept from /tmp\n');
  const notRun = await client.wait(okOnly.id);
  t.is(notRun.status, JobStatus.JOB_STATUS_FAILED);
  t.regex(notRun.message, new RegExp(`^not run: dependency ${dependency.id} \\(interrupted\\) ended STOPPED: stopped`));
  t.is((await client.wait(chained.id)).status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(await outputOf(client, chained.id), 'chained\n');
  t.deepEqual((await client.get(chained.id)).after, [{ job: anyEnd.id, condition: DependencyCondition.DEPENDENCY_CONDITION_OK }]);
});

test.serial('a job still waiting when the server stops waits on after the restart', async (t) => {
  const dependency = await client.create(gate());
  const first = await client.create({ command: 'true', after: [{ job: dependency.id, condition: DependencyCondition.DEPENDENCY_CONDITION_ANY }] });
  client.close();
  await server.stop();
  // running=0 in the new server's file: the dependent's dependency ends at the restart, and it waits on for room.
  server = await startTestServer(undefined, { dataDir, quotas: QuotaRules.parse('cn=admin running=0', 'quotas') });
  client = connectTo(server);
  const held = await once(client, first.id, (job) => job.message.startsWith('waiting for room'), 'held back by the quota');
  t.is(held.status, JobStatus.JOB_STATUS_WAITING);
  server.server.setQuotas(QuotaRules.NONE);
  // No job ends to wake it: the retry does.
  t.is((await client.wait(first.id)).status, JobStatus.JOB_STATUS_COMPLETED);
});
