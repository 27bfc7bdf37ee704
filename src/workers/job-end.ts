// A job's end on its supervisor thread: a stop (SIGTERM, the grace period,
// SIGKILL through the cgroup) and the teardown once its leader has exited.
import { pollWithBackoff } from '../common/backoff.js';
import { messageOf } from '../common/error-message.js';
import { settlesWithin } from '../common/settle-within.js';
import type { JobCgroup } from './cgroup/driver.js';
import type { JobInitProcess } from './job-init-process.js';
import type { OutputSource } from './pipe-pump.js';
import type { JobOutcome } from './protocol.js';

/** How long the pipes may stay open after every process of the job is gone. */
const PIPE_DRAIN_TIMEOUT_MS = 10_000;

export interface StopState {
  /** performance.now() time after which everything left in the cgroup is killed. */
  deadline: number;
  running: Promise<void> | undefined;
}

/**
 * SIGTERM to the job's process group, then SIGKILL to everything in its
 * cgroup once the grace period is over or sooner if the cgroup empties. The
 * group is signalled only while the leader is unreaped: until then its pid,
 * which is the group's id, cannot be reused. The grace period holds for the
 * whole job, not just the leader: a shell that dies at once on SIGTERM must
 * not cut short the cleanup of the program it started.
 */
export async function terminate(leader: Pick<JobInitProcess, 'pid'>, cgroup: JobCgroup, stop: StopState, leaderGone: AbortSignal): Promise<void> {
  if (!leaderGone.aborted) {
    try {
      process.kill(-leader.pid, 'SIGTERM');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
  // The deadline is read again at every wait: a later stop may bring it forward.
  await pollWithBackoff(() => !cgroup.populated(), () => stop.deadline);
  await cgroup.killAll();
}

/**
 * Once the leader has exited: kill whatever it left in the cgroup (a
 * background child would otherwise hold the pipes open forever), drain the
 * pipes to EOF and remove the cgroup. Only then may the job be called ended,
 * so a reader that sees the end has every byte. Every step runs even when an
 * earlier one failed; the first failure is recorded.
 */
export async function finish(cgroup: JobCgroup, output: Promise<void>, sources: readonly OutputSource[], outcome: JobOutcome, onKilled?: () => void): Promise<void> {
  const problems: string[] = [];
  const note = (what: string) => (err: unknown) => {
    problems.push(`${what}: ${messageOf(err)}`);
  };
  await cgroup.killAll().catch(note('kill'));
  onKilled?.();
  const drained = await settlesWithin(output.catch(note('output')), PIPE_DRAIN_TIMEOUT_MS);
  if (!drained) {
    for (const { readable } of sources) readable.destroy();
    problems.push(`output pipes still open ${PIPE_DRAIN_TIMEOUT_MS} ms after the job's cgroup emptied: a process outside the cgroup holds them`);
  }
  // Read once every process is gone, so a kill that landed as the leader
  // exited is counted, and before the group and its counters are removed.
  try {
    outcome.oomKilled = cgroup.oomKilled();
    outcome.usage = { ...cgroup.usage(), memoryBytes: 0 };
  } catch (err) {
    note('final usage')(err);
  }
  await cgroup.remove().catch(note('remove cgroup'));
  if (problems.length > 0) outcome.supervisorError ??= problems.join('; ');
}

