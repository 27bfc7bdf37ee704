// The ScheduleService: schedules kept in a store (schedule-book.ts: this
// host's schedules.db, or a fleet's etcd), each armed with a timer for its
// next slot. A firing claims its slot in the store before it creates
// anything, so a slot fires at most once — in a fleet every node arms the
// timers and one claim wins; and it is never skipped silently: a skip (the
// concurrency policy, missed while the server was down) is recorded with
// its reason. Each firing creates an ordinary job (scheduled-jobs.ts) as its
// owner, under its owner's quota.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { messageOf } from '../../common/error-message.js';
import { settlesWithin } from '../../common/settle-within.js';
import { jobNameProblem } from '../../common/job-refs.js';
import {
  CatchUpPolicy,
  ConcurrencyPolicy,
  FiringOutcome,
  JobStatus,
  type CreateJobReq,
  type CreateScheduleReq,
  type Firing,
  type Schedule,
  type ScheduleRef,
  type Schedules,
} from '../../gen/jobworker/v1/jobworker.js';
import { Errors, JobworkerError, quoted } from '../errors.js';
import { requestBytes } from '../policy/command.js';
import type { Caller } from '../rpc/authz.js';
import { CronSchedule, cronProblem, timezoneProblem } from './cron.js';
import type { CatchUp, ClaimGuard, Concurrency, ScheduleStore, StoredFiring, StoredSchedule } from './schedule-book.js';
import type { ScheduledJobs } from './scheduled-jobs.js';

/** A server keeps at most this many schedules: GetSchedules answers them all in one message. */
export const MAX_SCHEDULES = 100;
/** A schedule's job (command, args, env, workdir, rootfs, user) at most: a hundred of them fit one answer. */
export const MAX_TEMPLATE_BYTES = 16 * 1024;
export const DEFAULT_CATCH_UP_WINDOW_MS = 3600_000;
/** At most this: a week. */
const MAX_CATCH_UP_WINDOW_MS = 7 * 24 * 3600_000;
/**
 * Missed slots counted one by one up to this many after downtime (an
 * every-minute schedule down for a year would be 525,600; croner takes ~60 µs
 * a step in a time zone, and startup must not stall on it).
 */
const MISSED_COUNTED = 100;
/** A schedule's name at most: its jobs' names add a time to it and must fit 63 characters. */
export const MAX_SCHEDULE_NAME = 43;
/**
 * How long a firing under forbid or replace waits for another node's firing
 * of it to start its job (a fleet's: long enough for a dead node's firing to
 * be judged), and how often it looks.
 */
const POLICY_WAIT_MS = 60_000;
const POLICY_RETRY_MS = 200;
/**
 * In a fleet, slots this recent are not "missed" when a node takes a
 * schedule up: its timers, and every other node's, fire them as they come
 * (a catch-up claim could otherwise beat the on-time one).
 */
const FLEET_CATCH_UP_GRACE_MS = 10_000;
/** How long shutdown waits for firings in flight. */
const SETTLE_TIMEOUT_MS = 10_000;
/** setTimeout's longest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;


/** What the ScheduleService RPCs are answered by. */
export interface ScheduleApi {
  createSchedule(caller: Caller, request: CreateScheduleReq): Promise<Schedule>;
  getSchedule(caller: Caller, request: ScheduleRef): Promise<Schedule>;
  getSchedules(caller: Caller): Promise<Schedules>;
  pauseSchedule(caller: Caller, request: ScheduleRef): Promise<Schedule>;
  resumeSchedule(caller: Caller, request: ScheduleRef): Promise<Schedule>;
  deleteSchedule(caller: Caller, request: ScheduleRef): Promise<Schedule>;
  runSchedule(caller: Caller, request: ScheduleRef): Promise<Firing>;
}

export interface SchedulerOptions {
  book: ScheduleStore;
  jobs: ScheduledJobs;
  logger: Logger;
  /**
   * A fleet's: this node's name (written into the firings it claims), and
   * how often the schedules are read again from the shared store (others'
   * creates, pauses and deletes; firings their node left half-done).
   */
  fleet?: { node: string; syncEveryMs: number; policyWaitMs?: number };
}

interface Live {
  stored: StoredSchedule;
  /** The last manual firing's time: two in one millisecond would be one row. */
  lastManual: number;
  cron: CronSchedule;
  /** The next slot; null while paused or when none is left. */
  next: Date | null;
  timer?: NodeJS.Timeout;
  /** The firing in flight: the next waits for it (one firing of a schedule at a time). */
  firing: Promise<unknown>;
}

