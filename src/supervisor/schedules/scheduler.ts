// The ScheduleService of a single host: schedules kept in schedules.db
// (schedule-book.ts), each armed with a timer for its next slot. A firing
// claims its slot on disk before it creates anything, so a slot fires at most
// once; and it is never skipped silently: a skip (the concurrency policy,
// missed while the server was down) is recorded with its reason. Each firing
// creates an ordinary job through the JobService, as its owner, under its
// owner's quota.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { messageOf } from '../../common/error-message.js';
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
import { isLive } from '../jobs/record.js';
import type { JobStore } from '../jobs/store.js';
import type { Caller } from '../rpc/authz.js';
import type { JobService } from '../rpc/job-service.js';
import { STATUS } from '../rpc/job-view.js';
import { CronSchedule, cronProblem, timezoneProblem } from './cron.js';
import type { CatchUp, Concurrency, ScheduleBook, StoredFiring, StoredSchedule } from './schedule-book.js';

/** A server keeps at most this many schedules: GetSchedules answers them all in one message. */
export const MAX_SCHEDULES = 100;
/** A schedule's job (command, args, env, workdir, rootfs, user) at most: a hundred of them fit one answer. */
export const MAX_TEMPLATE_BYTES = 16 * 1024;
export const DEFAULT_CATCH_UP_WINDOW_MS = 3600_000;
/** At most this: a week. */
const MAX_CATCH_UP_WINDOW_MS = 7 * 24 * 3600_000;
/** Missed slots counted one by one up to this many after downtime (an every-minute schedule down for a year would be 525,600). */
const MISSED_COUNTED = 10_000;
/** setTimeout's longest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Where a job name's firing time goes: -YYYYMMDD-HHMMSS. */
const TIME_SUFFIX_LENGTH = 16;

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

/** A fleet's answer for now: one scheduler for many nodes needs the fleet's store. */
export function refusingSchedules(why: string): ScheduleApi {
  const refuse = (): Promise<never> => Promise.reject(new JobworkerError('FLEET_UNSUPPORTED', why));
  return { createSchedule: refuse, getSchedule: refuse, getSchedules: refuse, pauseSchedule: refuse, resumeSchedule: refuse, deleteSchedule: refuse, runSchedule: refuse };
}

export interface SchedulerOptions {
  book: ScheduleBook;
  service: JobService;
  store: JobStore;
  logger: Logger;
}

interface Live {
  stored: StoredSchedule;
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
  #closing = false;

  constructor(options: SchedulerOptions) {
    this.#options = options;
  }

  /**
   * Takes up the schedules on disk: firings a restart caught half-done are
   * judged from the job history, the slots missed while the server was down
   * handled as each schedule's catch-up policy says, and every schedule armed.
   */
  start(now = new Date()): void {
    for (const stored of this.#options.book.all()) {
      for (const firing of this.#options.book.firings(stored.id)) {
        if (firing.outcome !== 'STARTING') continue;
        const ran = firing.jobId !== null && this.#options.store.get(firing.jobId) !== undefined;
        this.#options.book.record({ ...firing, outcome: ran ? 'STARTED' : 'FAILED', reason: ran ? '' : 'the server stopped while it was starting the job: it never ran' });
      }
      const live: Live = { stored, cron: new CronSchedule(stored.cron, stored.timezone), next: null, firing: Promise.resolve() };
      this.#schedules.set(stored.id, live);
      if (!stored.paused) this.#catchUp(live, now);
      this.#arm(live);
    }
    if (this.#schedules.size > 0) this.#options.logger.info({ schedules: this.#schedules.size }, 'schedules taken up');
  }

  /** Shutdown: no more firings (one in flight finishes, as any create does). */
  close(): void {
    this.#closing = true;
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
    }
    const concurrency = concurrencyOf(request.concurrency);
    const catchUp = catchUpOf(request.catchUp);
    const window = request.catchUpWindowMs ?? DEFAULT_CATCH_UP_WINDOW_MS;
    if (window < 1 || window > MAX_CATCH_UP_WINDOW_MS) throw Errors.invalidArgument(`catch_up_window_ms must be from 1 to ${MAX_CATCH_UP_WINDOW_MS} (a week), got ${window}`);
    const id = randomUUID();
    const job = this.#checkJob(request.job, id, name);
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
    this.#write(() => this.#options.book.put(stored));
    const live: Live = { stored, cron: new CronSchedule(stored.cron, timezone), next: null, firing: Promise.resolve() };
    this.#schedules.set(id, live);
    this.#arm(live);
    this.#options.logger.info({ scheduleId: id, name, cron: stored.cron, timezone, owner: caller.cn }, 'schedule created');
    return this.#view(live);
  }

