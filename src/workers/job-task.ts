// Runs on a job-supervisor thread (piscina). One `runJob` call supervises one
// job from cgroup creation to cgroup removal; a thread runs many at once, so
// nothing here may block the thread for long.
import fs from 'node:fs';
import { isMainThread, threadId } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { messageOf } from '../common/error-message.js';
import { monitorLoop } from '../common/loop-monitor.js';
import { settlesWithin } from '../common/settle-within.js';
import { removeEmptyGroups } from './cgroup/cgroupfs.js';
import { CgroupError, type CgroupDriver, type JobCgroup } from './cgroup/driver.js';
import { countingFailures } from './cgroup/failure-count.js';
import { moveSelfInto, ownCgroupV2, placeV2 } from './cgroup/delegation.js';
import { detectDriver, driverFor } from './cgroup/select.js';
import { EndReport, describeWaitStatus } from './end-report.js';
import { InitStatus, type StatusEvent } from './init-status.js';
import { finish, terminate, type StopState } from './job-end.js';
import { JobInput } from './job-input.js';
import { JobInitProcess } from './job-init-process.js';
import { jobInitOptions, openPipes, openStdin, readersOf, sendEnvironment } from './job-init-launch.js';
import { pumpOutput, type OutputSource } from './pipe-pump.js';
import type {
  CgroupConfig,
  JobExited,
  JobOutcome,
  MainToTask,
  PrepareResult,
  PrepareTask,
  ReapTask,
  ReleaseTask,
  ResourceUsage,
  RunJobTask,
  StaleJob,
  StartPhases,
  SupervisorTasks,
  TaskToMain,
  UsageReport,
} from './protocol.js';
import { RingWriter } from './ring-writer.js';
import { ThreadStats, type SupervisorThreadData } from './thread-stats.js';

/** How long job-init's report channel may stay open once the job's processes are gone (it closes as they die). */
const REPORT_DRAIN_TIMEOUT_MS = 1_000;

/** Shared with the main thread, which reads it for the server's metrics. */
const threadData = Piscina.workerData as SupervisorThreadData | undefined;
const stats = new ThreadStats(threadData?.stats);
if (!isMainThread) {
  const report = stats.claimSlot(threadId);
  if (report) monitorLoop(report, threadData?.loopWindowMs);
}

const counted = new Map<CgroupDriver, CgroupDriver>();

/** The thread's driver for the configuration, counting the operations that fail. */
function cgroupDriver(config: CgroupConfig): CgroupDriver {
  const driver = driverFor(config);
  let wrapped = counted.get(driver);
  if (!wrapped) {
    wrapped = countingFailures(driver, (op) => stats.cgroupFailed(op));
    counted.set(driver, wrapped);
  }
  return wrapped;
}

/**
 * Resolves the driver, prepares the parent group, and clears out job groups
 * a crashed earlier run left behind: their processes would otherwise run on,
 * unsupervised, for ever. The parent belongs to this server alone.
 */
export async function prepare(task: PrepareTask): Promise<PrepareResult> {
  const driver = task.driver === 'auto' ? detectDriver(task.mountRoot) : task.driver;
  // v1 has no delegation to honour (nor a no-internal-process rule): its
  // parent is taken from each hierarchy's root.
  const { parent, moveTo } = driver === 'v2' ? placeV2(task.parent, ownCgroupV2(), task.delegated) : { parent: task.parent.replace(/^\/+/, ''), moveTo: null };
  if (moveTo) moveSelfInto(task.mountRoot, moveTo);
  const cgroups = cgroupDriver({ driver, parent, mountRoot: task.mountRoot });
  const { controllers, made } = cgroups.prepare();
  const stale: StaleJob[] = [];
  for (const jobId of cgroups.listJobs()) {
    const group = cgroups.open(jobId);
    let hadProcesses = false;
    try {
      hadProcesses = group.populated();
      await group.killAll();
      await group.remove();
      stale.push({ jobId, hadProcesses, error: null });
    } catch (err) {
      stale.push({ jobId, hadProcesses, error: messageOf(err) });
    }
  }
  // Under v2 delegation the tree is the unit's: systemd removes it with the unit.
  return { driver, parent, movedTo: moveTo, controllers, made: task.delegated && driver === 'v2' ? [] : made, stale };
}

/** At shutdown, once every job has ended: removes the parent groups prepare made, where they are empty. */
export async function release(task: ReleaseTask): Promise<void> {
  removeEmptyGroups(task.made);
}

