// Runs on a job-supervisor thread (piscina). One `runJob` call supervises one
// job from cgroup creation to cgroup removal; a thread runs many at once, so
// nothing here may block the thread for long.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { settlesWithin } from '../common/settle-within.js';
import { CgroupError, type JobCgroup } from './cgroup/driver.js';
import { detectDriver, driverFor } from './cgroup/select.js';
import { InitStatus } from './init-status.js';
import { pumpOutput, type OutputSource } from './pipe-pump.js';
import { StreamId, type JobOutcome, type MainToTask, type PrepareResult, type PrepareTask, type ReapTask, type RunJobTask, type TaskToMain } from './protocol.js';
import { RingWriter } from './ring-writer.js';

/** How long the pipes may stay open after every process of the job is gone. */
const PIPE_DRAIN_TIMEOUT_MS = 10_000;

export function prepare(task: PrepareTask): PrepareResult {
  const driver = task.driver === 'auto' ? detectDriver(task.mountRoot) : task.driver;
  const controllers = driverFor({ driver, parent: task.parent, mountRoot: task.mountRoot }).prepare();
  return { driver, controllers };
}

/** Kills and removes the cgroup of a job whose supervising thread died. */
export async function reap(task: ReapTask): Promise<void> {
  const cgroup = driverFor(task.cgroup).open(task.jobId);
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
    memoryLimitHit: false,
    stopRequested: false,
    supervisorError: null,
  };
  let cgroup: JobCgroup | undefined;
  try {
    cgroup = driverFor(task.cgroup).create(task.jobId, task.limits);
    await supervise(task, cgroup, ring, outcome);
  } catch (err) {
    // Whatever went wrong, nothing of the job may outlive this task.
    const message = err instanceof Error ? err.message : String(err);
    if (!outcome.started) {
      outcome.startFailure ??= { code: err instanceof CgroupError ? err.code : 'CGROUP_SETUP_FAILED', message };
    } else {
      outcome.supervisorError ??= message;
    }
    await cgroup?.killAll().catch(() => undefined);
    await cgroup?.remove().catch(() => undefined);
  } finally {
    ring.close();
    task.port.close();
  }
  return outcome;
}

async function supervise(task: RunJobTask, cgroup: JobCgroup, ring: RingWriter, outcome: JobOutcome): Promise<void> {
  const child = execa(
    task.jobInitPath,
    ['--stdio', 'pipes', ...cgroup.joinDirs.flatMap((dir) => ['--cgroup', dir]), '--', task.command, ...task.args],
    {
      // job-init replaces fds 1 and 2 with real pipes (see make_stdio_pipes).
      stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
      buffer: false,
      reject: false,
      extendEnv: false,
      env: task.env,
      cwd: '/',
      // The job ends through its cgroup, never through execa's kill helpers.
      cleanup: false,
      forceKillAfterDelay: false,
    },
  );
  const leader = child as unknown as ChildProcess;
  if (leader.pid === undefined) {
    // spawn failed (ENOENT, E2BIG, EMFILE…): execa settles with the reason.
    const result = await child;
    outcome.startFailure = { code: 'SPAWN_FAILED', message: `spawn job-init: ${result.originalMessage ?? result.shortMessage}` };
    await cgroup.remove();
    return;
  }
  const exited = new Promise<void>((resolve) => {
    leader.once('exit', (code, signal) => {
      outcome.exitCode = code;
      outcome.signal = signal;
      resolve();
    });
  });
  // execa's own promise carries nothing we need, but must not go unobserved.
  void child.catch(() => undefined);

  const status = new InitStatus(child.stdio[3] as Duplex);
  let event = await status.next(task.command);
  let sources: OutputSource[] = [];
  if (event.kind === 'ready') {
    sources = [
      { stream: StreamId.Stdout, readable: openPipe(leader.pid, event.stdoutFd) },
      { stream: StreamId.Stderr, readable: openPipe(leader.pid, event.stderrFd) },
    ];
    status.acknowledge();
    event = await status.next(task.command);
  }
  const output = pumpOutput(sources, ring);
  // Observed now: a pipe error must not become an unhandled rejection that
  // takes the thread, and every job on it, down. finish() reports it.
  output.catch(() => undefined);

  if (event.kind !== 'execd') {
    await exited;
    await finish(cgroup, output, sources, outcome);
    outcome.startFailure =
      event.kind === 'failed' ? { code: event.code, message: event.message } : { code: 'SPAWN_FAILED', message: 'job-init reported its pipes twice' };
    return;
  }

  outcome.started = true;
  const started: TaskToMain = { type: 'started', pid: leader.pid, cgroup: cgroup.path };
  task.port.postMessage(started);

  const leaderGone = new AbortController();
  void exited.then(() => leaderGone.abort());
  let stopping: Promise<void> | undefined;
  task.port.on('message', (message: MainToTask) => {
    if (message.type !== 'stop') throw new Error(`unknown message from main: ${JSON.stringify(message)}`);
    // Once the leader has exited the job is ending by itself: that is not a stop.
    if (leaderGone.signal.aborted) return;
    outcome.stopRequested = true;
    stopping ??= terminate(leader, cgroup, message.graceMs, leaderGone.signal).catch((err: unknown) => {
      // finish() kills the cgroup again and records what went wrong there.
      outcome.supervisorError ??= `stop: ${err instanceof Error ? err.message : String(err)}`;
    });
  });

  await exited;
  await stopping;
  await finish(cgroup, output, sources, outcome);
}