  async getSchedule(_caller: Caller, request: ScheduleRef): Promise<Schedule> {
    return this.#view(this.#find(request.schedule));
  }

  async getSchedules(): Promise<Schedules> {
    return { schedules: [...this.#schedules.values()].map((live) => this.#view(live)) };
  }

  async pauseSchedule(_caller: Caller, request: ScheduleRef): Promise<Schedule> {
    const live = this.#find(request.schedule);
    if (!live.stored.paused) {
      const stored = { ...live.stored, paused: true };
      this.#write(() => this.#options.book.put(stored));
      live.stored = stored;
      this.#arm(live);
    }
    return this.#view(live);
  }

  /** Slots missed while paused are not caught up: it goes on from now. */
  async resumeSchedule(_caller: Caller, request: ScheduleRef): Promise<Schedule> {
    const live = this.#find(request.schedule);
    if (live.stored.paused) {
      const stored = { ...live.stored, paused: false, lastSlot: new Date(Math.max(Date.now(), live.stored.lastSlot.getTime())) };
      this.#write(() => this.#options.book.put(stored));
      live.stored = stored;
      this.#arm(live);
    }
    return this.#view(live);
  }

  async deleteSchedule(_caller: Caller, request: ScheduleRef): Promise<Schedule> {
    const live = this.#find(request.schedule);
    const view = this.#view(live);
    this.#write(() => this.#options.book.delete(live.stored.id));
    clearTimeout(live.timer);
    this.#schedules.delete(live.stored.id);
    this.#options.logger.info({ scheduleId: live.stored.id }, 'schedule deleted');
    return view;
  }

  async runSchedule(_caller: Caller, request: ScheduleRef): Promise<Firing> {
    const live = this.#find(request.schedule);
    if (this.#closing) throw Errors.shuttingDown();
    const firing = await this.#fire(live, new Date(), true);
    if (!firing) throw Errors.notRecorded('cannot record the firing in the schedules: it did not fire');
    return this.#firingView(firing);
  }

  /** The schedule's job as CreateJob would check it, with its name and label as a firing gives them: what it keeps. */
  #checkJob(job: CreateJobReq | undefined, id: string, name: string | null): CreateJobReq {
    if (!job) throw Errors.invalidArgument('job is required: the job each firing creates');
    if (job.name !== '') throw Errors.invalidArgument('job.name: a schedule names its jobs (the schedule\'s name and the firing time)');
    if (job.after.length > 0) throw Errors.invalidArgument('job.after: a scheduled job cannot wait for others');
    if (job.stdin) throw Errors.invalidArgument("job.stdin: a scheduled job's stdin is /dev/null");
    if (job.node !== '' || Object.keys(job.constraints).length > 0) throw Errors.notAFleet('job.node and job.constraints place jobs in a fleet');
    let bytes = Buffer.byteLength(job.command) + Buffer.byteLength(job.workdir);
    for (const text of [...job.args, ...job.env]) bytes += Buffer.byteLength(text);
    bytes += Buffer.byteLength(job.isolation?.rootfs ?? '') + Buffer.byteLength(job.isolation?.user ?? '');
    if (bytes > MAX_TEMPLATE_BYTES) throw Errors.invalidArgument(`job: a schedule's command, args, env, workdir, rootfs and user must be at most ${MAX_TEMPLATE_BYTES} bytes together, got ${bytes}`);
    try {
      this.#options.service.resolve(this.#request(job, id, name, new Date()));
    } catch (err) {
      if (err instanceof JobworkerError) throw new JobworkerError(err.code, `job: ${err.message}`);
      throw err;
    }
    return job;
  }

  /** What a firing at `time` asks CreateJob for. */
  #request(job: CreateJobReq, id: string, name: string | null, time: Date): CreateJobReq {
    return { ...job, name: jobName(name ?? `schedule-${id.slice(0, 8)}`, time), labels: { ...job.labels, schedule: id } };
  }

  /**
   * What the server missed while it was down: with catch-up once, the latest
   * missed slot fires if it is within the window; every other is recorded
   * skipped, in one entry.
   */
  #catchUp(live: Live, now: Date): void {
    const { stored } = live;
    let latest: Date | null = null;
    let missed = 0;
    for (let slot = live.cron.after(stored.lastSlot); slot !== null && slot <= now; slot = live.cron.after(slot)) {
      latest = slot;
      missed += 1;
      if (missed >= MISSED_COUNTED) {
        // Far behind: the latest missed slot is the last one at or before now.
        latest = lastSlotUpTo(live.cron, slot, now);
        break;
      }
    }
    if (latest === null) return;
    const count = missed >= MISSED_COUNTED ? `at least ${MISSED_COUNTED}` : String(missed);
    const fires = stored.catchUp === 'once' && now.getTime() - latest.getTime() <= stored.catchUpWindowMs;
    const skipped = fires ? missed - 1 : missed;
    if (skipped > 0 || !fires) {
      const why =
        stored.catchUp === 'none'
          ? `missed ${count} firing(s) while the server was down, the last at ${latest.toISOString()} (catch-up none)`
          : fires
            ? `missed ${missed >= MISSED_COUNTED ? count : skipped} earlier firing(s) while the server was down; the latest, ${latest.toISOString()}, fires once (catch-up once)`
            : `missed ${count} firing(s) while the server was down, the last at ${latest.toISOString()}, older than the catch-up window (${stored.catchUpWindowMs / 1000} s)`;
      // Recorded under the slot before the latest when that fires, so that the two entries do not collide.
      const at = fires ? new Date(latest.getTime() - 1) : latest;
      this.#claim(live, { scheduleId: stored.id, slot: at, firedAt: now, outcome: 'SKIPPED', jobId: null, reason: why, manual: false });
    }
    if (fires) live.firing = this.#fire(live, latest, false);
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
        live.timer = setTimeout(wait, MAX_TIMER_MS);
        return;
      }
      live.timer = setTimeout(() => {
        live.timer = undefined;
        // After the firing before it, if that is still creating its job.
        live.firing = live.firing.then(() => this.#fire(live, slot, false)).finally(() => {
          if (this.#schedules.get(live.stored.id) === live && live.next === slot) this.#arm(live);
        });
      }, Math.max(0, left));
      live.timer.unref();
    };
    wait();
  }

  /**
   * One firing: the slot claimed on disk first (false: it was handled
   * already, nothing happens), then the concurrency policy, then the job.
   * Resolves with the firing as recorded.
   */
  async #fire(live: Live, slot: Date, manual: boolean): Promise<StoredFiring | undefined> {
    const { stored } = live;
    if (this.#closing || this.#schedules.get(stored.id) !== live) return undefined;
    if (!manual && stored.paused) return undefined;
    const firedAt = new Date();
    const base = { scheduleId: stored.id, slot, firedAt, manual };
    const previous = this.#previousJob(stored.id);
    if (previous && stored.concurrency === 'forbid') {
      const skipped: StoredFiring = { ...base, outcome: 'SKIPPED', jobId: null, reason: `the job of an earlier firing, ${previous}, has not ended (concurrency forbid)` };
      return this.#claim(live, skipped) ? skipped : undefined;
    }
    const jobId = randomUUID();
    const starting: StoredFiring = { ...base, outcome: 'STARTING', jobId, reason: '' };
    if (!this.#claim(live, starting)) return undefined;
    const owner: Caller = { cn: stored.owner, role: 'admin' };
    let done: StoredFiring;
    try {
      if (previous && stored.concurrency === 'replace') await this.#options.service.stopJob(owner, { id: previous, graceMs: undefined });
      await this.#options.service.createJob(owner, this.#request(stored.job, stored.id, stored.name, manual ? firedAt : slot), jobId);
      done = { ...starting, outcome: 'STARTED' };
    } catch (err) {
      done = { ...starting, outcome: 'FAILED', jobId: null, reason: messageOf(err) };
      this.#options.logger.warn({ scheduleId: stored.id, slot, err: messageOf(err) }, 'a schedule fired, and its job could not be created');
    }
    try {
      this.#options.book.record(done);
    } catch (err) {
      // Judged again from the job history at the next start.
      this.#options.logger.error({ scheduleId: stored.id, slot, err: messageOf(err) }, 'could not record how a firing went');
    }
    return done;
  }

  /** Records a firing claiming its slot (and moves the schedule past it); false when it was handled already or the disk refused. */
  #claim(live: Live, firing: StoredFiring): boolean {
    try {
      if (!this.#options.book.claim(firing)) return false;
    } catch (err) {
      // Not recorded, so not fired: the slot is passed over (in memory), or the timer would fire it again at once.
      this.#options.logger.error({ scheduleId: firing.scheduleId, slot: firing.slot, err: messageOf(err) }, 'could not record a firing: it does not fire');
      if (!firing.manual && firing.slot > live.stored.lastSlot) live.stored = { ...live.stored, lastSlot: firing.slot };
      return false;
    }
    if (!firing.manual && firing.slot > live.stored.lastSlot) live.stored = { ...live.stored, lastSlot: firing.slot };
    return true;
  }

  /** The job of the schedule's newest firing that created one, while it has not ended. */
  #previousJob(scheduleId: string): string | null {
    for (const firing of this.#options.book.firings(scheduleId)) {
      if ((firing.outcome !== 'STARTED' && firing.outcome !== 'STARTING') || firing.jobId === null) continue;
      const job = this.#options.store.get(firing.jobId);
      return job && isLive(job.state) ? firing.jobId : null;
    }
    return null;
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

  /** A write to schedules.db: NOT_RECORDED (nothing changed) when the disk refuses it. */
  #write(write: () => void): void {
    try {
      write();
    } catch (err) {
      throw Errors.notRecorded(`cannot record the schedule: ${messageOf(err)}`);
    }
  }

  #view(live: Live): Schedule {
    const { stored } = live;
    return {
      id: stored.id,
      name: stored.name ?? '',
      cron: stored.cron,
      timezone: stored.timezone,
      job: stored.job,
      concurrency: CONCURRENCY[stored.concurrency],
      catchUp: stored.catchUp === 'none' ? CatchUpPolicy.CATCH_UP_POLICY_NONE : CatchUpPolicy.CATCH_UP_POLICY_ONCE,
      catchUpWindowMs: stored.catchUpWindowMs,
      paused: stored.paused,
      owner: stored.owner,
      createdAt: stored.createdAt,
      nextFiringAt: live.next ?? undefined,
      firings: this.#options.book.firings(stored.id).map((firing) => this.#firingView(firing)),
    };
  }

  #firingView(firing: StoredFiring): Firing {
    const job = firing.jobId === null ? undefined : this.#options.store.get(firing.jobId);
    return {
      slot: firing.slot,
      firedAt: firing.firedAt,
      outcome: OUTCOME[firing.outcome],
      jobId: firing.jobId ?? '',
      jobStatus: job ? STATUS[job.state] : JobStatus.JOB_STATUS_UNSPECIFIED,
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

/** `<base>-YYYYMMDD-HHMMSS` (UTC), at most 63 characters: a job name. */
export function jobName(base: string, time: Date): string {
  const iso = time.toISOString();
  const stamp = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
  return `${base.slice(0, 63 - TIME_SUFFIX_LENGTH)}-${stamp}`;
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
