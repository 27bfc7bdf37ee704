// The jobs the server knows: one record each, changed only through the
// functions here so that every transition is a single synchronous step (a
// reader never sees a half-ended job). Every record is also written to the
// job history when it is added and when it ends.
import type { JobIsolation, JobLimits, JobOutcome, ResourceUsage } from '../../workers/protocol.js';
import type { JobHistory, StoredJob } from './history.js';
import type { OutputLog } from '../output/log.js';

export type JobState = 'RUNNING' | 'COMPLETED' | 'FAILED' | 'STOPPED';

export interface JobRecord {
  readonly id: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly limits: JobLimits;
  /** null for jobs recorded before isolation existed. */
  readonly isolation: JobIsolation | null;
  /** null for jobs recorded before it could be chosen (they ran in /). */
  readonly workdir: string | null;
  readonly owner: string;
  readonly pid: number;
  readonly cgroup: string;
  readonly startedAt: Date;
  readonly log: OutputLog;
  /** Resolves once the job has ended and its record says how. */
  readonly ended: Promise<void>;
  state: JobState;
  endedAt: Date | null;
  exitCode: number | null;
  signal: string | null;
  oomKilled: boolean;
  message: string;
  /** Last read from the job's cgroup; final once the job has ended. */
  usage: ResourceUsage | null;
}

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

export class JobStore {
  readonly #jobs = new Map<string, JobRecord>();
  /** How many of #jobs have ended: pruning asks at every job's end, and must not count them all each time. */
  #ended = 0;
  readonly #history: JobHistory;

  constructor(history: JobHistory) {
    this.#history = history;
  }

  /** Writes the record to the history first; throws NotRecordedError (and keeps nothing) when that fails. */
  add(record: JobRecord): void {
    this.#write(record);
    this.#jobs.set(record.id, record);
  }

  /** Records a job's end (once), writing it to the history; throws NotRecordedError when that fails. */
  recordEnd(record: JobRecord): void {
    if (this.#jobs.get(record.id) !== record) return;
    this.#ended += 1;
    this.#write(record);
  }

  /**
   * Takes in the jobs of earlier runs. One that was running then was ended by
   * the restart (the server killed what was left in its cgroup at start): it
   * is recorded FAILED, saying so.
   */
  restore(jobs: readonly { job: StoredJob; log: OutputLog }[], now: Date): { interrupted: string[]; unrecorded: NotRecordedError[] } {
    const interrupted: string[] = [];
    const unrecorded: NotRecordedError[] = [];
    for (const { job, log } of jobs) {
      const { outputBytes: _recorded, ...fields } = job;
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
      this.#jobs.set(record.id, record);
      this.#ended += 1;
    }
    return { interrupted, unrecorded };
  }

  /** Forgets an ended job (pruning); its row goes from the history too, or the error is thrown. */
  remove(record: JobRecord): void {
    if (this.#jobs.delete(record.id) && record.state !== 'RUNNING') this.#ended -= 1;
    this.#history.delete(record.id);
  }

  #write(record: JobRecord): void {
    try {
      this.#history.put(stored(record));
    } catch (err) {
      throw new NotRecordedError(record.id, err);
    }
  }

  get(id: string): JobRecord | undefined {
    return this.#jobs.get(id);
  }

  /** In the order they started. */
  list(): JobRecord[] {
    return [...this.#jobs.values()];
  }

  /** Oldest first, without copying: for pruning, which stops early. */
  values(): IterableIterator<JobRecord> {
    return this.#jobs.values();
  }

  get endedCount(): number {
    return this.#ended;
  }

  running(): JobRecord[] {
    return this.list().filter((job) => job.state === 'RUNNING');
  }
}

/** Records how a job ended, all fields at once. */
export function endJob(record: JobRecord, outcome: JobOutcome, endedAt: Date): void {
  const { state, message } = describeEnd(outcome, record.limits);
  record.exitCode = outcome.exitCode;
  record.signal = outcome.signal;
  record.oomKilled = outcome.oomKilled;
  if (outcome.usage) record.usage = outcome.usage;
  record.message = message;
  record.endedAt = endedAt;
  record.state = state;
}

/** A job whose supervision broke down (its thread died): ended FAILED. */
export function abandonJob(record: JobRecord, reason: string, endedAt: Date): void {
  record.message = `supervision failed: ${reason}`;
  record.endedAt = endedAt;
  record.state = 'FAILED';
}

function describeEnd(outcome: JobOutcome, limits: JobLimits): { state: JobState; message: string } {
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
  if (outcome.stopRequested) return { state: 'STOPPED', message: message ? `stopped; ${message}` : 'stopped' };
  // A job that lost a process to the OOM killer did not do its work, whatever its leader's exit code says.
  if (outcome.exitCode === 0 && !outcome.signal && !outcome.oomKilled) return { state: 'COMPLETED', message };
  return { state: 'FAILED', message };
}

function stored(record: JobRecord): StoredJob {
  return {
    id: record.id,
    command: record.command,
    args: [...record.args],
    limits: record.limits,
    isolation: record.isolation,
    workdir: record.workdir,
    owner: record.owner,
    pid: record.pid,
    cgroup: record.cgroup,
    startedAt: record.startedAt,
    state: record.state,
    endedAt: record.endedAt,
    exitCode: record.exitCode,
    signal: record.signal,
    oomKilled: record.oomKilled,
    message: record.message,
    usage: record.usage,
    outputBytes: record.log.length,
  };
}
