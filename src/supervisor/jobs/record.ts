// A job as the main thread holds it: what it was asked to run, how it runs,
// how it ended. The store (store.ts) changes it; the history (history.ts)
// keeps it on disk.
import type { JobIsolation, JobLimits, ResourceUsage } from '../../workers/protocol.js';
import type { OutputLog } from '../output/log.js';

export type JobState = 'RUNNING' | 'COMPLETED' | 'FAILED' | 'STOPPED' | 'TIMED_OUT';

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
  /** Unique among the jobs that have not ended (store.ts); null when it was given none. */
  readonly name: string | null;
  readonly labels: Readonly<Record<string, string>>;
  /** Milliseconds from its start to its deadline; null: none. */
  readonly timeoutMs: number | null;
  /** Created with its stdin open for WriteInput. */
  readonly stdin: boolean;
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