/**
 * Opens job-init's end of a stdio pipe through /proc while job-init waits for
 * our acknowledgement; it is our child and has not exec'd, so the pid is its.
 * (libuv opens every file close-on-exec, so no later job inherits it.)
 */
function openPipe(pid: number, fd: number): net.Socket {
  const ours = fs.openSync(`/proc/${pid}/fd/${fd}`, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  return new net.Socket({ fd: ours, readable: true, writable: false });
}

/**
 * SIGTERM to the job's process group, then SIGKILL to everything in its
 * cgroup once the grace period is over or sooner if the cgroup empties. The
 * group is signalled only while the leader is unreaped: until then its pid,
 * which is the group's id, cannot be reused. The grace period holds for the
 * whole job, not just the leader: a shell that dies at once on SIGTERM must
 * not cut short the cleanup of the program it started.
 */
async function terminate(leader: ChildProcess, cgroup: JobCgroup, graceMs: number, leaderGone: AbortSignal): Promise<void> {
  if (!leaderGone.aborted) {
    try {
      process.kill(-leader.pid!, 'SIGTERM');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
  const deadline = Date.now() + graceMs;
  for (let delay = 1; cgroup.populated() && Date.now() < deadline; delay = Math.min(delay * 2, 50)) {
    await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
  }
  await cgroup.killAll();
}

/**
 * Once the leader has exited: kill whatever it left in the cgroup (a
 * background child would otherwise hold the pipes open forever), drain the
 * pipes to EOF and remove the cgroup. Only then may the job be called ended,
 * so a reader that sees the end has every byte. Every step runs even when an
 * earlier one failed; the first failure is recorded.
 */
async function finish(cgroup: JobCgroup, output: Promise<void>, sources: readonly OutputSource[], outcome: JobOutcome): Promise<void> {
  const problems: string[] = [];
  const note = (what: string) => (err: unknown) => {
    problems.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
  };
  await cgroup.killAll().catch(note('kill'));
  const drained = await settlesWithin(output.catch(note('output')), PIPE_DRAIN_TIMEOUT_MS);
  if (!drained) {
    for (const { readable } of sources) readable.destroy();
    problems.push(`output pipes still open ${PIPE_DRAIN_TIMEOUT_MS} ms after the job's cgroup emptied: a process outside the cgroup holds them`);
  }
  try {
    outcome.memoryLimitHit = cgroup.memoryLimitHit();
  } catch (err) {
    note('memory events')(err);
  }
  await cgroup.remove().catch(note('remove cgroup'));
  if (problems.length > 0) outcome.supervisorError ??= problems.join('; ');
}