/** Kills and removes the cgroup of a job whose supervising thread died. */
export async function reap(task: ReapTask): Promise<void> {
  const cgroup = cgroupDriver(task.cgroup).open(task.jobId);
  await cgroup.killAll();
  await cgroup.remove();
}

export async function runJob(task: RunJobTask): Promise<JobOutcome> {
  const ring = new RingWriter(task.ring);
  const outcome: JobOutcome = {
    started: false,
    startFailure: null,
    exitCode: null,
    signal: null,
    oomKilled: false,
    stopReason: null,
    usage: null,
    supervisorError: null,
  };
  let cgroup: JobCgroup | undefined;
  try {
    const began = performance.now();
    // job-init's two processes around a PID namespace are not the job's: the job keeps its max_pids.
    const limits = task.isolation.pidNamespace && task.limits.pids > 0 ? { ...task.limits, pids: task.limits.pids + 2 } : task.limits;
    cgroup = cgroupDriver(task.cgroup).create(task.jobId, limits);
    await supervise(task, cgroup, ring, outcome, performance.now() - began);
  } catch (err) {
    // Whatever went wrong, nothing of the job may outlive this task.
    const message = messageOf(err);
    if (!outcome.started) {
      outcome.startFailure ??= { code: err instanceof CgroupError ? err.code : 'SPAWN_FAILED', message };
    } else {
      outcome.supervisorError ??= message;
    }
    const cleanup = await cgroup
      ?.killAll()
      .then(() => cgroup?.remove())
      .then(
        () => '',
        (cleanupErr: unknown) => `; cleanup: ${messageOf(cleanupErr)}`,
      );
    if (cleanup) outcome.supervisorError = `${outcome.supervisorError ?? message}${cleanup}`;
  } finally {
    ring.close();
    task.port.close();
  }
  return outcome;
}

