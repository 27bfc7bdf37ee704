// cgroup v2: one unified hierarchy. Job groups live under one parent group
// whose subtree_control hands them the controllers.
import fs from 'node:fs';
import path from 'node:path';
import type { JobLimits, ResourceUsage } from '../protocol.js';
import { physicalBlockDevices } from './block-devices.js';
import { parseFlatKeyed, parseIoStat } from './usage-stats.js';
import { CgroupError, JOB_GROUP_NAME, type CgroupDriver, type JobCgroup } from './driver.js';
import { asKillFailure, childGroups, createGroups, ensureGroup, errnoMessage, killFrozen, readControl, readControlIfPresent, readKeyed, readNumber, readPids, removeGroup, undoGroups, waitEmpty, writeControl } from './cgroupfs.js';
import type { PreparedParent } from './driver.js';

const CPU_PERIOD_US = 100_000;
const WANTED = ['cpu', 'memory', 'io', 'pids'] as const;

export class CgroupV2Driver implements CgroupDriver {
  readonly name = 'v2';
  readonly #parentDir: string;

  constructor(
    readonly mountRoot: string,
    readonly parent: string,
  ) {
    this.#parentDir = path.join(mountRoot, parent);
  }

  prepare(): PreparedParent {
    if (!fs.existsSync(path.join(this.mountRoot, 'cgroup.controllers'))) {
      throw new CgroupError('CGROUP_SETUP_FAILED', `${this.mountRoot} is not a cgroup v2 mount`);
    }
    const made = ensureGroup(this.#parentDir);
    try {
      // Each level hands controllers down through subtree_control. The root
      // group is exempt from the no-internal-process rule; the parent group
      // itself holds no process (unless someone put one there: then what
      // cannot be enabled stays off, and create() names it).
      const relative = path.relative(this.mountRoot, this.#parentDir).split(path.sep);
      let dir = this.mountRoot;
      for (const part of relative) {
        enableControllers(dir);
        dir = path.join(dir, part);
      }
      enableControllers(this.#parentDir);
      return { controllers: this.#delegated(), made };
    } catch (err) {
      undoGroups(made);
      throw err;
    }
  }

  create(jobId: string, limits: JobLimits): JobCgroup {
    // Read from the kernel on every create, not remembered from prepare():
    // prepare runs on one pool thread, and the file is what is enforced.
    const delegated = this.#delegated();
    this.#require(delegated, 'cpu');
    this.#require(delegated, 'memory');
    if (limits.ioBps > 0) this.#require(delegated, 'io');
    if (limits.pids > 0) this.#require(delegated, 'pids');
    const dir = path.join(this.#parentDir, jobId);
    createGroups([dir], () => {
      writeControl(dir, 'cpu.max', `${Math.round((limits.cpuPercent * CPU_PERIOD_US) / 100)} ${CPU_PERIOD_US}`);
      writeControl(dir, 'memory.max', String(limits.memoryBytes));
      if (fs.existsSync(path.join(dir, 'memory.swap.max'))) writeControl(dir, 'memory.swap.max', '0');
      // An OOM kill takes the whole job, not one process of it: a job with
      // a process missing is broken in ways its owner cannot see.
      writeControl(dir, 'memory.oom.group', '1');
      if (limits.pids > 0) writeControl(dir, 'pids.max', String(limits.pids));
      if (limits.ioBps > 0) {
        for (const device of physicalBlockDevices()) {
          writeControl(dir, 'io.max', `${device} rbps=${limits.ioBps} wbps=${limits.ioBps}`);
        }
      }
    });
    return new V2JobCgroup(`/${this.parent}/${jobId}`, dir);
  }

  listJobs(): string[] {
    return childGroups(this.#parentDir, JOB_GROUP_NAME);
  }

  open(jobId: string): JobCgroup {
    return new V2JobCgroup(`/${this.parent}/${jobId}`, path.join(this.#parentDir, jobId));
  }

  /** Controllers the parent hands down to job groups. */
  #delegated(): string[] {
    return readControl(this.#parentDir, 'cgroup.subtree_control').trim().split(/\s+/).filter(Boolean);
  }

  #require(delegated: readonly string[], controller: string): void {
    if (!delegated.includes(controller)) {
      throw new CgroupError(
        'CONTROLLER_UNAVAILABLE',
        `cgroup v2 controller "${controller}" is not enabled in ${this.#parentDir}/cgroup.subtree_control; it is needed to enforce the job's limits`,
      );
    }
  }
}

/** Enables in `dir`'s subtree_control every wanted controller `dir` has; ignores the rest. */
function enableControllers(dir: string): void {
  const available = readControl(dir, 'cgroup.controllers').trim().split(/\s+/);
  for (const controller of WANTED) {
    if (!available.includes(controller)) continue;
    try {
      fs.writeFileSync(path.join(dir, 'cgroup.subtree_control'), `+${controller}`);
    } catch (err) {
      // EBUSY: dir has processes of its own (no-internal-process rule);
      // ENOTSUP: it has, and a threaded controller (cpu) enabled beside
      // them made it a thread root, where domain controllers cannot go. The
      // controller stays off either way, and create() names it if a job
      // needs it.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EBUSY' && code !== 'ENOTSUP') {
        throw new CgroupError('CGROUP_SETUP_FAILED', `enable ${controller} in ${dir}/cgroup.subtree_control: ${errnoMessage(err)}`);
      }
    }
  }
}

class V2JobCgroup implements JobCgroup {
  readonly joinDirs: readonly string[];
  readonly membership: readonly string[];
  #peakSeen = 0;
  #devices: string[] | undefined;

  constructor(
    readonly path: string,
    readonly dir: string,
  ) {
    this.joinDirs = [dir];
    this.membership = [`:${path}`];
  }

  populated(): boolean {
    return readKeyed(this.dir, 'cgroup.events', 'populated') === 1;
  }

  async killAll(): Promise<void> {
    if (!this.populated()) return;
    if (!fs.existsSync(`${this.dir}/cgroup.kill`)) {
      // Before Linux 5.14: frozen, the group cannot fork between reading its pids and killing them.
      return killFrozen({
        dir: this.dir,
        freeze: () => writeControl(this.dir, 'cgroup.freeze', '1'),
        frozen: () => readKeyed(this.dir, 'cgroup.events', 'frozen') === 1,
        thaw: () => writeControl(this.dir, 'cgroup.freeze', '0'),
        pids: () => readPids(this.dir),
        populated: () => this.populated(),
      });
    }
    // The kernel kills every process, forks included, at once.
    try {
      writeControl(this.dir, 'cgroup.kill', '1');
    } catch (err) {
      throw asKillFailure(err);
    }
    await waitEmpty(this.dir, () => this.populated());
  }

  oomKilled(): boolean {
    return (readKeyed(this.dir, 'memory.events', 'oom_kill') ?? 0) > 0;
  }

  usage(): ResourceUsage {
    const cpu = parseFlatKeyed(readControl(this.dir, 'cpu.stat'));
    const memoryBytes = readNumber(this.dir, 'memory.current') ?? 0;
    // memory.peak is Linux 5.19+; before that the most seen at any reading is the best there is.
    this.#peakSeen = Math.max(this.#peakSeen, readNumber(this.dir, 'memory.peak') ?? memoryBytes);
    // Read once per job: usage is asked for on every GetJob, and disks do not come and go mid-job.
    this.#devices ??= physicalBlockDevices();
    const io = parseIoStat(readControlIfPresent(this.dir, 'io.stat'), this.#devices);
    return {
      cpuUsec: cpu.get('usage_usec') ?? 0,
      cpuThrottledUsec: cpu.get('throttled_usec') ?? 0,
      memoryBytes,
      memoryPeakBytes: this.#peakSeen,
      ioReadBytes: io.read,
      ioWriteBytes: io.write,
      sampledAt: Date.now(),
    };
  }

  async remove(): Promise<void> {
    await removeGroup(this.dir);
  }
}
