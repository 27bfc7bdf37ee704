// Helpers for cgroupfs, shared by both drivers. Reads and writes there are
// in-kernel and quick, so a job-supervisor thread does them synchronously
// rather than paying a thread-pool round trip for each; what has to wait (a
// group to freeze or empty, an rmdir the kernel still calls busy) polls with
// a short backoff, as cgroupfs has no cheap event for most states.
import fs from 'node:fs';
import path from 'node:path';
import { after, pollWithBackoff } from '../../common/backoff.js';
import { CgroupError } from './driver.js';
import { parseFlatKeyed } from './usage-stats.js';

export function writeControl(dir: string, file: string, value: string): void {
  try {
    fs.writeFileSync(path.join(dir, file), value);
  } catch (err) {
    throw new CgroupError('CGROUP_SETUP_FAILED', `write ${JSON.stringify(value)} to ${path.join(dir, file)}: ${errnoMessage(err)}`);
  }
}

export function readControl(dir: string, file: string): string {
  return fs.readFileSync(path.join(dir, file), 'utf8');
}

/** The file's text, or '' when the kernel offers no such file (a controller that is not enabled). */
export function readControlIfPresent(dir: string, file: string): string {
  try {
    return readControl(dir, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

/** Value of `key` in a flat-keyed file such as memory.events ("oom_kill 3"); undefined when either is missing. */
export function readKeyed(dir: string, file: string, key: string): number | undefined {
  let text: string;
  try {
    text = readControl(dir, file);
  } catch {
    return undefined;
  }
  return parseFlatKeyed(text).get(key);
}

/** A file holding one number (memory.current); undefined when the kernel has no such file. */
export function readNumber(dir: string, file: string): number | undefined {
  const text = readControlIfPresent(dir, file);
  return text === '' ? undefined : Number(text);
}

export function readPids(dir: string): number[] {
  const text = readControl(dir, 'cgroup.procs');
  const pids: number[] = [];
  for (const line of text.split('\n')) if (line !== '') pids.push(Number(line));
  return pids;
}

/** Names of the child groups of `dir` that match `pattern`; none when dir is missing. */
export function childGroups(dir: string, pattern: RegExp): string[] {
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && pattern.test(entry.name))
      .map((entry) => entry.name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

export function makeGroup(dir: string): void {
  try {
    fs.mkdirSync(dir);
  } catch (err) {
    throw new CgroupError('CGROUP_SETUP_FAILED', `mkdir ${dir}: ${errnoMessage(err)}`);
  }
}

/** mkdir -p; returns the groups it made, outermost first (none when `dir` was there). */
export function ensureGroup(dir: string): string[] {
  let first: string | undefined;
  try {
    first = fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new CgroupError('CGROUP_SETUP_FAILED', `mkdir ${dir}: ${errnoMessage(err)}`);
  }
  if (first === undefined) return [];
  const made = [dir];
  while (made[0] !== first) made.unshift(path.dirname(made[0]!));
  return made;
}

/**
 * Makes the groups, in order, then runs `configure` (limits and the like).
 * If anything fails, the groups made are removed again, newest first, and
 * the first error is what is thrown: a job that could not be set up leaves
 * no group behind.
 */
export function createGroups(dirs: readonly string[], configure: () => void): void {
  const made: string[] = [];
  try {
    for (const dir of dirs) {
      makeGroup(dir);
      made.push(dir);
    }
    configure();
  } catch (err) {
    undoGroups(made);
    throw err;
  }
}

/**
 * After a failure: removes the groups just made (removeEmptyGroups), as far
 * as it can. Whatever goes wrong here stays quiet: the original error is
 * the one worth reporting.
 */
export function undoGroups(made: readonly string[]): void {
  try {
    removeEmptyGroups(made);
  } catch {
    // See above.
  }
}

/** A process in uninterruptible sleep dies only when its I/O returns; a kill gives up after this. */
export const KILL_TIMEOUT_MS = 30_000;
/** How long one round of the freeze loop waits for the group to freeze, then to empty. */
const FREEZE_ROUND_MS = 1_000;

/** What the freeze→kill→thaw loop needs of a group: v1's freezer hierarchy or v2's cgroup.freeze. */
export interface Freezer {
  /** For messages. */
  readonly dir: string;
  freeze(): void;
  frozen(): boolean;
  thaw(): void;
  pids(): number[];
  populated(): boolean;
}

/**
 * SIGKILLs every process in the group without racing its forks: frozen, the
 * group cannot fork while its pids are read and killed, and no pid can be
 * reused in between. A group that will not freeze (a task in uninterruptible
 * sleep) is thawed again and the loop retries until KILL_TIMEOUT_MS, then
 * fails with CGROUP_KILL_FAILED. The group is always thawed after a round;
 * if that fails too, the round's own error is the one thrown.
 */
export async function killFrozen(group: Freezer): Promise<void> {
  const deadline = after(KILL_TIMEOUT_MS);
  let refused: CgroupError | undefined;
  while (group.populated()) {
    if (performance.now() > deadline()) {
      const why = refused ? `the group could not be frozen (${refused.message})` : `processes survived SIGKILL: ${group.pids().join(' ')}`;
      throw new CgroupError('CGROUP_KILL_FAILED', `${group.dir} still had processes after ${KILL_TIMEOUT_MS} ms: ${why}`);
    }
    let failure: { error: unknown } | undefined;
    try {
      group.freeze();
      // Not frozen in time: thaw, and try again.
      if (await pollWithBackoff(() => group.frozen(), after(FREEZE_ROUND_MS))) killPids(group.pids());
    } catch (err) {
      // A cgroupfs write the kernel refused this time is retried until the deadline.
      if (err instanceof CgroupError) refused = err;
      else failure = { error: err };
    }
    try {
      group.thaw();
    } catch (err) {
      failure ??= { error: err };
    }
    if (failure) throw asKillFailure(failure.error);
    await pollWithBackoff(() => !group.populated(), after(FREEZE_ROUND_MS));
  }
}

/** A cgroupfs write that failed during a kill (a freeze, a thaw, cgroup.kill) is a kill failure. */
export function asKillFailure(err: unknown): unknown {
  return err instanceof CgroupError && err.code === 'CGROUP_SETUP_FAILED' ? new CgroupError('CGROUP_KILL_FAILED', err.message) : err;
}

/** Resolves once no process is left in the group; CGROUP_KILL_FAILED after KILL_TIMEOUT_MS. */
export async function waitEmpty(dir: string, populated: () => boolean): Promise<void> {
  if (!(await pollWithBackoff(() => !populated(), after(KILL_TIMEOUT_MS)))) {
    throw new CgroupError('CGROUP_KILL_FAILED', `${dir} still had processes after ${KILL_TIMEOUT_MS} ms: processes survived SIGKILL`);
  }
}

/**
 * Removes those of `dirs` that are empty, deepest first, so a group goes
 * before the group above it. One still in use (a child left in it, a
 * process) stays, and so, then, does every group above it: in each
 * hierarchy on its own.
 */
export function removeEmptyGroups(dirs: readonly string[]): void {
  const deepestFirst = [...dirs].sort((a, b) => b.split('/').length - a.split('/').length);
  for (const dir of deepestFirst) {
    try {
      fs.rmdirSync(dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EBUSY' && code !== 'ENOTEMPTY') throw new CgroupError('CGROUP_SETUP_FAILED', `rmdir ${dir}: ${errnoMessage(err)}`);
    }
  }
}

/**
 * rmdir, retried for a while on EBUSY: a killed process leaves its cgroup
 * only once the kernel has finished tearing it down, a moment after SIGKILL.
 */
export async function removeGroup(dir: string, timeoutMs = 30_000): Promise<void> {
  let busy: unknown;
  const removed = await pollWithBackoff(() => {
    try {
      fs.rmdirSync(dir);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return true;
      if (code !== 'EBUSY') throw new CgroupError('CGROUP_SETUP_FAILED', `rmdir ${dir}: ${errnoMessage(err)}`);
      busy = err;
      return false;
    }
  }, after(timeoutMs));
  if (!removed) throw new CgroupError('CGROUP_SETUP_FAILED', `rmdir ${dir}: ${errnoMessage(busy)}`);
}

/** Sends SIGKILL to each pid, ignoring ones that are already gone. */
export function killPids(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}

export function errnoMessage(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code} (${e.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '')})` : String(err);
}
