// The protocol between the main thread and the job-supervisor threads: the
// tasks the pool runs and the messages on each job's port, here; the output
// ring's layout in ring-layout.ts; the counters the threads keep for the
// metrics in thread-stats.ts. Of each other's code, those three files are
// all the two sides share (src/common holds helpers that belong to neither).
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

/**
 * How a job is kept apart from the host, checked against the server's
 * policy (src/supervisor/policy/isolation.ts). With the PID namespace come the UTS
 * (hostname: the job id's first 12 hex digits) and IPC namespaces.
 */
export interface JobIsolation {
  pidNamespace: boolean;
  /** Private /proc, /tmp, /dev/shm, /dev and /sys; the server's paths hidden. */
  mountNamespace: boolean;
  /** none: a network namespace with lo only. */
  network: 'none' | 'host';
  uid: number;
  gid: number;
  /** A directory to pivot_root into (needs the mount namespace). */
  rootfs: string | null;
}

/** Argument of the `runJob` task: one task supervises one job until it ends. */
export interface RunJobTask {
  jobId: string;
  command: string;
  args: string[];
  limits: JobLimits;
  isolation: JobIsolation;
  /** Where the command starts, in the job's filesystem. */
  workdir: string;
  /** Paths a job with a mount namespace must not see (the server's data and key). */
  hide: string[];
  cgroup: CgroupConfig;
  /** Absolute path of the compiled job-init helper. */
  jobInitPath: string;
  env: Record<string, string>;
  /** The job's output ring (layout in ring-layout.ts, the other shared file); the task writes, main reads. */
  ring: SharedArrayBuffer;
  outputPath: OutputPath;
  /** From spawn to exec: past this job-init is killed and the start fails. */
  startTimeoutMs: number;
  /** Give the job a pipe on stdin for InputData; otherwise its stdin is /dev/null. */
  stdin: boolean;
  /** Transferred: carries MainToTask messages in and TaskToMain out. */
  port: MessagePort;
}

/** Who stopped a job: an operator (StopJob, shutdown) or its deadline. */
export type StopReason = 'stop' | 'deadline';

/** main → task: stop the job (SIGTERM, then SIGKILL once graceMs is over). */
export interface StopRequest {
  type: 'stop';
  graceMs: number;
  reason: StopReason;
}

/**
 * main → task: bytes for the job's stdin (RunJobTask.stdin). The task
 * answers each with an InputTaken once the pipe has taken them, in order:
 * the main thread sends more only as those come, so what waits between the
 * writer's call and the job is bounded by what it lets be in flight.
 */
export interface InputData {
  type: 'input';
  data: Uint8Array;
}

/** main → task: close the job's stdin (the job reads EOF once it has read what was written). */
export interface InputEnd {
  type: 'input-end';
}

/** task → main: the job's stdin pipe took an InputData's bytes. */
export interface InputTaken {
  type: 'input-taken';
  bytes: number;
}

/**
 * task → main: the job's stdin is closed. After an InputEnd, once every byte
 * was taken (error null); or because nothing reads it any more (the job
 * closed its stdin or ended: EPIPE), with the bytes not taken dropped.
 * Nothing more is taken after it.
 */
export interface InputClosed {
  type: 'input-closed';
  error: string | null;
}

/** task → main: job-init exec'd the command. */
export interface JobStarted {
  type: 'started';
  pid: number;
  /** The job's cgroup relative to the hierarchy root, e.g. "/jobworker/<id>". */
  cgroup: string;
  /** outputPath 'inline' only: the read ends of stdout and stderr, now the main thread's to read and close. */
  pipes: [stdout: number, stderr: number] | null;
  phases: StartPhases;
}

/**
 * task → main: every process of the job is gone; what is left of its output
 * is what its pipes and ring hold. The main thread then takes it all, even
 * while its disk refuses writes, so the job's end never waits for the disk.
 */
export interface JobExited {
  type: 'exited';
}

/** Milliseconds each step of a start took on the supervisor thread: for the log and the benchmarks. */
export interface StartPhases {
  /** Creating the job's group(s) and writing its limits. */
  cgroupMs: number;
  /** Starting job-init: posix_spawn (no fork of the server, src/native-spawn/spawn.c) up to its exec. */
  spawnMs: number;
  /** From then to the command's exec: job-init joins the groups and makes the pipes, the thread opens them. */
  execMs: number;
}

