// Where job groups go on a cgroup v2 host, given where the server runs.
//
// On a bare host the parent is taken from the hierarchy root. Under systemd
// with Delegate=yes (--cgroup-delegated) the server's own group, e.g.
// /system.slice/jobworkerd.service, is handed to it: it may make groups below
// it, and nothing above it is its business. v2's no-internal-process rule
// then forbids enabling controllers for job groups in a group that still
// holds the server, so the server first moves itself into a leaf,
// <own>/supervisor, and its jobs go under <own>/<parent>.
import fs from 'node:fs';
import path from 'node:path';
import { CgroupError } from './driver.js';
import { errnoMessage } from './cgroupfs.js';

/** The leaf the server moves itself into. */
export const SUPERVISOR_LEAF = 'supervisor';

export interface Placement {
  /** The job parent group relative to the mount root, without a leading slash. */
  parent: string;
  /** The group (relative to the mount root) the server must move into first; null when it may stay. */
  moveTo: string | null;
}

/**
 * Without delegation, `parent` is taken from the root. With it, a relative
 * `parent` is taken under the server's delegated group: its own group, or the
 * parent of its own group when that is already the supervisor leaf (a restart
 * inside the subtree, or systemd's DelegateSubgroup=). Either way, the server
 * moves out of the way when the job parent is its own group or below it.
 */
export function placeV2(parent: string, ownCgroup: string, delegated: boolean): Placement {
  const inLeaf = path.posix.basename(ownCgroup) === SUPERVISOR_LEAF;
  const subtree = delegated ? (inLeaf ? path.posix.dirname(ownCgroup) : ownCgroup) : '/';
  const jobParent = parent.startsWith('/') ? parent : path.posix.join(subtree, parent);
  const mustMove = ownCgroup !== '/' && !inLeaf && (jobParent === ownCgroup || jobParent.startsWith(`${ownCgroup}/`));
  return {
    parent: relative(jobParent),
    moveTo: mustMove ? relative(path.posix.join(ownCgroup, SUPERVISOR_LEAF)) : null,
  };
}

const relative = (group: string): string => group.replace(/^\/+/, '');

/** The process's cgroup v2 path from /proc/self/cgroup ("0::/system.slice/x.service"). */
export function ownCgroupV2(procSelfCgroup = fs.readFileSync('/proc/self/cgroup', 'utf8')): string {
  const line = procSelfCgroup.split('\n').find((l) => l.startsWith('0::'));
  if (!line) throw new CgroupError('CGROUP_SETUP_FAILED', 'no cgroup v2 entry ("0::") in /proc/self/cgroup');
  return line.slice(3);
}

/** Moves this whole process (every thread) into `group`, creating it. */
export function moveSelfInto(mountRoot: string, group: string): void {
  const dir = path.join(mountRoot, group);
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(process.pid));
  } catch (err) {
    throw new CgroupError('CGROUP_SETUP_FAILED', `move the server (pid ${process.pid}) into ${dir}: ${errnoMessage(err)}`);
  }
}
