// The jobs the server knows: one record each, changed only through the
// functions here so that every transition is a single synchronous step (a
// reader never sees a half-ended job). Every record is also written to the
// job history when it is added, when a job that waited starts, and when it
// ends. Listing order is creation time, then id.
import type { JobOutcome, ResourceUsage } from '../../workers/protocol.js';
import type { OutputLog } from '../output/log.js';
import type { JobHistory, StoredJob } from './history.js';
import { isLive, waitingEnd, type JobRecord, type JobState } from './record.js';

/** The job was not recorded on disk: the history said why. */
export class NotRecordedError extends Error {
  constructor(
    readonly jobId: string,
    readonly reason: unknown,
  ) {
    super(`cannot record job ${jobId} in the job history: ${(reason as Error).message}`);
    this.name = 'NotRecordedError';
  }
}

export const RESTARTED_WHILE_RUNNING = 'the server restarted while it ran: its processes were killed and its cgroup removed';

/** Where a job stands in the list: jobs are ordered by creation time, then id. */
export interface ListPosition {
  createdAt: number;
  id: string;
}

/** Negative when a comes before b (created earlier, or at the same millisecond with a smaller id). */
function compare(a: ListPosition, b: ListPosition): number {
  return a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

const positionOf = (record: JobRecord): ListPosition => ({ createdAt: record.createdAt.getTime(), id: record.id });

/** A job that waits (waiting-jobs.ts): its record, and how to settle its `ended` once it has ended. */
export interface WaitingRecord {
  record: JobRecord;
  settle: () => void;
  /** The environment it is to start with (the history keeps it until then). */
  env: Record<string, string>;
}

export class JobStore {
  readonly #jobs = new Map<string, JobRecord>();
  /**
   * Every job, oldest first by (creation time, id): a total order in which any
   * position, a pruned job's too, stays where it was, so a page token that
   * names one goes on exactly after it.
   */
  readonly #ordered: JobRecord[] = [];
  /** The jobs of each name, in list order: when none holds the name, the last is what it means. */
  readonly #named = new Map<string, JobRecord[]>();
  /** The job that holds each name: one that has not ended (not by list order, which follows the clock). */
  readonly #holders = new Map<string, JobRecord>();
  /** Names of jobs whose start is in flight: held from the check until the job is in the store or has failed to start. */
  readonly #reserved = new Set<string>();
  /** How many of #jobs have ended: pruning asks at every job's end, and must not count them all each time. */
  #ended = 0;
  readonly #history: JobHistory;

  constructor(history: JobHistory) {
    this.#history = history;
  }

  /**
   * Writes the record to the history first; throws NotRecordedError (and
   * keeps nothing) when that fails. A waiting job's `env` is kept with it
   * until it starts.
   */
  add(record: JobRecord, env: Record<string, string> | null = null): void {
    this.#write(record, env);
    this.#insert(record);
  }

  /** A waiting job has started (its pid, cgroup, start time and state are set): written to the history. */
  recordStart(record: JobRecord): void {
    this.#write(record);
  }

  /**
   * A waiting job is about to start: written as a job that runs (without its
   * environment), so that a server that dies before it can record the start
   * ends it FAILED at its next start rather than start it a second time.
   */
  recordStarting(record: JobRecord): void {
    try {
      this.#history.put({ ...stored(record, null), state: 'RUNNING' });
    } catch (err) {
      throw new NotRecordedError(record.id, err);
    }
  }

  /** A waiting job whose start did not begin after all (shutdown): written back as waiting, with its environment. */
  recordWaiting(record: JobRecord, env: Record<string, string>): void {
    this.#write(record, env);
  }

  /** Records a job's end (once), writing it to the history; throws NotRecordedError when that fails. */
  recordEnd(record: JobRecord): void {
    if (this.#jobs.get(record.id) !== record) return;
    this.#ended += 1;
    this.#unhold(record);
    this.#write(record);
  }

  /**
   * Takes in the jobs of earlier runs. One that was running then was ended by
   * the restart (the server killed what was left in its cgroup at start): it
   * is recorded FAILED, saying so. One that was waiting waits on: it is
   * given back, for waiting-jobs.ts to take up.
   */
  restore(jobs: readonly { job: StoredJob; log: OutputLog }[], now: Date): { interrupted: string[]; unrecorded: NotRecordedError[]; waiting: WaitingRecord[] } {
    const interrupted: string[] = [];
    const unrecorded: NotRecordedError[] = [];
    const waiting: WaitingRecord[] = [];
    for (const { job, log } of jobs) {
      const { outputBytes: _recorded, env, ...fields } = job;
      if (fields.state === 'WAITING') {
        const { ended, settle } = waitingEnd();
        const record: JobRecord = { ...fields, log, ended };
        waiting.push({ record, settle, env: env ?? {} });
        this.#insert(record);
        continue;
      }
      const record: JobRecord = { ...fields, log, ended: Promise.resolve() };
      if (record.state === 'RUNNING') {
        record.state = 'FAILED';
        record.endedAt = now;
        record.message = RESTARTED_WHILE_RUNNING;
        record.usage = record.usage && { ...record.usage, memoryBytes: 0 };
        interrupted.push(record.id);
        try {
          this.#write(record);
        } catch (err) {
          // Still FAILED here; on disk it stays RUNNING and is ended again next start.
          unrecorded.push(err as NotRecordedError);
        }
      }
      this.#insert(record);
      this.#ended += 1;
    }
    return { interrupted, unrecorded, waiting };
  }

  /** Forgets an ended job (pruning); its row goes from the history too, or the error is thrown. */
  remove(record: JobRecord): void {
    if (this.#jobs.delete(record.id)) {
      if (!isLive(record.state)) this.#ended -= 1;
      // Where its position says (createdAt and id never change); looked for everywhere if not, never left behind.
      const guess = this.#indexAfter(positionOf(record)) - 1;
      const at = this.#ordered[guess] === record ? guess : this.#ordered.indexOf(record);
      if (at >= 0) this.#ordered.splice(at, 1);
      if (record.name !== null) this.#unname(record, record.name);
      this.#unhold(record);
    }
    this.#history.delete(record.id);
  }

  /**
   * Holds `name` for a job about to start: the release to call once the job
   * is in the store or has failed to start. When the name is taken, what
   * holds it instead: the job that has not ended, or null for a start still
   * in flight.
   */
  claimName(name: string): { release: () => void } | { heldBy: JobRecord | null } {
    if (this.#reserved.has(name)) return { heldBy: null };
    const holder = this.#holders.get(name);
    if (holder) return { heldBy: holder };
    this.#reserved.add(name);
    return { release: () => this.#reserved.delete(name) };
  }

  /** The job a name means: the one that holds it now, else the newest ended job of that name. */
  byName(name: string): JobRecord | undefined {
    return this.#holders.get(name) ?? this.#named.get(name)?.at(-1);
  }

  #write(record: JobRecord, env: Record<string, string> | null = null): void {
    try {
      this.#history.put(stored(record, env));
    } catch (err) {
      throw new NotRecordedError(record.id, err);
    }
  }

  /** An ended or removed job holds its name no more. */
  #unhold(record: JobRecord): void {
    if (record.name !== null && this.#holders.get(record.name) === record) this.#holders.delete(record.name);
  }

  #unname(record: JobRecord, name: string): void {
    const named = this.#named.get(name) ?? [];
    const at = named.indexOf(record);
    if (at >= 0) named.splice(at, 1);
    if (named.length === 0) this.#named.delete(name);
  }

  #insert(record: JobRecord): void {
    this.#jobs.set(record.id, record);
    const position = positionOf(record);
    if (record.name !== null && isLive(record.state)) this.#holders.set(record.name, record);
    if (record.name !== null) {
      const named = this.#named.get(record.name);
      // Kept in list order: a name's newest job is its last. A new job is the newest: one comparison.
      if (!named) this.#named.set(record.name, [record]);
      else if (compare(positionOf(named.at(-1)!), position) < 0) named.push(record);
      else {
        const later = named.findIndex((other) => compare(positionOf(other), position) > 0);
        named.splice(later < 0 ? named.length : later, 0, record);
      }
    }
    // New jobs start last: the common case is one comparison and a push.
    const last = this.#ordered[this.#ordered.length - 1];
    if (!last || compare(positionOf(last), position) < 0) this.#ordered.push(record);
    else this.#ordered.splice(this.#indexAfter(position), 0, record);
  }

  /** Index of the first job ordered after `position`. */
  #indexAfter(position: ListPosition): number {
    let lo = 0;
    let hi = this.#ordered.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(positionOf(this.#ordered[mid]!), position) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  get(id: string): JobRecord | undefined {
    return this.#jobs.get(id);
  }

  /** Oldest first (creation time, then id); a copy. */
  list(): JobRecord[] {
    return [...this.#ordered];
  }

  /** Oldest first, without copying: for pruning, which stops early (and removes only once it has stopped). */
  values(): IterableIterator<JobRecord> {
    return this.#ordered.values();
  }

  /**
   * Newest first, from just before `before` (a position that need not be a
   * job any more) or from the newest. Read it to the end or drop it before
   * the store changes: it walks the live order.
   */
  *newestFirst(before?: ListPosition): Generator<JobRecord> {
    let at = before ? this.#indexAfter(before) - 1 : this.#ordered.length - 1;
    // The position itself, if it is still a job, was on the last page.
    if (before && at >= 0 && compare(positionOf(this.#ordered[at]!), before) === 0) at -= 1;
    for (; at >= 0; at -= 1) yield this.#ordered[at]!;
  }

  get endedCount(): number {
    return this.#ended;
  }

  running(): JobRecord[] {
    return this.#ordered.filter((job) => job.state === 'RUNNING');
  }
}

/** Records how a job ended, all fields at once. */
export function endJob(record: JobRecord, outcome: JobOutcome, endedAt: Date): void {
  const { state, message } = describeEnd(outcome, record);
  record.exitCode = outcome.exitCode;
  record.signal = outcome.signal;
  record.oomKilled = outcome.oomKilled;
  if (outcome.usage) record.usage = withPeakSeen(outcome.usage, record.usage);
  record.message = message;
  record.endedAt = endedAt;
  record.state = state;
}

/**
 * The figures just read from a running job's cgroup, unless newer ones are
 * already there: a job's usage is read on two threads (GetJob on the RPC
 * thread, a GetJobs page by the supervisor threads), and answers may cross.
 */
export function setUsage(record: JobRecord, usage: ResourceUsage): void {
  if (record.state !== 'RUNNING' || (record.usage && usage.sampledAt < record.usage.sampledAt)) return;
  record.usage = withPeakSeen(usage, record.usage);
}

/**
 * `usage`, its memory peak never below one reported before: where the
 * kernel keeps no peak (cgroup v2 before Linux 5.19) each reader's peak is
 * the most it saw itself, and a job's usage is read on two threads.
 */
function withPeakSeen(usage: ResourceUsage, before: ResourceUsage | null): ResourceUsage {
  if (!before || before.memoryPeakBytes <= usage.memoryPeakBytes) return usage;
  return { ...usage, memoryPeakBytes: before.memoryPeakBytes };
}

/** A job whose supervision broke down (its thread died): ended FAILED. */
export function abandonJob(record: JobRecord, reason: string, endedAt: Date): void {
  record.message = `supervision failed: ${reason}`;
  record.endedAt = endedAt;
  record.state = 'FAILED';
}

/** "deadline of 30 s exceeded": what a job stopped by its deadline says first. */
function deadlineExceeded(timeoutMs: number): string {
  return `deadline of ${Number((timeoutMs / 1000).toFixed(3))} s exceeded`;
}

function describeEnd(outcome: JobOutcome, { limits, timeoutMs }: Pick<JobRecord, 'limits' | 'timeoutMs'>): { state: JobState; message: string } {
  const parts: string[] = [];
  const limit = `the memory limit (${limits.memoryBytes / (1024 * 1024)} MiB)`;
  if (outcome.oomKilled && outcome.signal === 'SIGKILL') {
    parts.push(`killed by ${limit}`);
  } else if (outcome.signal) {
    parts.push(`killed by ${outcome.signal}`);
  } else if (outcome.exitCode !== 0) {
    parts.push(`exited with code ${outcome.exitCode}`);
  }
  if (outcome.oomKilled && outcome.signal !== 'SIGKILL') parts.push(`${limit} killed one of its processes`);
  if (outcome.supervisorError) parts.push(`supervisor: ${outcome.supervisorError}`);
  const message = parts.join('; ');
  if (outcome.stopReason === 'stop') return { state: 'STOPPED', message: message ? `stopped; ${message}` : 'stopped' };
  if (outcome.stopReason === 'deadline') {
    const deadline = deadlineExceeded(timeoutMs ?? 0);
    return { state: 'TIMED_OUT', message: message ? `${deadline}; ${message}` : deadline };
  }
  // A job that lost a process to the OOM killer did not do its work, whatever its leader's exit code says.
  if (outcome.exitCode === 0 && !outcome.signal && !outcome.oomKilled) return { state: 'COMPLETED', message };
  return { state: 'FAILED', message };
}

function stored(record: JobRecord, env: Record<string, string> | null): StoredJob {
  return {
    id: record.id,
    command: record.command,
    args: [...record.args],
    limits: record.limits,
    isolation: record.isolation,
    workdir: record.workdir,
    owner: record.owner,
    name: record.name,
    labels: record.labels,
    timeoutMs: record.timeoutMs,
    stdin: record.stdin,
    pid: record.pid,
    cgroup: record.cgroup,
    createdAt: record.createdAt,
    startedAt: record.startedAt,
    after: record.after,
    state: record.state,
    endedAt: record.endedAt,
    exitCode: record.exitCode,
    signal: record.signal,
    oomKilled: record.oomKilled,
    message: record.message,
    usage: record.usage,
    outputBytes: record.log.length,
    env,
  };
}