/**
 * 'ring': the supervisor thread reads the job's pipes into its ring. 'inline':
 * it hands the pipes to the main thread, which reads them itself — the design
 * the rings replaced, kept only so that bench scenario 3 can measure what
 * they buy. Inline output keeps no order between stdout and stderr and has
 * no drain timeout; it is held back by the disk as the rings are (the main
 * thread stops reading a job's pipes while its log has no room).
 */
export type OutputPath = 'ring' | 'inline';

export type StartFailureCode =
  | 'EXEC_FAILED'
  /** A namespace, mount, user switch or workdir job-init could not set up. */
  | 'ISOLATION_FAILED'
  | 'CONTROLLER_UNAVAILABLE'
  | 'CGROUP_SETUP_FAILED'
  /** Processes of the group outlived SIGKILL (stuck in uninterruptible sleep), or the group would not freeze. */
  | 'CGROUP_KILL_FAILED'
  | 'SPAWN_FAILED';

/** Why nothing ran; the task has already cleaned up what it made. */
export interface StartFailure {
  code: StartFailureCode;
  message: string;
}

/** main → task: report what the job has used so far. */
export interface UsageRequest {
  type: 'usage';
}

/** task → main: the answer to a UsageRequest. */
export interface UsageReport {
  type: 'usage';
  /** null while the job's group is being torn down: its final figures come with the JobOutcome. */
  usage: ResourceUsage | null;
}

/** What a job has used, read from its cgroup. */
export interface ResourceUsage {
  /** CPU time, user and system, of every process of the job. */
  cpuUsec: number;
  /** Time the job's processes were held back by its CPU limit. */
  cpuThrottledUsec: number;
  /** Memory charged to the job now (0 once it has ended). */
  memoryBytes: number;
  /** The most memory ever charged to the job. */
  memoryPeakBytes: number;
  /** Bytes the job read from and wrote to physical block devices. */
  ioReadBytes: number;
  ioWriteBytes: number;
  /** When the figures were read (ms since the epoch). */
  sampledAt: number;
}

export type TaskToMain = JobStarted | UsageReport | JobExited | InputTaken | InputClosed;
export type MainToTask = StopRequest | UsageRequest | InputData | InputEnd;

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
  oomKilled: boolean;
  /** Who stopped the job, when a stop reached it before it ended (the first one counts). */
  stopReason: StopReason | null;
  /** Read after the last process had gone, before the cgroup was removed; null when it could not be read. */
  usage: ResourceUsage | null;
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
  /** As given with --cgroup-parent; resolved into PrepareResult.parent. */
  parent: string;
  mountRoot: string;
  /** cgroup v2: the server's own group is delegated to it (systemd Delegate=yes). */
  delegated: boolean;
}

export interface PrepareResult {
  driver: CgroupDriverName;
  /** The job parent group relative to the mount root(s), e.g. "system.slice/jobworkerd.service/jobworker". */
  parent: string;
  /** The group the server moved itself into, relative to the mount root, when it had to. */
  movedTo: string | null;
  /** Controllers usable for job cgroups. */
  controllers: string[];
  /**
   * Groups prepare made, outermost first (absolute paths, in every
   * hierarchy): the parent, and any level above it that was missing. Never
   * under delegation, where the tree is the unit's. The release task removes
   * them again at shutdown, when empty.
   */
  made: string[];
  /** Job groups a previous run left behind (it crashed): their processes killed, the groups removed. */
  stale: StaleJob[];
}

/** Argument of the `release` task, run once at shutdown after every job has ended. */
export interface ReleaseTask {
  /** PrepareResult.made. */
  made: string[];
}

/**
 * Every task the pool runs, by name: what it takes and what it resolves
 * with. job-task.ts exports one function per entry, and the runner
 * dispatches through this table, so a name and its types cannot drift apart.
 */
export interface SupervisorTasks {
  prepare(task: PrepareTask): Promise<PrepareResult>;
  runJob(task: RunJobTask): Promise<JobOutcome>;
  reap(task: ReapTask): Promise<void>;
  release(task: ReleaseTask): Promise<void>;
}

export type TaskName = keyof SupervisorTasks;

export interface StaleJob {
  jobId: string;
  /** It still had processes, now killed. */
  hadProcesses: boolean;
  /** Why it could not be cleaned up, when it could not. */
  error: string | null;
}
