// Jobs created with dependencies (CreateJobReq.after): accepted at once,
// recorded WAITING (in the history too, with the environment they are to
// start with), holding no cgroup and no process until every job they wait
// for has ended. Then one whose conditions all hold starts as any job does,
// under the same id, name and log; one whose dependency ended short of its
// condition ends FAILED without running. A waiting job survives a restart:
// the store gives it back and the ends it waited for are read from there.
//
// Quotas count a waiting job's creation against a rate as it is accepted,
// and refuse one that could never start under its owner's rule; its running
// share counts from its start, since it holds nothing until then. One whose
// dependencies have ended but whose owner is at a quota waits on, its
// message saying which quota, and is tried again as jobs end (and every
// second while any is held back).
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { messageOf } from '../../common/error-message.js';
import { Errors, JobworkerError } from '../errors.js';
import type { ServerMetrics } from '../ops/metrics.js';
import { OutputLog, jobLogOptions } from '../output/log.js';
import type { Role } from '../rpc/authz.js';
import type { QuotaLedger } from './quota-ledger.js';
import { isLive, waitingEnd, type Dependency, type JobRecord, type JobState } from './record.js';
import type { JobRunner, StartRequest } from './runner.js';
import { NotRecordedError, type JobStore, type WaitingRecord } from './store.js';

/** How often jobs held back by a quota are tried again when no job ends meanwhile (a rate window moves on with time alone). */
const QUOTA_RETRY_MS = 1_000;

/** What a waiting job starts as, but for what its record already says. */
export type WaitingStart = Omit<StartRequest, 'id' | 'waiting' | 'owner'>;

export interface WaitingJobsOptions {
  store: JobStore;
  runner: JobRunner;
  quotas: QuotaLedger;
  metrics: ServerMetrics;
  logger: Logger;
  /** <data dir>/output, and the per-job output cap: a waiting job's log is made when it is accepted. */
  outputRoot: string;
  maxOutputBytes: number;
  /** Told of the end of a job that never ran, as the runner tells of the others (retention, the fleet, this class). */
  onJobEnded: (record: JobRecord) => void;
}

interface Entry {
  readonly waiting: WaitingRecord;
  /** The owner's role when it was created; admins only create jobs, so after a restart it is taken to be admin. */
  readonly role: Role | null;
  /** Dependencies that have not ended yet. */
  readonly left: Set<string>;
  /** Its start, once begun: a stop then waits for it and stops the job. */
  starting?: Promise<void>;
  /** Resolved once it waits here no more: started, ended, or left waiting in the history by a shutdown. */
  readonly gone: Promise<void>;
  readonly leave: () => void;
}

/** An entry for a waiting record (its `gone` unresolved). */
function entryFor(waiting: WaitingRecord, role: Role | null): Entry {
  let leave!: () => void;
  const gone = new Promise<void>((resolve) => (leave = resolve));
  return { waiting, role, left: new Set(), gone, leave };
}

export class WaitingJobs {
  readonly #options: WaitingJobsOptions;
  /** Every job that waits, by id, until it has started or ended. */
  readonly #entries = new Map<string, Entry>();
  /** For each job waited for, the entries that wait for it. */
  readonly #dependents = new Map<string, Set<Entry>>();
  /**
   * How many waiting jobs name each job in their `after`: retention keeps
   * such a job (isPinned), so its end can be judged whenever it is needed
   * (after a restart too).
   */
  readonly #pins = new Map<string, number>();
  /** Entries whose dependencies have all ended, held back by their owner's quota: oldest first. */
  #heldBack: Entry[] = [];
  #retry: NodeJS.Timeout | undefined;
  #closing = false;

  constructor(options: WaitingJobsOptions) {
    this.#options = options;
  }

