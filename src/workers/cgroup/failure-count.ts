// Counts the cgroup operations that fail (for jobworker_cgroup_failures_total),
// around any driver: the errors themselves go on to the caller unchanged. A
// group that is gone (ENOENT: a usage read racing the job's teardown) is not
// a failure of the cgroup system, and is not counted.
import type { CgroupOp } from '../thread-stats.js';
import { CgroupError, type CgroupDriver, type JobCgroup } from './driver.js';

export function countingFailures(driver: CgroupDriver, failed: (op: CgroupOp) => void): CgroupDriver {
  const count = (op: CgroupOp, err: unknown): void => {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') failed(op);
  };
  const sync = <T>(op: CgroupOp, run: () => T): T => {
    try {
      return run();
    } catch (err) {
      count(op, err);
      throw err;
    }
  };
  const async = (op: CgroupOp, run: () => Promise<void>): Promise<void> =>
    run().catch((err: unknown) => {
      count(op, err);
      throw err;
    });
  const counted = (group: JobCgroup): JobCgroup => ({
    path: group.path,
    joinDirs: group.joinDirs,
    membership: group.membership,
    populated: () => sync('read', () => group.populated()),
    killAll: () => async('kill', () => group.killAll()),
    oomKilled: () => sync('read', () => group.oomKilled()),
    usage: () => sync('read', () => group.usage()),
    remove: () => async('remove', () => group.remove()),
  });
  return {
    name: driver.name,
    prepare: () => driver.prepare(),
    create: (jobId, limits) => {
      try {
        return counted(driver.create(jobId, limits));
      } catch (err) {
        // A limit whose controller the host lacks is a refusal, not a failure.
        if (!(err instanceof CgroupError && err.code === 'CONTROLLER_UNAVAILABLE')) count('create', err);
        throw err;
      }
    },
    open: (jobId) => counted(driver.open(jobId)),
    listJobs: () => driver.listJobs(),
  };
}
