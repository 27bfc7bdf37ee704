// A job as the main thread holds it: what it was asked to run, how it runs,
// how it ended. The store (store.ts) changes it; the history (history.ts)
// keeps it on disk.
import type { JobIsolation, JobLimits, ResourceUsage } from '../../workers/protocol.js';
import type { OutputLog } from '../output/log.js';

export type JobState = 'WAITING' | 'RUNNING' | 'COMPLETED' | 'FAILED' | 'STOPPED' | 'TIMED_OUT';

/** A job that has not ended: running, or waiting for its dependencies (waiting-jobs.ts). */
export function isLive(state: JobState): boolean {
  return state === 'RUNNING' || state === 'WAITING';
}

/** The `ended` of a job that waits (it ends when it has run, or without running), and what settles it. */
export function waitingEnd(): { ended: Promise<void>; settle: () => void } {
  let settle!: () => void;
  const ended = new Promise<void>((resolve) => (settle = resolve));
  return { ended, settle };
}

/** What a job waits for (CreateJobReq.after): a job's end, or (`ok`) its COMPLETED end. */
export interface Dependency {
  readonly id: string;
  readonly condition: 'ok' | 'any';
}

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
  /** 0 and '' while it waits; set once, when it starts. */
  pid: number;
  cgroup: string;
  /** When the server accepted it: the list's order. The start time for a job that did not wait. */
  readonly createdAt: Date;
  /** null while it waits, and for a job that ended without running. */
  startedAt: Date | null;
  /** The jobs it waited for (empty: none). */
  readonly after: readonly Dependency[];
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

