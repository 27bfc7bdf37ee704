// Runs on a job-supervisor thread (piscina). One `runJob` call supervises one
// job from cgroup creation to cgroup removal; a thread runs many at once, so
// nothing here may block the thread for long.
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import { execa } from 'execa';
import { settlesWithin } from '../common/settle-within.js';
import { CgroupError, type JobCgroup } from './cgroup/driver.js';
import { detectDriver, driverFor } from './cgroup/select.js';
import { parseStatusRecord } from './init-status.js';
import { pumpOutput, type OutputSource } from './pipe-pump.js';
import type { JobOutcome, MainToTask, PrepareResult, PrepareTask, RunJobTask, TaskToMain } from './protocol.js';
import { StreamId } from './ring-layout.js';
import { RingWriter } from './ring-writer.js';

/** How long the pipes may stay open after every process of the job is gone. */
const PIPE_DRAIN_TIMEOUT_MS = 10_000;

export function prepare(task: PrepareTask): PrepareResult {
  const driver = task.driver === 'auto' ? detectDriver(task.mountRoot) : task.driver;
  const controllers = driverFor({ driver, parent: task.parent, mountRoot: task.mountRoot }).prepare();
  return { driver, controllers };
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
  const post = (message: TaskToMain): void => task.port.postMessage(message);

  let cgroup: JobCgroup;
  try {
    cgroup = driverFor(task.cgroup).create(task.jobId, task.limits);
  } catch (err) {
    ring.close();
    task.port.close();
    if (!(err instanceof CgroupError)) throw err;
    outcome.startFailure = { code: err.code, message: err.message };
    return outcome;
  }

  const child = execa(task.jobInitPath, [...cgroup.joinDirs.flatMap((dir) => ['--cgroup', dir]), '--', task.command, ...task.args], {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    buffer: false,
    reject: false,
    extendEnv: false,
    env: task.env,
    // The job ends through its cgroup, never through execa's kill helpers.
    cleanup: false,
    forceKillAfterDelay: false,
  });
  const leader = child as unknown as ChildProcess;
  const exited = new Promise<void>((resolve) => {
    leader.once('exit', (code, signal) => {
      outcome.exitCode = code;
      outcome.signal = signal;
      resolve();
    });
  });
  const spawnError = new Promise<Error>((resolve) => leader.once('error', resolve));
  const sources = [
    { stream: StreamId.Stdout, readable: child.stdout! },
    { stream: StreamId.Stderr, readable: child.stderr! },
  ];
  const output = pumpOutput(sources, ring);
  // execa's own promise settles after the pipes close; it carries nothing we
  // need, but it must not go unobserved.
  void child.catch(() => undefined);

  const leaderGone = new AbortController();
  void exited.then(() => leaderGone.abort());
  let stopping: Promise<void> | undefined;
  const stop = (graceMs: number): void => {
    outcome.stopRequested = true;
    stopping ??= terminate(leader, cgroup, graceMs, leaderGone.signal).catch((err: unknown) => {
      // finish() kills the cgroup again and records what went wrong there.
      outcome.supervisorError ??= `stop: ${err instanceof Error ? err.message : String(err)}`;
    });
  };
  let pendingStop: number | undefined;
  task.port.on('message', (message: MainToTask) => {
    if (message.type !== 'stop') throw new Error(`unknown message from main: ${JSON.stringify(message)}`);
    if (outcome.started) stop(message.graceMs);
    else pendingStop = message.graceMs;
  });

  const status = await Promise.race([readAll(child.stdio[3] as Readable), spawnError]);
  if (status instanceof Error) {
    // Nothing ran: there is no process to wait for and no output to drain.
    await cgroup.remove().catch(() => undefined);
    ring.close();
    task.port.close();
    outcome.startFailure = { code: 'SPAWN_FAILED', message: `spawn ${task.jobInitPath}: ${status.message}` };
    return outcome;
  }
  if (status.length > 0) {
    await exited;
    await finish(cgroup, output, sources, ring, outcome);
    task.port.close();
    outcome.startFailure = { code: 'EXEC_FAILED', message: parseStatusRecord(status, task.command) };
    return outcome;
  }

  outcome.started = true;
  post({ type: 'started', pid: leader.pid!, cgroup: cgroup.path });
  if (pendingStop !== undefined) stop(pendingStop);

  await exited;
  await stopping;
  await finish(cgroup, output, sources, ring, outcome);
  task.port.close();
  return outcome;
}

/**
 * SIGTERM to the job's process group, then after the grace period SIGKILL to
 * everything in its cgroup. The group is signalled only while the leader is
 * unreaped: until then its pid, which is the group's id, cannot be reused.
 */
async function terminate(leader: ChildProcess, cgroup: JobCgroup, graceMs: number, leaderGone: AbortSignal): Promise<void> {
  if (!leaderGone.aborted) {
    try {
      process.kill(-leader.pid!, 'SIGTERM');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
    await sleep(graceMs, undefined, { signal: leaderGone }).catch(() => undefined);
  }
  await cgroup.killAll();
}

/**
 * Once the leader has exited: kill whatever it left in the cgroup (a
 * background child would otherwise hold the pipes open forever), drain the
 * pipes to EOF, close the ring, and remove the cgroup. Only then may the job
 * be called ended, so a reader that sees the end has every byte.
 */
async function finish(
  cgroup: JobCgroup,
  output: Promise<void>,
  sources: readonly OutputSource[],
  ring: RingWriter,
  outcome: JobOutcome,
): Promise<void> {
  try {
    await cgroup.killAll();
    if (!(await settlesWithin(output, PIPE_DRAIN_TIMEOUT_MS))) {
      for (const { readable } of sources) readable.destroy();
      outcome.supervisorError = `output pipes still open ${PIPE_DRAIN_TIMEOUT_MS} ms after the job's cgroup emptied: a process outside the cgroup holds them`;
    }
    outcome.memoryLimitHit = cgroup.memoryLimitHit();
    await cgroup.remove();
  } catch (err) {
    outcome.supervisorError ??= err instanceof Error ? err.message : String(err);
  } finally {
    ring.close();
  }
}

function readAll(readable: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    readable.on('data', (chunk: Buffer) => chunks.push(chunk));
    readable.once('end', () => resolve(Buffer.concat(chunks)));
    readable.once('error', reject);
  });
}
