// Schedules through a real server (ScheduleService, the client library):
// each firing creates an ordinary job, labelled and named after its
// schedule; the concurrency policy; pause, resume, delete; bad input refused
// naming the field, nothing recorded; a real cron slot firing once; after
// downtime, catch-up once or none, and a firing a crash caught half-done,
// each recorded with its reason and no slot fired twice.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import test from 'ava';
import { CatchUpPolicy, ConcurrencyPolicy, FiringOutcome, JobStatus, ServerError, type JobworkerClient, type Schedule } from 'jobworker/client';
import { clientOf, outputOf, refusal } from '../helpers/client-lib.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let client: JobworkerClient;
let dataDir: string;

const connectTo = clientOf;

test.before(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-schedules-'));
  server = await startTestServer(undefined, { dataDir });
  client = connectTo(server);
});

test.after.always(async () => {
  client?.close();
  await server?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

// Each test's schedules go, and what they left running stops.
test.afterEach.always(async () => {
  for (const schedule of await client.schedules()) await client.deleteSchedule(schedule.id);
  for (const job of await client.list({ status: JobStatus.JOB_STATUS_RUNNING })) await client.stop(job.id, { graceMs: 0 });
});

/** A cron expression that will not fire during a test: once a year. */
const YEARLY = '0 0 1 1 *';

/** The schedule once `done` holds for it. */
async function once(id: string, done: (schedule: Schedule) => boolean, what: string, timeoutMs = 20_000): Promise<Schedule> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const schedule = await client.schedule(id);
    if (done(schedule)) return schedule;
    if (Date.now() > deadline) throw new Error(`schedule ${id} never got ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test.serial('a firing creates an ordinary job, labelled schedule=<id> and named after the schedule and the time; get shows the firing and the next time', async (t) => {
  const schedule = await client.createSchedule({ cron: '0 3 * * *', timezone: 'Europe/Berlin', name: 'nightly', job: { command: 'sh', args: ['-c', 'echo "backed up with $TOKEN"'], env: ['TOKEN=s3cret'], labels: { team: 'ops' } } });
  // Its environment is kept, and shown by name alone.
  t.deepEqual(schedule.job!.env, ['TOKEN']);
  t.is(schedule.name, 'nightly');
  t.is(schedule.concurrency, ConcurrencyPolicy.CONCURRENCY_POLICY_ALLOW);
  t.is(schedule.catchUp, CatchUpPolicy.CATCH_UP_POLICY_ONCE);
  t.is(schedule.catchUpWindowMs, 3600_000);
  // 03:00 in Berlin is 01:00 or 02:00 UTC.
  t.true([1, 2].includes(schedule.nextFiringAt!.getUTCHours()), schedule.nextFiringAt!.toISOString());
  t.is(schedule.nextFiringAt!.getUTCMinutes(), 0);
  t.true(schedule.nextFiringAt!.getTime() > Date.now());

  const firing = await client.runSchedule('nightly');
  t.is(firing.outcome, FiringOutcome.FIRING_OUTCOME_STARTED);
  t.true(firing.manual);
  const job = await client.wait(firing.jobId);
  t.is(job.status, JobStatus.JOB_STATUS_COMPLETED);
  t.deepEqual(job.labels, { team: 'ops', schedule: schedule.id });
  t.regex(job.name, /^nightly-\d{8}-\d{6}-\d{3}$/);
  t.is(job.owner, 'admin');
  t.is(await outputOf(client, job.id), 'backed up with s3cret\n');
  t.deepEqual((await client.list({ labels: { schedule: schedule.id } })).map((j) => j.id), [job.id]);
  const after = await client.schedule(schedule.id);
  t.is(after.firings.length, 1);
  t.like(after.firings[0], { outcome: FiringOutcome.FIRING_OUTCOME_STARTED, jobId: job.id, jobStatus: JobStatus.JOB_STATUS_COMPLETED, manual: true, reason: '' });
  t.deepEqual((await client.schedules()).map((s) => s.id), [schedule.id]);
});

test.serial('a real slot fires once, at its minute, as the cron expression says', async (t) => {
  const schedule = await client.createSchedule({ cron: '* * * * *', job: { command: 'true' } });
  const slot = schedule.nextFiringAt!;
  t.is(slot.getUTCSeconds(), 0);
  // STARTING while its job is being created (a slow host shows it): what the test waits for is how it went.
  const fired = await once(schedule.id, (s) => s.firings.length > 0 && s.firings.at(-1)!.outcome !== FiringOutcome.FIRING_OUTCOME_STARTING, 'a firing', 90_000);
  const firing = fired.firings.at(-1);
  t.is(firing!.outcome, FiringOutcome.FIRING_OUTCOME_STARTED);
  t.is(firing!.slot!.getTime(), slot.getTime());
  t.false(firing!.manual);
  const job = await client.get(firing!.jobId);
  t.is(job.name, `schedule-${schedule.id.slice(0, 8)}-${slot.toISOString().slice(0, 10).replaceAll('-', '')}-${slot.toISOString().slice(11, 19).replaceAll(':', '')}`);
  // Once: every later firing is for a later slot.
  t.is(fired.firings.filter((f) => f.slot!.getTime() === slot.getTime()).length, 1);
  t.true(fired.nextFiringAt!.getTime() > slot.getTime());
  t.is(fired.nextFiringAt!.getUTCSeconds(), 0);
});

test.serial('concurrency: forbid skips a firing while the earlier job runs, saying so; replace stops it first', async (t) => {
  const forbid = await client.createSchedule({ cron: YEARLY, name: 'single', concurrency: ConcurrencyPolicy.CONCURRENCY_POLICY_FORBID, job: { command: 'sleep', args: ['600'] } });
  const first = await client.runSchedule(forbid.id);
  t.is(first.outcome, FiringOutcome.FIRING_OUTCOME_STARTED);
  const second = await client.runSchedule(forbid.id);
  t.is(second.outcome, FiringOutcome.FIRING_OUTCOME_SKIPPED);
  t.is(second.jobId, '');
  t.is(second.reason, `the job of an earlier firing, ${first.jobId}, has not ended (concurrency forbid)`);
  t.is((await client.list({ labels: { schedule: forbid.id } })).length, 1);
  // However many firings it skips (only the last 20 are kept), the job that runs still counts.
  for (let i = 0; i < 21; i += 1) t.is((await client.runSchedule(forbid.id)).outcome, FiringOutcome.FIRING_OUTCOME_SKIPPED);
  t.is((await client.list({ labels: { schedule: forbid.id } })).length, 1);
  t.is((await client.schedule(forbid.id)).firings.length, 20);

  const replace = await client.createSchedule({ cron: YEARLY, concurrency: ConcurrencyPolicy.CONCURRENCY_POLICY_REPLACE, job: { command: 'sleep', args: ['600'] } });
  const old = await client.runSchedule(replace.id);
  const fresh = await client.runSchedule(replace.id);
  t.is(fresh.outcome, FiringOutcome.FIRING_OUTCOME_STARTED);
  t.is((await client.get(old.jobId)).status, JobStatus.JOB_STATUS_STOPPED);
  t.is((await client.get(fresh.jobId)).status, JobStatus.JOB_STATUS_RUNNING);
  const view = await client.schedule(replace.id);
  t.deepEqual(view.firings.map((f) => [f.jobId, f.jobStatus]), [
    [fresh.jobId, JobStatus.JOB_STATUS_RUNNING],
    [old.jobId, JobStatus.JOB_STATUS_STOPPED],
  ]);
});

test.serial('a firing whose job cannot be created is recorded FAILED with the reason', async (t) => {
  const schedule = await client.createSchedule({ cron: YEARLY, job: { command: '/no/such/command' } });
  const firing = await client.runSchedule(schedule.id);
  t.is(firing.outcome, FiringOutcome.FIRING_OUTCOME_FAILED);
  t.is(firing.jobId, '');
  t.regex(firing.reason, /^exec "\/no\/such\/command": No such file or directory/);
  t.is((await client.schedule(schedule.id)).firings[0]!.reason, firing.reason);
});

test.serial('pause, resume and delete; the jobs a deleted schedule created stay', async (t) => {
  const schedule = await client.createSchedule({ cron: '*/5 * * * *', name: 'pausable', job: { command: 'true' } });
  const paused = await client.pauseSchedule('pausable');
  t.true(paused.paused);
  t.is(paused.nextFiringAt, undefined);
  const job = (await client.runSchedule('pausable')).jobId;
  const resumed = await client.resumeSchedule(schedule.id);
  t.false(resumed.paused);
  t.is(resumed.nextFiringAt!.getUTCMinutes() % 5, 0);
  const deleted = await client.deleteSchedule('pausable');
  t.is(deleted.id, schedule.id);
  const gone = await refusal(client.schedule(schedule.id));
  t.is(gone.code, 'SCHEDULE_NOT_FOUND');
  t.is(gone.message, `schedule "${schedule.id}" not found`);
  t.is((await client.get(job)).id, job);
});

test.serial('bad schedules are refused naming the field, and nothing is recorded; a viewer reads but may not write', async (t) => {
  await client.createSchedule({ cron: YEARLY, name: 'taken', job: { command: 'true' } });
  const cases: [Parameters<JobworkerClient['createSchedule']>[0], ServerError['code'], string | RegExp][] = [
    [{ cron: '61 * * * *', job: { command: 'true' } }, 'INVALID_ARGUMENT', 'cron "61 * * * *": Invalid value for minute: 61'],
    [{ cron: '* * * * * *', job: { command: 'true' } }, 'INVALID_ARGUMENT', 'cron "* * * * * *": expected five fields (minute hour day-of-month month day-of-week), got 6'],
    [{ cron: '0 0 31 2 *', job: { command: 'true' } }, 'INVALID_ARGUMENT', 'cron "0 0 31 2 *" never fires (no date matches it)'],
    [{ cron: '@sometimes', job: { command: 'true' } }, 'INVALID_ARGUMENT', /^cron "@sometimes": unknown nickname/],
    [{ cron: YEARLY, timezone: 'Mars/Base', job: { command: 'true' } }, 'INVALID_ARGUMENT', 'timezone "Mars/Base" is not an IANA time zone such as Europe/Berlin or UTC'],
    [{ cron: YEARLY, name: 'taken', job: { command: 'true' } }, 'SCHEDULE_NAME_TAKEN', /^schedule name "taken" is taken by schedule [0-9a-f-]{36}$/],
    [{ cron: YEARLY, name: 'bad name', job: { command: 'true' } }, 'INVALID_ARGUMENT', /^name: schedule name "bad name" is not valid/],
    [{ cron: YEARLY, name: 'n'.repeat(44), job: { command: 'true' } }, 'INVALID_ARGUMENT', "name: a schedule's name is at most 43 characters (its jobs' names add the firing time), got 44"],
    [{ cron: YEARLY, job: { command: 'true', labels: { schedule: 'mine' } } }, 'INVALID_ARGUMENT', "job.labels: the schedule label is the server's (schedule=<id> on every job a schedule creates)"],
    [{ cron: YEARLY, job: { command: 'true', name: 'mine' } }, 'INVALID_ARGUMENT', "job.name: a schedule names its jobs (the schedule's name and the firing time)"],
    [{ cron: YEARLY, job: { command: 'true', stdin: true } }, 'INVALID_ARGUMENT', "job.stdin: a scheduled job's stdin is /dev/null"],
    [{ cron: YEARLY, job: { command: 'true', limits: { maxCpuPercent: 100_000 } } }, 'INVALID_LIMITS', /^job: /],
    [{ cron: YEARLY, job: { command: '' } }, 'INVALID_ARGUMENT', /^job: /],
    [{ cron: YEARLY, catchUpWindowMs: 0, job: { command: 'true' } }, 'INVALID_ARGUMENT', 'catch_up_window_ms must be from 1 to 604800000 (a week), got 0'],
  ];
  for (const [spec, code, message] of cases) {
    const err = await refusal(client.createSchedule(spec));
    t.is(err.code, code, String(message));
    if (typeof message === 'string') t.is(err.message, message);
    else t.regex(err.message, message);
  }
  t.is((await client.schedules()).length, 1);
  const viewer = connectTo(server, 'viewer');
  t.teardown(() => viewer.close());
  t.is((await viewer.schedules()).length, 1);
  const denied = await refusal(viewer.runSchedule('taken'));
  t.is(denied.code, 'PERMISSION_DENIED');
  t.is(denied.message, 'permission denied: role "viewer" may not RunSchedule');
});

test.serial('after downtime: catch-up once fires the latest missed slot once and records the rest skipped; none fires nothing; a firing caught half-done by a crash is FAILED; no slot fires twice', async (t) => {
  const once = await client.createSchedule({ cron: '* * * * *', name: 'catch-once', job: { command: 'echo', args: ['caught up'] } });
  const none = await client.createSchedule({ cron: '* * * * *', name: 'catch-none', catchUp: CatchUpPolicy.CATCH_UP_POLICY_NONE, job: { command: 'true' } });
  const crashed = await client.createSchedule({ cron: YEARLY, name: 'crashed', job: { command: 'true' } });
  client.close();
  await server.stop();
  // As if the server had been down for ten minutes, and had died while it started a firing's job.
  const db = new Database(path.join(dataDir, 'schedules.db'));
  const tenMinutesAgo = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000 + 1;
  db.prepare('UPDATE schedules SET last_slot = ? WHERE id IN (?, ?)').run(tenMinutesAgo, once.id, none.id);
  db.prepare("INSERT INTO firings (schedule_id, slot, manual, fired_at, outcome, job_id, reason) VALUES (?, ?, 1, ?, 'STARTING', '123e4567-e89b-12d3-a456-426614174000', '')").run(crashed.id, Date.now(), Date.now());
  db.close();

  // Slots after this are the restarted server's own, fired as usual if a minute turns during the test.
  const restartedAt = Date.now();
  const missed = (f: { slot?: Date }) => f.slot!.getTime() < restartedAt;
  server = await startTestServer(undefined, { dataDir });
  client = connectTo(server);
  const onceView = await once_(once.id, (s) => s.firings.some((f) => f.outcome === FiringOutcome.FIRING_OUTCOME_STARTED));
  const started = onceView.firings.filter((f) => f.outcome === FiringOutcome.FIRING_OUTCOME_STARTED && missed(f));
  const skipped = onceView.firings.filter((f) => f.outcome === FiringOutcome.FIRING_OUTCOME_SKIPPED);
  // Ten slots missed (eleven if a minute turned meanwhile): the latest fires.
  t.is(started.length, 1);
  t.is(skipped.length, 1);
  t.regex(skipped[0]!.reason, /^missed (9|10) earlier firing\(s\) while the server was down; the latest, \S+, fires once \(catch-up once\)$/);
  t.is(started[0]!.slot!.getUTCSeconds(), 0);
  t.true(Date.now() - started[0]!.slot!.getTime() < 120_000);
  t.is(await outputOf(client, (await client.wait(started[0]!.jobId)).id), 'caught up\n');

  const noneView = await client.schedule(none.id);
  t.is(noneView.firings.filter((f) => f.outcome === FiringOutcome.FIRING_OUTCOME_STARTED && missed(f)).length, 0);
  t.regex(noneView.firings.find(missed)!.reason, /^missed (10|11) firing\(s\) while the server was down, the last at \S+ \(catch-up none\)$/);

  const crashedView = await client.schedule(crashed.id);
  t.like(crashedView.firings[0], { outcome: FiringOutcome.FIRING_OUTCOME_FAILED, reason: 'the server stopped while it was starting the job: it never ran' });

  // Another restart: nothing fires again for the slots handled.
  client.close();
  await server.stop();
  server = await startTestServer(undefined, { dataDir });
  client = connectTo(server);
  const again = await client.schedule(once.id);
  const startedAgain = again.firings.filter((f) => f.outcome === FiringOutcome.FIRING_OUTCOME_STARTED && f.slot!.getTime() <= started[0]!.slot!.getTime());
  t.deepEqual(startedAgain.map((f) => f.jobId), [started[0]!.jobId]);
});

/** once(), on the client of the moment (the restart test replaces it). */
const once_ = (id: string, done: (schedule: Schedule) => boolean) => once(id, done, 'its catch-up firing');