  /**
   * Records a job that waits for `after` (ids of jobs in the store) and
   * takes it up: it may start, or end, as soon as this returns (its
   * dependencies may have ended already). Its name must be held for it
   * (JobStore.claimName): the record holds it from here. Throws
   * NotRecordedError when the history cannot take it: nothing is kept then.
   */
  accept(job: WaitingStart, owner: string, role: Role | null, after: readonly Dependency[]): JobRecord {
    const { store, outputRoot, maxOutputBytes, logger } = this.#options;
    const id = randomUUID();
    const { ended, settle } = waitingEnd();
    const record: JobRecord = {
      id,
      command: job.command,
      args: job.args,
      limits: job.limits,
      isolation: job.isolation,
      workdir: job.workdir,
      owner,
      name: job.name,
      labels: job.labels,
      timeoutMs: job.timeoutMs,
      stdin: job.stdin,
      pid: 0,
      cgroup: '',
      createdAt: new Date(),
      startedAt: null,
      after,
      log: new OutputLog(jobLogOptions(outputRoot, id, maxOutputBytes, logger)),
      ended,
      state: 'WAITING',
      endedAt: null,
      exitCode: null,
      signal: null,
      oomKilled: false,
      message: waitingFor(after.map((dependency) => dependency.id)),
      usage: null,
    };
    store.add(record, job.env);
    logger.info({ jobId: id, owner, after }, 'job accepted, waiting for its dependencies');
    this.#take(entryFor({ record, settle, env: job.env }, role));
    return record;
  }

  /**
   * Jobs that were waiting when the server last stopped (JobStore.restore):
   * they wait on, oldest first. (Admins alone create jobs: their owners'
   * role.) With `refusal`, each ends FAILED saying it instead (a fleet
   * node: its waiting jobs wait in etcd).
   */
  resume(waiting: readonly WaitingRecord[], refusal?: string): void {
    for (const job of waiting) {
      if (refusal === undefined) this.#take(entryFor(job, 'admin'));
      else this.#end(this.#register(entryFor(job, 'admin')), 'FAILED', `not run: ${refusal}`);
    }
    if (waiting.length > 0) this.#options.logger.info({ jobs: waiting.length, refusal }, 'jobs waiting for their dependencies taken up again');
  }

  /** True while some waiting job names `id` in its after: retention keeps it. */
  isPinned(id: string): boolean {
    return this.#pins.has(id);
  }

  /** Resolves once the job waits no more: started, ended, or (shutdown) left waiting; at once for any other job. */
  until(record: JobRecord): Promise<void> {
    return this.#entries.get(record.id)?.gone ?? Promise.resolve();
  }

  /** True while the job waits here (or its start is in flight). */
  has(record: JobRecord): boolean {
    return this.#entries.has(record.id);
  }