export class Scheduler implements ScheduleApi {
  readonly #options: SchedulerOptions;
  /** By id, oldest first. */
  readonly #schedules = new Map<string, Live>();
  /** Firings being made here now, by firingKey(). */
  readonly #inFlight = new Set<string>();
  #syncTimer: NodeJS.Timeout | undefined;
  /** The sync in progress, or the last one. */
  #syncs: Promise<void> = Promise.resolve();
  #closing = false;

  constructor(options: SchedulerOptions) {
    this.#options = options;
  }

  /**
   * Takes up the schedules on disk: firings a restart caught half-done are
   * judged from the job history, the slots missed while the server was down
   * handled as each schedule's catch-up policy says, and every schedule armed.
   */
  async start(now = new Date()): Promise<void> {
    for (const live of this.#schedules.values()) {
      const { stored } = live;
      try {
        await this.#judgeHalfDone(live);
        if (!stored.paused) await this.#catchUp(live, now);
        this.#arm(live);
      } catch (err) {
        // One schedule the server cannot take up must not keep the others (or the server) from running.
        this.#options.logger.error({ scheduleId: stored.id, err: messageOf(err) }, 'could not take up a schedule: it does not fire until the server starts again');
      }
    }
    if (this.#schedules.size > 0) this.#options.logger.info({ schedules: this.#schedules.size }, 'schedules taken up');
    if (this.#options.fleet) this.#scheduleSync(this.#options.fleet.syncEveryMs);
  }

  /**
   * Firings a stopped scheduler left STARTING, judged by whether their job
   * exists (ScheduledJobs.madeBy); written only over a firing still
   * STARTING, so a judgement never overwrites how a firing went.
   */
  async #judgeHalfDone(live: Live): Promise<void> {
    for (const firing of await this.#options.book.firings(live.stored.id)) {
      if (firing.outcome !== 'STARTING' || this.#inFlight.has(firingKey(firing))) continue;
      const name = jobName(jobBase(live.stored.id, live.stored.name), firing.manual ? firing.firedAt : firing.slot, firing.manual);
      const made = await this.#options.jobs.madeBy(firing, name);
      if (made === undefined || this.#inFlight.has(firingKey(firing))) continue;
      const who = firing.node === undefined ? 'the server' : `node ${firing.node}`;
      const judged: StoredFiring = made !== null ? { ...firing, outcome: 'STARTED', jobId: made } : { ...firing, outcome: 'FAILED', jobId: null, reason: `${who} stopped while it was starting the job: it never ran` };
      await this.#options.book.record(judged, { ifStarting: true });
    }
  }

  /**
   * Runs `fn` (an API call) after a sync begun now, and before the next: in
   * a fleet, one node's answer follows another's create, pause or delete,
   * and a sync never overtakes this node's own write. A single host's
   * schedules are all here: `fn` runs at once.
   */
  #inSync<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.#options.fleet) return fn();
    const run = this.#syncs.then(async () => {
      try {
        await this.#sync();
      } catch (err) {
        throw new JobworkerError('FLEET_UNAVAILABLE', `cannot read the fleet's schedules: ${messageOf(err)}`);
      }
      try {
        return await fn();
      } catch (err) {
        if (err instanceof JobworkerError) throw err;
        throw new JobworkerError('FLEET_UNAVAILABLE', `etcd did not answer: ${messageOf(err)}`);
      }
    });
    this.#syncs = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * A fleet's: the schedules as the shared store has them now — others'
   * creates, pauses, resumes, slots claimed and deletes taken up, and
   * firings a lost node left STARTING judged — every syncEveryMs, and
   * before every answer.
   */
  async #sync(now = new Date()): Promise<void> {
    const stored = await this.#options.book.all();
    const ids = new Set(stored.map((schedule) => schedule.id));
    for (const [id, live] of this.#schedules) {
      if (ids.has(id)) continue;
      clearTimeout(live.timer);
      this.#schedules.delete(id);
    }
    for (const schedule of stored) {
      let live = this.#schedules.get(schedule.id);
      try {
        if (!live) {
          live = this.#take(schedule);
          if (!live) continue;
          if (!schedule.paused) await this.#catchUp(live, now);
          this.#arm(live);
        } else if (live.stored.paused !== schedule.paused || schedule.lastSlot > live.stored.lastSlot) {
          live.stored = { ...live.stored, paused: schedule.paused, lastSlot: new Date(Math.max(schedule.lastSlot.getTime(), live.stored.lastSlot.getTime())) };
          this.#arm(live);
        }
        if (schedule.halfDone) await this.#judgeHalfDone(live);
      } catch (err) {
        this.#options.logger.warn({ scheduleId: schedule.id, err: messageOf(err) }, 'could not take up a schedule from the fleet; trying again');
      }
    }
  }

