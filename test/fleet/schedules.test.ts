// Schedules in a fleet: kept in etcd, answered by every node, armed on every
// node, and a slot fires once for the whole fleet. A firing whose node dies
// after claiming it is judged by another node.
import test from 'ava';
import { connect, ConcurrencyPolicy, FiringOutcome, JobStatus, UnavailableError, type JobworkerClient, type Schedule } from 'jobworker/client';
import { execa } from 'execa';
import { refusal } from '../helpers/client-lib.js';
import { jobctlPath } from '../helpers/paths.js';
import { startFleet, type FleetNode } from '../helpers/fleet.js';

function clientOf(t: { teardown(fn: () => void): void }, node: FleetNode): JobworkerClient {
  const client = connect({ server: `127.0.0.1:${node.port}`, ca: `${node.dir}/ca-cert.pem`, cert: `${node.dir}/client-admin-cert.pem`, key: `${node.dir}/client-admin-key.pem` });
  t.teardown(() => client.close());
  return client;
}

/** The schedule, read through `client`, once `done` holds for it. */
async function once(client: JobworkerClient, id: string, done: (schedule: Schedule) => boolean, what: string, timeoutMs = 30_000): Promise<Schedule> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const schedule = await client.schedule(id).catch(() => undefined);
    if (schedule && done(schedule)) return schedule;
    if (Date.now() > deadline) throw new Error(`schedule ${id} never got ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const YEARLY = '0 0 1 1 *';

test('a fleet schedule: created on one node, answered by all; a real slot fires once for the whole fleet; run-now, forbid, pause and delete across nodes; jobctl through any node', async (t) => {
  const { nodes } = await startFleet(t);
  const [c1, c2, c3] = nodes.map((node) => clientOf(t, node)) as [JobworkerClient, JobworkerClient, JobworkerClient];
  t.teardown(async () => {
    for (const job of await c1.list({ status: JobStatus.JOB_STATUS_RUNNING }).catch(() => [])) await c1.stop(job.id, { graceMs: 0 }).catch(() => undefined);
  });

  // Every node answers for it at once, and every node arms its timer.
  const minutely = await c1.createSchedule({ cron: '* * * * *', name: 'tick', job: { command: 'echo', args: ['tock'], node: 'n3' } });
  t.teardown(() => c1.deleteSchedule(minutely.id).catch(() => undefined));
  for (const client of [c2, c3]) t.is((await client.schedule('tick')).id, minutely.id);
  t.deepEqual((await refusal(c2.createSchedule({ cron: YEARLY, name: 'tick', job: { command: 'true' } }))).code, 'SCHEDULE_NAME_TAKEN');

  // The next minute's slot: three timers, one firing, one job, on the node the template names.
  const slot = minutely.nextFiringAt!;
  const fired = await once(c2, minutely.id, (s) => s.firings.some((f) => !f.manual && f.outcome !== FiringOutcome.FIRING_OUTCOME_STARTING), 'its first slot fired', 90_000);
  const ofSlot = fired.firings.filter((f) => !f.manual && f.slot!.getTime() === slot.getTime());
  t.is(ofSlot.length, 1);
  t.is(ofSlot[0]!.outcome, FiringOutcome.FIRING_OUTCOME_STARTED, ofSlot[0]!.reason);
  const jobs = await c3.list({ labels: { schedule: minutely.id } });
  t.is(jobs.length, 1, 'one job for the slot in the whole fleet');
  t.is(jobs[0]!.id, ofSlot[0]!.jobId);
  t.is(jobs[0]!.node, 'n3');
  t.is(jobs[0]!.name, `tick-${slot.toISOString().slice(0, 19).replaceAll('-', '').replaceAll(':', '').replace('T', '-')}`);
  await c1.deleteSchedule('tick');
  for (const client of [c1, c2, c3]) t.is((await refusal(client.schedule('tick'))).code, 'SCHEDULE_NOT_FOUND');

  // forbid across nodes: a run-now through n1 starts a job; through n2 the next is skipped while it runs.
  const single = await c3.createSchedule({ cron: YEARLY, name: 'single', concurrency: ConcurrencyPolicy.CONCURRENCY_POLICY_FORBID, job: { command: 'sleep', args: ['600'] } });
  t.teardown(() => c1.deleteSchedule(single.id).catch(() => undefined));
  const first = await c1.runSchedule('single');
  t.is(first.outcome, FiringOutcome.FIRING_OUTCOME_STARTED, first.reason);
  const second = await c2.runSchedule('single');
  t.is(second.outcome, FiringOutcome.FIRING_OUTCOME_SKIPPED);
  t.is(second.reason, `the job of an earlier firing, ${first.jobId}, has not ended (concurrency forbid)`);
  await c3.stop(first.jobId, { graceMs: 0 });
  const third = await c2.runSchedule('single');
  t.is(third.outcome, FiringOutcome.FIRING_OUTCOME_STARTED, third.reason);
  t.is((await c1.get(third.jobId)).labels.schedule, single.id);
  await c1.stop(third.jobId, { graceMs: 0 });
  // Two nodes firing it at once: one job, the other firing skipped (the claim holds the policy).
  const racing = await Promise.all([c1.runSchedule('single'), c2.runSchedule('single'), c3.runSchedule('single')]);
  t.deepEqual(racing.map((firing) => firing.outcome).sort(), [FiringOutcome.FIRING_OUTCOME_STARTED, FiringOutcome.FIRING_OUTCOME_SKIPPED, FiringOutcome.FIRING_OUTCOME_SKIPPED].sort());
  const winner = racing.find((firing) => firing.outcome === FiringOutcome.FIRING_OUTCOME_STARTED)!;
  t.is((await c3.list({ labels: { schedule: single.id }, status: JobStatus.JOB_STATUS_RUNNING })).length, 1);
  await c1.stop(winner.jobId, { graceMs: 0 });

  // A pause through one node is every node's.
  t.true((await c3.pauseSchedule('single')).paused);
  for (const client of [c1, c2]) t.true((await client.schedule('single')).paused);
  t.false((await c1.resumeSchedule('single')).paused);
  t.is((await c2.schedules()).length, 1);

  // jobctl, through other nodes each time: created on n2 for jobs on n1, fired through n3.
  const jobctl = (node: FleetNode, args: string[]) =>
    execa('node', [jobctlPath, ...args], {
      env: { JOBWORKER_SERVER: `127.0.0.1:${node.port}`, JOBWORKER_CA: `${node.dir}/ca-cert.pem`, JOBWORKER_CERT: `${node.dir}/client-admin-cert.pem`, JOBWORKER_KEY: `${node.dir}/client-admin-key.pem` },
      reject: false,
      timeout: 60_000,
    });
  const [n1, n2, n3] = nodes as [FleetNode, FleetNode, FleetNode];
  const made = await jobctl(n2, ['schedule', 'create', '--cron', YEARLY, '--name', 'cli-made', '--node', 'n1', '--', 'echo', 'from-cli']);
  t.is(made.exitCode, 0, made.stderr);
  t.teardown(() => jobctl(n1, ['schedule', 'delete', 'cli-made']));
  const ran = await jobctl(n3, ['schedule', 'run-now', 'cli-made']);
  t.is(ran.exitCode, 0, ran.stderr);
  const job = JSON.parse((await jobctl(n1, ['get', '--json', ran.stdout.trim()])).stdout) as { node: string; labels: Record<string, string> };
  t.deepEqual([job.node, job.labels.schedule], ['n1', made.stdout.trim()]);
  const listed = JSON.parse((await jobctl(n1, ['schedule', 'list', '--json'])).stdout) as { name: string }[];
  t.deepEqual(listed.map((schedule) => schedule.name).sort(), ['cli-made', 'single']);
  t.is((await jobctl(n3, ['schedule', 'delete', 'cli-made'])).exitCode, 0);
});

test('a firing whose node dies after claiming it is judged by another node: FAILED, naming the node; nothing ran', async (t) => {
  // n2 kills itself right after it claims a firing, before creating its job.
  const { nodes } = await startFleet(t, { env: (i): Record<string, string> => (i === 1 ? { JOBWORKER_FLEET_CRASH_AT: 'schedule-after-claim' } : {}) });
  const [c1, c2] = nodes.map((node) => clientOf(t, node)) as [JobworkerClient, JobworkerClient, JobworkerClient];
  const schedule = await c1.createSchedule({ cron: YEARLY, name: 'orphan', job: { command: 'true' } });
  t.teardown(() => c1.deleteSchedule(schedule.id).catch(() => undefined));
  // The call ends with its node: UNAVAILABLE.
  await t.throwsAsync(c2.runSchedule('orphan'), { instanceOf: UnavailableError });
  const judged = await once(c1, schedule.id, (s) => s.firings.some((f) => f.outcome === FiringOutcome.FIRING_OUTCOME_FAILED), 'the firing judged', 30_000);
  t.is(judged.firings.length, 1);
  t.is(judged.firings[0]!.reason, 'node n2 stopped while it was starting the job: it never ran');
  t.true(judged.firings[0]!.manual);
  t.deepEqual(await c1.list({ labels: { schedule: schedule.id } }), []);
});