async function supervise(task: RunJobTask, cgroup: JobCgroup, ring: RingWriter, outcome: JobOutcome, cgroupMs: number): Promise<void> {
  const spawning = performance.now();
  let leader: JobInitProcess;
  try {
    // None of the job's variables may reach job-init, root until its exec, as its own (job-init.c says why):
    // its environment is empty; the job's comes on its control fd. job-init replaces fds 1 and 2 with real pipes (see make_stdio_pipes).
    leader = new JobInitProcess(task.jobInitPath, [...jobInitOptions(task, cgroup), '--', task.command, ...task.args]);
  } catch (err) {
    outcome.startFailure = { code: 'SPAWN_FAILED', message: `spawn job-init: ${messageOf(err)}` };
    await cgroup.remove();
    return;
  }
  const spawned = performance.now();
  // fd 4 carries the job's environment in and, with a PID namespace, how the job ended out.
  sendEnvironment(leader.control, task.env);
  const report = new EndReport(leader.control);
  const exited = leader.exited.then(({ code, signal, waitError }) => {
    outcome.exitCode = code;
    outcome.signal = signal;
    if (waitError) outcome.supervisorError ??= `job-init: ${waitError}`;
  });

  // A job-init that never gets to exec (stopped, stuck joining a cgroup or
  // mounting) would hold CreateJob, and shutdown, for ever: kill it after a
  // while. Through the cgroup for whatever it forked once in the group, and
  // through its pidfd, as it may not have joined the group yet. Its status
  // channel then ends before exec, which reads as a failure.
  let handshakeTimedOut = false;
  const handshake = setTimeout(() => {
    handshakeTimedOut = true;
    try {
      leader.kill('SIGKILL');
    } catch (err) {
      // Thrown here, it would take every job on this thread down; the cgroup kill below may still reach it.
      outcome.supervisorError ??= `job-init: ${messageOf(err)}`;
    }
    void cgroup.killAll().catch(() => undefined);
  }, task.startTimeoutMs);
  const status = new InitStatus(leader.status);
  let sources: OutputSource[] = [];
  let output: Promise<void> = Promise.resolve();
  let handedOver: [number, number] | null = null;
  let input: JobInput | undefined;
  let event: StatusEvent;
  try {
    event = await status.next(task.command);
    if (event.kind === 'ready' && task.stdin !== (event.stdinFd !== null)) {
      event = { kind: 'failed', code: 'SPAWN_FAILED', message: `job-init ${task.stdin ? 'announced no' : 'announced a'} stdin pipe` };
    } else if (event.kind === 'ready') {
      // Before the acknowledgement: job-init then closes its own copy of the write end.
      if (event.stdinFd !== null) input = new JobInput(openStdin(leader.pid, event.stdinFd), (message) => task.port.postMessage(message));
      const pipes = openPipes(leader.pid, event.stdoutFd, event.stderrFd);
      if (task.outputPath === 'inline') {
        handedOver = pipes;
      } else {
        sources = readersOf(pipes);
        // The pump listens before job-init may exec, so no byte, end or error
        // of the pipes can come before it does.
        output = pumpOutput(sources, ring, (ms) => stats.ringBlocked(ms));
        // Observed now: a pipe error must not become an unhandled rejection that
        // takes the thread, and every job on it, down. finish() reports it.
        output.catch(() => undefined);
      }
      status.acknowledge();
      event = await status.next(task.command);
    } else if (event.kind === 'execd') {
      event = { kind: 'failed', code: 'SPAWN_FAILED', message: 'job-init exec\'d before it set up the pipes' };
    }
  } catch (err) {
    input?.destroy();
    throw err;
  } finally {
    clearTimeout(handshake);
  }

  if (event.kind !== 'execd' || handshakeTimedOut) {
    input?.destroy();
    // Kill first: a job-init that is still waiting would never exit.
    await cgroup.killAll().catch(() => undefined);
    await exited;
    for (const fd of handedOver ?? []) fs.closeSync(fd);
    await finish(cgroup, output, sources, outcome);
    outcome.startFailure = handshakeTimedOut
      ? { code: 'SPAWN_FAILED', message: `job-init did not exec the command within ${task.startTimeoutMs} ms` }
      : event.kind === 'failed'
        ? { code: event.code, message: event.message }
        : event.kind === 'died'
          ? { code: 'SPAWN_FAILED', message: `job-init was ${describeLeaderEnd(outcome)} before it could exec the command` }
          : { code: 'SPAWN_FAILED', message: 'job-init announced its pipes twice' };
    return;
  }

  outcome.started = true;
  const phases: StartPhases = { cgroupMs, spawnMs: spawned - spawning, execMs: performance.now() - spawned };
  const started: TaskToMain = { type: 'started', pid: leader.pid, cgroup: cgroup.path, pipes: handedOver, phases };
  task.port.postMessage(started);

  const leaderGone = new AbortController();
  void exited.then(() => leaderGone.abort());
  const stop: StopState = { deadline: Number.POSITIVE_INFINITY, running: undefined };
  task.port.on('message', (message: MainToTask) => {
    switch (message.type) {
      case 'stop':
        // Once the leader has exited the job is ending by itself: that is not a stop.
        if (leaderGone.signal.aborted) return;
        outcome.stopReason ??= message.reason;
        // A later stop may shorten the grace period (shutdown after a long user stop), never lengthen it.
        stop.deadline = Math.min(stop.deadline, performance.now() + message.graceMs);
        stop.running ??= terminate(leader, cgroup, stop, leaderGone.signal).catch((err: unknown) => {
          // finish() kills the cgroup again and records what went wrong there.
          outcome.supervisorError ??= `stop: ${messageOf(err)}`;
        });
        return;
      case 'input':
        input?.write(message.data);
        return;
      case 'input-end':
        input?.end();
        return;
      case 'usage': {
        const report: UsageReport = { type: 'usage', usage: usageNow(cgroup) };
        task.port.postMessage(report);
        return;
      }
      default:
        // A bug on the main thread; throwing here would take every job on this thread down.
        outcome.supervisorError ??= `unknown message from main: ${JSON.stringify(message)}`;
    }
  });

  await exited;
  input?.destroy();
  await stop.running;
  const gone: JobExited = { type: 'exited' };
  await finish(cgroup, output, sources, outcome, () => task.port.postMessage(gone));
  // With a PID namespace the leader ended as the job did only if it lived
  // to pass that on; job-init's init told us first (a stop's SIGKILL may
  // have taken the leader meanwhile). Its channel closes as it dies.
  await settlesWithin(report.ended, REPORT_DRAIN_TIMEOUT_MS);
  if (report.status !== null) Object.assign(outcome, describeWaitStatus(report.status));
}

/** "killed by SIGKILL", "ended with code 127": how the leader ended, for a start that failed. */
function describeLeaderEnd(outcome: JobOutcome): string {
  return outcome.signal ? `killed by ${outcome.signal}` : `ended with code ${outcome.exitCode}`;
}

/** null once the group is being torn down: the final figures then come with the outcome. */
function usageNow(cgroup: JobCgroup): ResourceUsage | null {
  try {
    return cgroup.usage();
  } catch {
    return null;
  }
}

// The table the runner dispatches through: a task added there and not here (or typed otherwise) fails the build.
void ({ prepare, runJob, reap, release } satisfies SupervisorTasks);
