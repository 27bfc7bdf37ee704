// The jobs the server knows: one record each, changed only through the
// functions here so that every transition is a single synchronous step (a
// reader never sees a half-ended job).
import type { JobLimits, JobOutcome, ResourceUsage } from '../workers/protocol.js';
import type { OutputLog } from './output-log.js';

export type JobState = 'RUNNING' | 'COMPLETED' | 'FAILED' | 'STOPPED';

export interface JobRecord {
  readonly id: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly limits: JobLimits;
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

export class JobStore {
  readonly #jobs = new Map<string, JobRecord>();

  add(record: JobRecord): void {
    this.#jobs.set(record.id, record);
  }

  get(id: string): JobRecord | undefined {
    return this.#jobs.get(id);
  }

  /** In the order they started. */
  list(): JobRecord[] {
    return [...this.#jobs.values()];
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