  /**
   * A job of this server has ended (its end recorded): the jobs that waited
   * for it are judged against how it ended; and a quota may have room again.
   */
  jobEnded(record: JobRecord): void {
    const dependents = this.#dependents.get(record.id);
    if (dependents) {
      this.#dependents.delete(record.id);
      for (const entry of dependents) {
        entry.left.delete(record.id);
        if (this.#judge(entry, record.id) && entry.left.size === 0) this.#start(entry);
      }
    }
    if (this.#heldBack.length > 0) this.#retryHeldBack();
  }

  /**
   * Stops a waiting job: it ends STOPPED without running. One whose start
   * is in flight is stopped as a running job once it runs (graceMs).
   * Resolves once it has ended.
   */
  async stop(record: JobRecord, graceMs: number): Promise<void> {
    const entry = this.#entries.get(record.id);
    if (!entry) return;
    if (entry.starting) await entry.starting;
    else if (!this.#closing) {
      const unrecorded = this.#end(entry, 'STOPPED', 'stopped while waiting: it never ran');
      // The caller must know: on disk it still waits, and after a restart it would wait (and may run) again.
      if (unrecorded) throw Errors.notRecorded(`${unrecorded.message}; the job is stopped until the server restarts, when it would wait again`);
      return;
    }
    // Shutting down: it waits on in the history, for the next start.
    if (record.state === 'WAITING') throw Errors.shuttingDown();
    if (record.state === 'RUNNING') await this.#options.runner.stop(record, graceMs);
    await record.ended;
  }

  /**
   * Shutdown: nothing more starts; waiting jobs stay WAITING in the
   * history, to wait on after the restart, and whoever waits on them here
   * is let go (until()).
   */
  close(): void {
    this.#closing = true;
    clearTimeout(this.#retry);
    this.#retry = undefined;
    for (const entry of this.#entries.values()) if (!entry.starting) entry.leave();
  }

  /** Holds an entry (and pins what it names) until #forget. */
  #register(entry: Entry): Entry {
    this.#entries.set(entry.waiting.record.id, entry);
    for (const { id } of entry.waiting.record.after) this.#pins.set(id, (this.#pins.get(id) ?? 0) + 1);
    return entry;
  }

  /** The entry waits here no more (started or ended). */
  #forget(entry: Entry): void {
    const { record } = entry.waiting;
    if (this.#entries.get(record.id) !== entry) return;
    this.#entries.delete(record.id);
    for (const { id } of record.after) {
      const pins = (this.#pins.get(id) ?? 1) - 1;
      if (pins > 0) this.#pins.set(id, pins);
      else this.#pins.delete(id);
      this.#dependents.get(id)?.delete(entry);
      if (this.#dependents.get(id)?.size === 0) this.#dependents.delete(id);
    }
    entry.leave();
  }

  /**
   * Registers an entry under each dependency that has not ended, and judges
   * it against those that have. Each dependency is judged once, as it ends
   * (or here): a job pruned after that is not looked for again.
   */
  #take(entry: Entry): void {
    const { record } = entry.waiting;
    this.#register(entry);
    for (const { id } of record.after) {
      const dependency = this.#options.store.get(id);
      if (!dependency || !isLive(dependency.state)) continue;
      entry.left.add(id);
      let dependents = this.#dependents.get(id);
      if (!dependents) this.#dependents.set(id, (dependents = new Set()));
      dependents.add(entry);
    }
    for (const { id } of record.after) if (!entry.left.has(id) && !this.#judge(entry, id)) return;
    if (entry.left.size === 0) this.#start(entry);
  }

  /** One dependency of the entry has ended: false (and the job ended) when it failed its condition. */
  #judge(entry: Entry, id: string): boolean {
    const { record } = entry.waiting;
    if (!isLive(record.state) || entry.starting) return false;
    const dependency = record.after.find((d) => d.id === id)!;
    const failed = unmet(dependency, this.#options.store.get(id));
    if (failed) {
      this.#end(entry, 'FAILED', `not run: ${failed}`);
      return false;
    }
    if (entry.left.size > 0) record.message = waitingFor([...entry.left]);
    return true;
  }

  /** Admits the job against its owner's quota and starts it; held back while the quota has no room. */
  #start(entry: Entry): void {
    if (this.#closing) return;
    const { record, settle, env } = entry.waiting;
    const { quotas, runner, logger } = this.#options;
    let admission;
    try {
      // Its creation was counted against a rate as it was accepted (QuotaLedger.accept).
      admission = quotas.admit({ cn: record.owner, role: entry.role }, record.limits, { counted: false });
    } catch (err) {
      if (!(err instanceof JobworkerError) || err.code !== 'QUOTA_EXCEEDED') throw err;
      record.message = `waiting for room in its owner's quota: ${err.message}`;
      if (!this.#heldBack.includes(entry)) this.#heldBack.push(entry);
      this.#armRetry();
      return;
    }
    // Before anything is spawned: a job must never start twice, whichever process dies when.
    try {
      this.#options.store.recordStarting(record);
    } catch (err) {
      admission.failed();
      logger.error({ jobId: record.id, err: err instanceof NotRecordedError ? err.reason : err }, 'could not record the start of a waiting job');
      this.#end(entry, 'FAILED', `its dependencies ended as asked, but its start could not be recorded: ${messageOf(err)}`);
      return;
    }
    const request: StartRequest = {
      command: record.command,
      args: [...record.args],
      limits: record.limits,
      isolation: record.isolation!,
      workdir: record.workdir ?? '/',
      env,
      owner: record.owner,
      name: record.name,
      labels: { ...record.labels },
      timeoutMs: record.timeoutMs,
      stdin: record.stdin,
      waiting: { record, settle },
    };
    entry.starting = runner.start(request).then(
      (started) => {
        admission.started(started);
        this.#forget(entry);
      },
      (err: unknown) => {
        admission.failed();
        if (err instanceof JobworkerError && err.code === 'SHUTTING_DOWN') {
          // It waits on in the history: the next start takes it up again.
          try {
            this.#options.store.recordWaiting(record, env);
          } catch (undo) {
            logger.error({ jobId: record.id, err: messageOf(undo) }, 'a waiting job whose start was refused at shutdown is recorded as started: it will end FAILED at the next start');
          }
          entry.leave();
          return;
        }
        this.#forget(entry);
        // A start the history could not record was stopped, and has ended, in the runner.
        if (!isLive(record.state)) return;
        logger.warn({ jobId: record.id, err: messageOf(err) }, 'a job that waited could not start');
        this.#end(entry, 'FAILED', `its dependencies ended as asked, but it could not start: ${messageOf(err)}`);
      },
    );
  }

  /** Ends a job that never ran: recorded, its log closed (nothing was written), its waiters and dependents told. */
  /** Returns the history's refusal to record it, if it refused (the job has ended here all the same). */
  #end(entry: Entry, state: JobState, message: string): NotRecordedError | undefined {
    const { record, settle } = entry.waiting;
    const { store, metrics, logger, onJobEnded } = this.#options;
    this.#heldBack = this.#heldBack.filter((other) => other !== entry);
    record.state = state;
    record.message = message;
    record.endedAt = new Date();
    metrics.jobEnded(record);
    let unrecorded: NotRecordedError | undefined;
    try {
      store.recordEnd(record);
    } catch (err) {
      // Ended here all the same; on disk it still waits, and is judged again at the next start.
      logger.error({ jobId: record.id, err: err instanceof NotRecordedError ? err.reason : err }, 'could not record the end of a waiting job in the job history');
      if (err instanceof NotRecordedError) unrecorded = err;
      else throw err;
    }
    logger.info({ jobId: record.id, state, message }, 'job ended without running');
    void record.log.close();
    this.#forget(entry);
    settle();
    // Its own dependents next, a turn later: a long chain ends link by link, never as one deep recursion.
    setImmediate(() => onJobEnded(record));
    return unrecorded;
  }

  /** Tries the held-back entries again, oldest first; those still without room stay (in order). */
  #retryHeldBack(): void {
    const heldBack = this.#heldBack;
    this.#heldBack = [];
    for (const [i, entry] of heldBack.entries()) {
      try {
        this.#start(entry);
      } catch (err) {
        // Not a quota's refusal (#start gives back no other): keep the rest, and say so.
        this.#heldBack.push(...heldBack.slice(i + 1).filter((other) => !this.#heldBack.includes(other)));
        this.#armRetry();
        throw err;
      }
    }
  }

  #armRetry(): void {
    if (this.#retry || this.#closing) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#retryHeldBack();
    }, QUOTA_RETRY_MS);
    this.#retry.unref();
  }
}

/** "waiting for job …", or for n jobs. */
export function waitingFor(ids: readonly string[]): string {
  return ids.length === 1 ? `waiting for job ${ids[0]}` : `waiting for ${ids.length} jobs: ${ids.join(', ')}`;
}

/** How a dependency ended, as far as judging it goes: a server's record, or the fleet's. */
export interface EndedDependency {
  id: string;
  name: string | null;
  state: string;
  message: string;
}

/**
 * Why a dependency that has ended does not let its dependent run; null
 * when it does. `ended` undefined: no longer known to `knower` (pruned
 * before it was judged).
 */
export function unmet(dependency: Dependency, ended: EndedDependency | undefined, knower = 'this server'): string | null {
  if (!ended) return `dependency ${dependency.id} is no longer known to ${knower} (pruned before it was judged)`;
  if (dependency.condition === 'any' || ended.state === 'COMPLETED') return null;
  const name = ended.name === null ? '' : ` (${ended.name})`;
  return `dependency ${ended.id}${name} ended ${ended.state}${ended.message ? `: ${ended.message}` : ''}`;
}
