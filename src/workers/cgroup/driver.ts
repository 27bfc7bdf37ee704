// What a job supervisor needs from a cgroup driver; v1.ts and v2.ts provide it.
import type { JobLimits, ResourceUsage, StartFailureCode } from '../protocol.js';

export interface CgroupDriver {
  readonly name: 'v1' | 'v2';
  /** Creates the parent group(s) and enables controllers. */
  prepare(): PreparedParent;
  /** Creates the job's group(s) with the limits in place. Throws CgroupError. */
  create(jobId: string, limits: JobLimits): JobCgroup;
  /** The group(s) of a job created earlier, to kill and remove them. */
  open(jobId: string): JobCgroup;
  /** Ids of every job group under the parent, in any hierarchy. */
  listJobs(): string[];
}

export interface PreparedParent {
  /** Controllers usable for job groups. */
  controllers: string[];
  /** Groups prepare() made (the parent, and any level above it that was missing), outermost first. */
  made: string[];
}

export interface JobCgroup {
  /** Relative to the hierarchy root, e.g. "/jobworker/<id>". */
  readonly path: string;
  /** Every directory whose cgroup.procs job-init must join. */
  readonly joinDirs: readonly string[];
  /**
   * What /proc/self/cgroup must say once they are joined, one
   * "<controller>:<path>" per hierarchy ("" as controller: the v2 line),
   * for job-init to check before anything runs.
   */
  readonly membership: readonly string[];
  /** Some process is still in the group. */
  populated(): boolean;
  /** SIGKILLs every process in the group, repeatedly, until none is left; CGROUP_KILL_FAILED when some will not die. */
  killAll(): Promise<void>;
  /** The group's OOM killer has killed at least one of its processes. */
  oomKilled(): boolean;
  /** What the group's processes have used so far. Throws if the group is gone. */
  usage(): ResourceUsage;
  /** Removes the group(s); the group must be empty (killAll first). */
  remove(): Promise<void>;
}

/** Job groups are named by the job's UUID; anything else under the parent is not ours. */
export const JOB_GROUP_NAME = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class CgroupError extends Error {
  constructor(
    readonly code: Extract<StartFailureCode, 'CONTROLLER_UNAVAILABLE' | 'CGROUP_SETUP_FAILED' | 'CGROUP_KILL_FAILED'>,
    message: string,
  ) {
    super(message);
    this.name = 'CgroupError';
  }
}
