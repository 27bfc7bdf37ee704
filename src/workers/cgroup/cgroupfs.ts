// Small, synchronous helpers for cgroupfs. Reads and writes there are
// in-kernel and quick, so a job-supervisor thread does them inline rather than
// paying a thread-pool round trip for each.
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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

export function ensureGroup(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new CgroupError('CGROUP_SETUP_FAILED', `mkdir ${dir}: ${errnoMessage(err)}`);
  }
}

/**
 * rmdir, retried for a while on EBUSY: a killed process leaves its cgroup
 * only once the kernel has finished tearing it down, a moment after SIGKILL.
 */
export async function removeGroup(dir: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 1; ; delay = Math.min(delay * 2, 50)) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || Date.now() > deadline) {
        throw new CgroupError('CGROUP_SETUP_FAILED', `rmdir ${dir}: ${errnoMessage(err)}`);
      }
      await sleep(delay);
    }
  }
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

/** Polls `done` with a short backoff; cgroupfs has no cheap event for most states. */
export async function waitUntil(done: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 1; !done(); delay = Math.min(delay * 2, 50)) {
    if (Date.now() > deadline) throw new CgroupError('CGROUP_SETUP_FAILED', `timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(delay);
  }
}

export function errnoMessage(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code} (${e.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '')})` : String(err);
}