  #scheduleSync(everyMs: number): void {
    if (this.#closing) return;
    this.#syncTimer = setTimeout(() => {
      this.#inSync(() => Promise.resolve())
        .catch((err: unknown) => this.#options.logger.warn({ err: messageOf(err) }, "could not read the fleet's schedules; trying again"))
        .finally(() => this.#scheduleSync(everyMs));
    }, everyMs).unref();
  }

  /** A schedule from the store, as this scheduler keeps it; undefined (logged) when this server cannot read its cron expression or zone. */
  #take(stored: StoredSchedule): Live | undefined {
    try {
      const live = liveOf(stored);
      this.#schedules.set(stored.id, live);
      return live;
    } catch (err) {
      this.#options.logger.error({ scheduleId: stored.id, cron: stored.cron, timezone: stored.timezone, err: messageOf(err) }, 'a schedule in the store cannot be read: left out');
      return undefined;
    }
  }

  /**
   * Reads the schedules in the store, before the server serves: the API
   * sees them all from its first call. start() fires them. One whose cron
   * expression or time zone this server no longer takes is logged and left
   * out (it stays in the store).
   */
  async load(): Promise<void> {
    for (const stored of await this.#options.book.all()) this.#take(stored);
  }

  /** Once every firing in flight has finished, or `timeoutMs` has passed (shutdown: before a fleet node leaves). */
  async settled(timeoutMs = SETTLE_TIMEOUT_MS): Promise<void> {
    await settlesWithin(Promise.all([...this.#schedules.values()].map((live) => live.firing)), timeoutMs);
  }

  /** Shutdown: no more firings (one in flight finishes, as any create does). */
  close(): void {
    this.#closing = true;
    clearTimeout(this.#syncTimer);
    for (const live of this.#schedules.values()) clearTimeout(live.timer);
  }

  async createSchedule(caller: Caller, request: CreateScheduleReq): Promise<Schedule> {
    const timezone = request.timezone;
    const zoneProblem = timezoneProblem(timezone);
    if (zoneProblem) throw Errors.invalidArgument(zoneProblem);
    const problem = cronProblem(request.cron, timezone);
    if (problem) throw Errors.invalidArgument(problem);
    const name = request.name === '' ? null : request.name;
    if (name !== null) {
      const nameProblem = jobNameProblem(name);
      if (nameProblem) throw Errors.invalidArgument(`name: ${nameProblem.replace(/^job name/, 'schedule name')}`);
      if (name.length > MAX_SCHEDULE_NAME) throw Errors.invalidArgument(`name: a schedule's name is at most ${MAX_SCHEDULE_NAME} characters (its jobs' names add the firing time), got ${name.length}`);
    }
    const concurrency = concurrencyOf(request.concurrency);
    const catchUp = catchUpOf(request.catchUp);
    const window = request.catchUpWindowMs ?? DEFAULT_CATCH_UP_WINDOW_MS;
    if (window < 1 || window > MAX_CATCH_UP_WINDOW_MS) throw Errors.invalidArgument(`catch_up_window_ms must be from 1 to ${MAX_CATCH_UP_WINDOW_MS} (a week), got ${window}`);
    const id = randomUUID();
    const job = this.#checkJob(request.job, id, name);
    return this.#inSync(async () => {
      if (name !== null) {
        const holder = this.#byName(name);
        if (holder) throw Errors.scheduleNameTaken(name, holder.stored.id);
      }
      if (this.#schedules.size >= MAX_SCHEDULES) throw Errors.tooManySchedules(MAX_SCHEDULES);
      const now = new Date();
      const stored: StoredSchedule = {
        id,
        name,
        cron: request.cron.trim(),
        timezone,
        job,
        concurrency,
        catchUp,
        catchUpWindowMs: window,
        paused: false,
        owner: caller.cn,
        createdAt: now,
        lastSlot: now,
      };
      // Held here before the write, so that a create racing this one on this server sees its name and count.
      const live = liveOf(stored);
      this.#schedules.set(id, live);
      try {
        await this.#write(() => this.#options.book.create(stored));
      } catch (err) {
        this.#schedules.delete(id);
        throw err;
      }
      this.#arm(live);
      this.#options.logger.info({ scheduleId: id, name, cron: stored.cron, timezone, owner: caller.cn }, 'schedule created');
      return this.#view(live);
    });
  }

  getSchedule(_caller: Caller, request: ScheduleRef): Promise<Schedule> {
    return this.#inSync(async () => this.#view(this.#find(request.schedule)));
  }

  getSchedules(): Promise<Schedules> {
    return this.#inSync(async () => ({ schedules: await Promise.all([...this.#schedules.values()].map((live) => this.#view(live))) }));
  }

  pauseSchedule(_caller: Caller, request: ScheduleRef): Promise<Schedule> {
    return this.#inSync(async () => {
      const live = this.#find(request.schedule);
      if (!live.stored.paused) {
        await this.#write(() => this.#options.book.setPaused({ ...live.stored, paused: true }));
        live.stored = { ...live.stored, paused: true };
        this.#arm(live);
      }
      return this.#view(live);
    });
  }

  /** Slots missed while paused are not caught up: it goes on from now. */
  resumeSchedule(_caller: Caller, request: ScheduleRef): Promise<Schedule> {
    return this.#inSync(async () => {
      const live = this.#find(request.schedule);
      if (live.stored.paused) {
        const lastSlot = new Date(Math.max(Date.now(), live.stored.lastSlot.getTime()));
        await this.#write(() => this.#options.book.setPaused({ ...live.stored, paused: false, lastSlot }));
        live.stored = { ...live.stored, paused: false, lastSlot: new Date(Math.max(lastSlot.getTime(), live.stored.lastSlot.getTime())) };
        this.#arm(live);
      }
      return this.#view(live);
    });
  }

  /**
   * Once a firing in flight here has created its job (or failed to):
   * nothing of the schedule happens here after the answer (in a fleet, a
   * firing another node had already claimed still makes its job).
   */
  async deleteSchedule(_caller: Caller, request: ScheduleRef): Promise<Schedule> {
    const { live, view } = await this.#inSync(async () => {
      const live = this.#find(request.schedule);
      const view = await this.#view(live);
      clearTimeout(live.timer);
      // Out of the map first: a firing waiting on its policy gives up, and no new one begins.
      this.#schedules.delete(live.stored.id);
      try {
        await this.#options.book.delete(live.stored.id);
      } catch (err) {
        this.#schedules.set(live.stored.id, live);
        this.#arm(live);
        throw Errors.notRecorded(`cannot record the schedule: ${messageOf(err)}`);
      }
      return { live, view };
    });
    // A firing in flight finishes (its job made, or not) before the answer, outside the sync order: nothing of the schedule happens after it.
    await live.firing;
    this.#options.logger.info({ scheduleId: live.stored.id }, 'schedule deleted');
    return view;
  }

  async runSchedule(_caller: Caller, request: ScheduleRef): Promise<Firing> {
    // The firing itself outside the sync order (#inSync): making a job may take a while, and other calls need not wait for it.
    const fired = await this.#inSync(async () => {
      const live = this.#find(request.schedule);
      if (this.#closing) throw Errors.shuttingDown();
      // After a firing in flight: the concurrency policy sees its job.
      const firing = live.firing.then(() => {
        const now = Math.max(Date.now(), live.lastManual + 1);
        live.lastManual = now;
        return this.#fire(live, new Date(now), true);
      });
      live.firing = firing;
      return { firing };
    });
    const firing = await fired.firing;
    if (!firing) throw Errors.notRecorded('cannot record the firing in the schedules: it did not fire');
    try {
      return await this.#firingView(firing);
    } catch (err) {
      throw new JobworkerError('FLEET_UNAVAILABLE', `the schedule fired (${firing.outcome}), and etcd did not answer for its job: ${messageOf(err)}`);
    }
  }

  /** The schedule's job as CreateJob would check it, with its name and label as a firing gives them: what it keeps. */
  #checkJob(job: CreateJobReq | undefined, id: string, name: string | null): CreateJobReq {
    if (!job) throw Errors.invalidArgument('job is required: the job each firing creates');
    if (job.name !== '') throw Errors.invalidArgument('job.name: a schedule names its jobs (the schedule\'s name and the firing time)');
    if (job.after.length > 0) throw Errors.invalidArgument('job.after: a scheduled job cannot wait for others');
    if (job.stdin) throw Errors.invalidArgument("job.stdin: a scheduled job's stdin is /dev/null");
    if (!this.#options.jobs.placed && (job.node !== '' || Object.keys(job.constraints).length > 0)) throw Errors.notAFleet('job.node and job.constraints place jobs in a fleet');
    if (Object.hasOwn(job.labels, 'schedule')) throw Errors.invalidArgument('job.labels: the schedule label is the server\'s (schedule=<id> on every job a schedule creates)');
    const bytes = requestBytes(job);
    if (bytes > MAX_TEMPLATE_BYTES) throw Errors.invalidArgument(`job: a schedule's command, args, env, workdir, rootfs and user must be at most ${MAX_TEMPLATE_BYTES} bytes together, got ${bytes}`);
    try {
      this.#options.jobs.check(this.#request(job, id, name, new Date()));
    } catch (err) {
      if (err instanceof JobworkerError) throw new JobworkerError(err.code, `job: ${err.message}`);
      throw err;
    }
    return job;
  }

  /** What a firing at `time` asks CreateJob for. */
  #request(job: CreateJobReq, id: string, name: string | null, time: Date, manual = false): CreateJobReq {
    return { ...job, name: jobName(jobBase(id, name), time, manual), labels: { ...job.labels, schedule: id } };
  }

  /**
   * The slots missed while the server was down (or its timers were: a
   * suspended host, a stalled loop, a clock stepped forward): with catch-up
   * once, the latest fires if it is within the window; every other is
   * recorded skipped, in one entry (at the first missed slot).
   */
  async #catchUp(live: Live, at: Date): Promise<void> {
    const { stored } = live;
    const now = this.#options.fleet ? new Date(at.getTime() - FLEET_CATCH_UP_GRACE_MS) : at;
    const first = live.cron.after(stored.lastSlot);
    if (first === null || first > now) return;
    let latest = first;
    let missed = 1;
    for (let slot = live.cron.after(first); slot !== null && slot <= now; slot = live.cron.after(slot)) {
      latest = slot;
      missed += 1;
      if (missed >= MISSED_COUNTED) {
        latest = lastSlotUpTo(live.cron, slot, now);
        break;
      }
    }
    const many = missed >= MISSED_COUNTED;
    const fires = stored.catchUp === 'once' && now.getTime() - latest.getTime() <= stored.catchUpWindowMs;
    const skipped = fires ? missed - 1 : missed;
    if (skipped > 0 || many) {
      const count = many ? `at least ${MISSED_COUNTED - (fires ? 1 : 0)}` : String(skipped);
      const why =
        stored.catchUp === 'none'
          ? `missed ${count} firing(s) while the server was down, the last at ${latest.toISOString()} (catch-up none)`
          : fires
            ? `missed ${count} earlier firing(s) while the server was down; the latest, ${latest.toISOString()}, fires once (catch-up once)`
            : `missed ${count} firing(s) while the server was down, the last at ${latest.toISOString()}, older than the catch-up window (${stored.catchUpWindowMs / 1000} s)`;
      // Under the first missed slot, or the latest when that one does not fire (a slot claimed once).
      await this.#claim(live, { scheduleId: stored.id, slot: fires ? first : latest, firedAt: now, outcome: 'SKIPPED', jobId: null, reason: why, manual: false, node: this.#options.fleet?.node });
    }
    // The latest is what the timer fires next (#arm), at once, as any slot: moved to just before it here alone (in the store the claim moves it).
    if (fires) live.stored = { ...live.stored, lastSlot: new Date(latest.getTime() - 1) };
  }

  /** Sets the timer for the schedule's next slot (none while paused). */
  #arm(live: Live): void {
    clearTimeout(live.timer);
    live.timer = undefined;
    live.next = live.stored.paused ? null : live.cron.after(live.stored.lastSlot);
    if (live.next === null || this.#closing) return;
    const slot = live.next;
    const wait = (): void => {
      const left = slot.getTime() - Date.now();
      if (left > MAX_TIMER_MS) {
        live.timer = setTimeout(wait, MAX_TIMER_MS).unref();
        return;
      }
      live.timer = setTimeout(() => {
        live.timer = undefined;
        const now = new Date();
        const after = live.cron.after(slot);
        // Late past the next slot too (a suspended host, a stalled loop, a clock stepped forward): as after downtime, not a burst.
        if (after !== null && after <= now) {
          live.firing = live.firing.then(() => this.#catchUp(live, now)).catch((err: unknown) => {
            this.#options.logger.error({ scheduleId: live.stored.id, err: messageOf(err) }, 'could not catch up missed firings');
          });
          void live.firing.then(() => {
            if (this.#schedules.get(live.stored.id) === live) this.#arm(live);
          });
          return;
        }
        // After the firing before it, if that is still creating its job.
        live.firing = live.firing.then(() => this.#fire(live, slot, false));
        void live.firing.then(() => {
          if (this.#schedules.get(live.stored.id) === live && live.next === slot) this.#arm(live);
        });
      }, Math.max(0, left)).unref();
    };
    wait();
  }

  /**
   * One firing: the slot claimed on disk first (false: it was handled
   * already, nothing happens), then the concurrency policy, then the job.
   * Resolves with the firing as recorded.
   */
  async #fire(live: Live, slot: Date, manual: boolean): Promise<StoredFiring | undefined> {
    try {
      return await this.#fireOnce(live, slot, manual);
    } catch (err) {
      // Never a rejected chain (live.firing) nor a crash: logged; the slot is passed over.
      this.#options.logger.error({ scheduleId: live.stored.id, slot, err: messageOf(err) }, 'a firing failed before it could be recorded');
      if (!manual && slot > live.stored.lastSlot) live.stored = { ...live.stored, lastSlot: slot };
      return undefined;
    }
  }

  async #fireOnce(live: Live, slot: Date, manual: boolean): Promise<StoredFiring | undefined> {
    const { stored } = live;
    if (this.#closing || this.#schedules.get(stored.id) !== live) return undefined;
    const firedAt = new Date();
    const base = { scheduleId: stored.id, slot, firedAt, manual, node: this.#options.fleet?.node };
    if (!manual && stored.paused) {
      // Due before the pause, fired after it (behind a firing in flight): skipped, saying so.
      const paused: StoredFiring = { ...base, outcome: 'SKIPPED', jobId: null, reason: 'the schedule was paused when its turn came' };
      return (await this.#claim(live, paused)) === true ? paused : undefined;
    }
    const starting: StoredFiring = { ...base, outcome: 'STARTING', jobId: this.#options.jobs.newId(), reason: '' };
    const key = firingKey(starting);
    // In flight from before the claim: a sync running meanwhile must not judge it half-done.
    this.#inFlight.add(key);
    try {
      let previous: string | null = null;
      // Under forbid or replace the policy is decided from the schedule's newest job, and the claim
      // holds only while that is still so (in a fleet, another node may be firing it too).
      const waitMs = this.#options.fleet?.policyWaitMs ?? POLICY_WAIT_MS;
      for (const until = performance.now() + waitMs; ; ) {
        // Deleted, or the server stopping, while this firing waited: it does not fire.
        if (this.#closing || this.#schedules.get(stored.id) !== live) return undefined;
        const running = stored.concurrency === 'allow' ? null : await this.#options.jobs.running(stored);
        previous = running?.id ?? null;
        if (previous && stored.concurrency === 'forbid') {
          const skipped: StoredFiring = { ...base, outcome: 'SKIPPED', jobId: null, reason: `the job of an earlier firing, ${previous}, has not ended (concurrency forbid)` };
          return (await this.#claim(live, skipped)) === true ? skipped : undefined;
        }
        const claimed = await this.#claim(live, starting, running ? { newestJob: running.newestJob } : undefined);
        if (claimed === false) return undefined;
        if (claimed === true) break;
        if (claimed.busy && stored.concurrency === 'forbid') {
          const skipped: StoredFiring = { ...base, outcome: 'SKIPPED', jobId: null, reason: `${claimed.retry} (concurrency forbid)` };
          return (await this.#claim(live, skipped)) === true ? skipped : undefined;
        }
        if (performance.now() > until) {
          const failed: StoredFiring = { ...base, outcome: 'FAILED', jobId: null, reason: `for ${waitMs / 1000} s: ${claimed.retry} (concurrency ${stored.concurrency})` };
          return (await this.#claim(live, failed)) === true ? failed : undefined;
        }
        await sleep(POLICY_RETRY_MS);
      }
      const owner: Caller = { cn: stored.owner, role: 'admin' };
      let done: StoredFiring;
      try {
        if (previous && stored.concurrency === 'replace') await this.#options.jobs.stop(owner, previous);
        const jobId = await this.#options.jobs.create(owner, this.#request(stored.job, stored.id, stored.name, manual ? firedAt : slot, manual), starting.jobId!);
        done = { ...starting, outcome: 'STARTED', jobId };
      } catch (err) {
        if (err instanceof JobworkerError && err.code === 'START_UNKNOWN') {
          // The job may run: left STARTING, to be judged from the jobs once the fleet can say (its name).
          this.#options.logger.warn({ scheduleId: stored.id, slot, err: messageOf(err) }, 'a schedule fired, and the fleet cannot say yet whether its job started');
          return starting;
        }
        done = { ...starting, outcome: 'FAILED', jobId: null, reason: messageOf(err) };
        this.#options.logger.warn({ scheduleId: stored.id, slot, err: messageOf(err) }, 'a schedule fired, and its job could not be created');
      }
      try {
        await this.#options.book.record(done);
      } catch (err) {
        // Judged again from the jobs (at the next start; in a fleet, at the next sync).
        this.#options.logger.error({ scheduleId: stored.id, slot, err: messageOf(err) }, 'could not record how a firing went');
      }
      return done;
    } finally {
      this.#inFlight.delete(key);
    }
  }

  /**
   * Records a firing claiming its slot (and moves the schedule past it);
   * false when it was handled already or the store refused; a retry (its
   * reason) when the guard did not hold.
   */
  async #claim(live: Live, firing: StoredFiring, guard?: ClaimGuard): Promise<boolean | { retry: string; busy: boolean }> {
    try {
      const claimed = await this.#options.book.claim(firing, guard);
      if (typeof claimed === 'object') return claimed;
      if (!claimed) {
        // Handled already (the disk says so): this side moves past it too, or the timer would come back to it.
        if (!firing.manual && firing.slot > live.stored.lastSlot) live.stored = { ...live.stored, lastSlot: firing.slot };
        return false;
      }
    } catch (err) {
      // Not recorded, so not fired: the slot is passed over (in memory), or the timer would fire it again at once.
      this.#options.logger.error({ scheduleId: firing.scheduleId, slot: firing.slot, err: messageOf(err) }, 'could not record a firing: it does not fire');
      if (!firing.manual && firing.slot > live.stored.lastSlot) live.stored = { ...live.stored, lastSlot: firing.slot };
      return false;
    }
    if (!firing.manual && firing.slot > live.stored.lastSlot) live.stored = { ...live.stored, lastSlot: firing.slot };
    return true;
  }

  #find(ref: string): Live {
    const live = this.#schedules.get(ref) ?? this.#byName(ref);
    if (!live) throw Errors.scheduleNotFound(ref.slice(0, 100));
    return live;
  }

  #byName(name: string): Live | undefined {
    for (const live of this.#schedules.values()) if (live.stored.name === name) return live;
    return undefined;
  }

  /** A write to the store: NOT_RECORDED (nothing changed) when it refuses it; the store's own refusals (a shared store's name or count) as they are. */
  async #write(write: () => void | Promise<void>): Promise<void> {
    try {
      await write();
    } catch (err) {
      if (err instanceof JobworkerError) throw err;
      throw Errors.notRecorded(`cannot record the schedule: ${messageOf(err)}`);
    }
  }

  async #view(live: Live): Promise<Schedule> {
    const { stored } = live;
    return {
      id: stored.id,
      name: stored.name ?? '',
      cron: stored.cron,
      timezone: stored.timezone,
      // Its environment's names only: values may be secrets, and a viewer reads schedules (a job's environment is never shown either).
      job: { ...stored.job, env: stored.job.env.map((entry) => entry.slice(0, Math.max(0, entry.indexOf('=')))) },
      concurrency: CONCURRENCY[stored.concurrency],
      catchUp: stored.catchUp === 'none' ? CatchUpPolicy.CATCH_UP_POLICY_NONE : CatchUpPolicy.CATCH_UP_POLICY_ONCE,
      catchUpWindowMs: stored.catchUpWindowMs,
      paused: stored.paused,
      owner: stored.owner,
      createdAt: stored.createdAt,
      // From the last slot claimed, not the timer's: a firing in flight has already moved past its slot.
      nextFiringAt: stored.paused ? undefined : (live.cron.after(stored.lastSlot) ?? undefined),
      firings: await Promise.all((await this.#options.book.firings(stored.id)).map((firing) => this.#firingView(firing))),
    };
  }

  async #firingView(firing: StoredFiring): Promise<Firing> {
    return {
      slot: firing.slot,
      firedAt: firing.firedAt,
      outcome: OUTCOME[firing.outcome],
      jobId: firing.jobId ?? '',
      jobStatus: firing.jobId === null ? JobStatus.JOB_STATUS_UNSPECIFIED : await this.#options.jobs.status(firing.jobId),
      reason: firing.reason,
      manual: firing.manual,
    };
  }
}

const CONCURRENCY: Record<Concurrency, ConcurrencyPolicy> = {
  allow: ConcurrencyPolicy.CONCURRENCY_POLICY_ALLOW,
  forbid: ConcurrencyPolicy.CONCURRENCY_POLICY_FORBID,
  replace: ConcurrencyPolicy.CONCURRENCY_POLICY_REPLACE,
};

const OUTCOME: Record<StoredFiring['outcome'], FiringOutcome> = {
  STARTING: FiringOutcome.FIRING_OUTCOME_STARTING,
  STARTED: FiringOutcome.FIRING_OUTCOME_STARTED,
  SKIPPED: FiringOutcome.FIRING_OUTCOME_SKIPPED,
  FAILED: FiringOutcome.FIRING_OUTCOME_FAILED,
};

/** A schedule as this scheduler keeps it: nothing armed, nothing in flight. */
function liveOf(stored: StoredSchedule): Live {
  return { stored, lastManual: 0, cron: new CronSchedule(stored.cron, stored.timezone), next: null, firing: Promise.resolve() };
}

/** What a schedule's jobs are named after: its name, or the start of its id. */
function jobBase(id: string, name: string | null): string {
  return name ?? `schedule-${id.slice(0, 8)}`;
}

/** A firing's identity: its schedule, slot and kind (a manual one claims no slot). */
function firingKey(firing: StoredFiring): string {
  return `${firing.scheduleId}/${firing.slot.getTime()}/${firing.manual ? 'manual' : 'slot'}`;
}

function concurrencyOf(policy: ConcurrencyPolicy): Concurrency {
  if (policy === ConcurrencyPolicy.CONCURRENCY_POLICY_UNSPECIFIED || policy === ConcurrencyPolicy.CONCURRENCY_POLICY_ALLOW) return 'allow';
  if (policy === ConcurrencyPolicy.CONCURRENCY_POLICY_FORBID) return 'forbid';
  if (policy === ConcurrencyPolicy.CONCURRENCY_POLICY_REPLACE) return 'replace';
  throw Errors.invalidArgument(`concurrency must be ALLOW, FORBID or REPLACE, got ${quoted(String(policy))}`);
}

function catchUpOf(policy: CatchUpPolicy): CatchUp {
  if (policy === CatchUpPolicy.CATCH_UP_POLICY_UNSPECIFIED || policy === CatchUpPolicy.CATCH_UP_POLICY_ONCE) return 'once';
  if (policy === CatchUpPolicy.CATCH_UP_POLICY_NONE) return 'none';
  throw Errors.invalidArgument(`catch_up must be ONCE or NONE, got ${quoted(String(policy))}`);
}

/**
 * `<base>-YYYYMMDD-HHMMSS` (the slot, UTC), or for a manual firing
 * `<base>-YYYYMMDD-HHMMSS-mmm` (two in one second must not share a name): a
 * job name, at most 63 characters (a base from a schedule's name is at most
 * MAX_SCHEDULE_NAME).
 */
export function jobName(base: string, time: Date, manual = false): string {
  const iso = time.toISOString();
  const stamp = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
  return `${base.slice(0, MAX_SCHEDULE_NAME)}-${stamp}${manual ? `-${iso.slice(20, 23)}` : ''}`;
}

/** The last slot at or before `now`, from `from` on (which is at or before it), stepping by halves of the gap. */
function lastSlotUpTo(cron: CronSchedule, from: Date, now: Date): Date {
  let last = from;
  let low = from.getTime();
  let high = now.getTime();
  // The slot after a time t is <= now for every t below the last slot: search t.
  while (high - low > 1000) {
    const mid = Math.floor((low + high) / 2);
    const next = cron.after(new Date(mid));
    if (next !== null && next <= now) {
      last = next;
      low = next.getTime();
    } else high = mid;
  }
  return last;
}
