// What tests check on the host itself: processes and cgroups left behind.
import fs from 'node:fs';
import path from 'node:path';

const HIERARCHIES = ['/sys/fs/cgroup', ...['unified', 'cpu', 'memory', 'freezer', 'blkio', 'pids'].map((c) => `/sys/fs/cgroup/${c}`)];

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

/** Running or stopped, not a zombie waiting for init to reap it. */
export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX] /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
