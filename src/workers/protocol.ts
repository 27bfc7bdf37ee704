// The protocol between the main thread and the job-supervisor threads: the
// task and message types here, the output ring's layout in ring-layout.ts.
// Of each other's code, those two files are all the two sides share
// (src/common holds helpers that belong to neither).
import type { MessagePort } from 'node:worker_threads';

export type CgroupDriverName = 'v1' | 'v2';

/** Which of a job's output streams bytes came from. */
export const enum StreamId {
  Stdout = 0,
  Stderr = 1,
}

export interface JobLimits {
  /** Percent of one core: 100 = one full core. */
  cpuPercent: number;
  memoryBytes: number;
  /** Bytes/s read and write per physical block device; 0 = unlimited. */
  ioBps: number;
  /** Most tasks (processes and threads) at once; 0 = unlimited. */
  pids: number;
}

export interface CgroupConfig {
  /** 'auto' is resolved by the prepare task before any job runs. */
  driver: CgroupDriverName;
  /** Name of the parent group all job cgroups live under, e.g. "jobworker". */
  parent: string;
  /** Where cgroupfs is mounted: /sys/fs/cgroup (v1: one dir per controller). */
  mountRoot: string;
}

/** Argument of the `runJob` task: one task supervises one job until it ends. */
export interface RunJobTask {
  jobId: string;
  command: string;
  args: string[];
  limits: JobLimits;
  cgroup: CgroupConfig;
  /** Absolute path of the compiled job-init helper. */
  jobInitPath: string;
  env: Record<string, string>;
  /** The job's output ring (layout in ring-layout.ts, the other shared file); the task writes, main reads. */
  ring: SharedArrayBuffer;
  /** Transferred: carries StopRequest in and JobStarted out. */
  port: MessagePort;
}

/** main → task */
export interface StopRequest {
  type: 'stop';
  graceMs: number;
}

/** task → main: job-init exec'd the command. */
export interface JobStarted {
  type: 'started';
  pid: number;
  /** The job's cgroup relative to the hierarchy root, e.g. "/jobworker/<id>". */
  cgroup: string;
}

export type StartFailureCode =
  | 'EXEC_FAILED'
  | 'CONTROLLER_UNAVAILABLE'
  | 'CGROUP_SETUP_FAILED'
  | 'SPAWN_FAILED';

/** Why nothing ran; the task has already cleaned up what it made. */
export interface StartFailure {
  code: StartFailureCode;
  message: string;
}

export type TaskToMain = JobStarted;
export type MainToTask = StopRequest;

/**
 * What `runJob` resolves with. The first termination reason recorded wins.
 * A job that never started resolves with `startFailure` set (and no
 * JobStarted was posted): the task's result, unlike a port message, cannot
 * race the task's end.
 */
export interface JobOutcome {
  started: boolean;
  startFailure: StartFailure | null;
  exitCode: number | null;
  /** e.g. "SIGKILL" when the leader died of a signal. */
  signal: string | null;
  /** The cgroup's OOM killer killed at least one of the job's processes. */
  memoryLimitHit: boolean;
  /** A stop request reached the job before it ended. */
  stopRequested: boolean;
  /** Trouble in supervision itself (e.g. a cgroup that could not be removed). */
  supervisorError: string | null;
}

/** Argument of the `reap` task: clean up after a job whose thread died. */
export interface ReapTask {
  jobId: string;
  cgroup: CgroupConfig;
}

/** Argument of the `prepare` task, run once (on one thread) before any job starts. */
export interface PrepareTask {
  driver: CgroupDriverName | 'auto';
  parent: string;
  mountRoot: string;
}

export interface PrepareResult {
  driver: CgroupDriverName;
  /** Controllers usable for job cgroups. */
  controllers: string[];
  /** Job groups a previous run left behind (it crashed): their processes killed, the groups removed. */
  stale: StaleJob[];
}

export interface StaleJob {
  jobId: string;
  /** It still had processes, now killed. */
  hadProcesses: boolean;
  /** Why it could not be cleaned up, when it could not. */
  error: string | null;
}
