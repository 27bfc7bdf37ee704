// What tests check on the host itself: processes and cgroups left behind;
// and small filesystems to fill up.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { execa } from 'execa';
import { detectDriver } from '../../src/workers/cgroup/select.js';

const HIERARCHIES = ['/sys/fs/cgroup', ...['unified', 'cpu', 'cpuacct', 'memory', 'freezer', 'blkio', 'pids'].map((c) => `/sys/fs/cgroup/${c}`)];

/** Job groups under `parent`, in the v2 tree and every v1 hierarchy. */
export function groupsUnder(parent: string): string[] {
  const found: string[] = [];
  for (const root of HIERARCHIES) {
    const dir = path.join(root, parent);
    if (!fs.existsSync(dir)) continue;
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) found.push(path.join(dir, entry.name));
  }
  return found;
}

/** A command on this host's PATH (the cgroup v2 VM has busybox and node, no perl or util-linux). */
export function hasCommand(name: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => {
    try {
      fs.accessSync(path.join(dir, name), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Running or stopped, not a zombie waiting for init to reap it. */
export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX] /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Pids of the processes with `arg` as one word of their command line (a script, a unique argument), zombies left out. */
export function processesOf(arg: string): number[] {
  const found: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').includes(arg) && alive(Number(name))) found.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

/** A process's children (the threads' other than the main one's are not counted). */
export function childrenOf(pid: number): number[] {
  return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
}

/** Pids in a job's cgroup (its path as in Job.cgroup), from the v2 tree or the v1 freezer hierarchy. */
export function pidsIn(cgroup: string): number[] {
  const procs = path.join('/sys/fs/cgroup', detectDriver('/sys/fs/cgroup') === 'v2' ? '' : 'freezer', cgroup, 'cgroup.procs');
  return fs.readFileSync(procs, 'utf8').split('\n').filter(Boolean).map(Number);
}

/** Polls a condition on the host (a process gone, a counter moved) that no event announces. */
export async function waitUntil(done: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Kills whatever still runs in the groups under `parent` and removes them and
 * the parent, in every hierarchy: the cleanup after a daemon a test SIGKILLed
 * (its jobs outlive it, by design), so that a failed test leaves nothing.
 */
export async function removeParentTree(parent: string): Promise<void> {
  for (const root of HIERARCHIES) {
    const dir = path.join(root, parent);
    if (!fs.existsSync(dir)) continue;
    for (const group of groupsUnder(parent).filter((g) => g.startsWith(`${dir}/`))) {
      const pids = (): number[] => fs.readFileSync(path.join(group, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
      await waitUntil(() => {
        for (const pid of pids()) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone already
          }
        }
        return pids().length === 0;
      }, `${group} to empty`);
      await waitUntil(() => {
        try {
          fs.rmdirSync(group);
          return true;
        } catch {
          return false;
        }
      }, `${group} to be removed`);
    }
    try {
      fs.rmdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/** A fresh tmpfs of `size` (e.g. "4m") for the test, unmounted and removed in teardown. */
export async function tmpfs(t: ExecutionContext, size: string): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-tmpfs-'));
  t.teardown(async () => {
    await execa('umount', ['-l', dir], { reject: false });
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await execa('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'jobworker-test', dir]);
  return dir;
}

/** A new directory under `parent` (outside /tmp when a job must see it), removed in teardown. */
export function scratchDir(t: Pick<ExecutionContext, 'teardown'>, parent: string): string {
  const dir = fs.mkdtempSync(path.join(parent, 'jobworker-test-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}
