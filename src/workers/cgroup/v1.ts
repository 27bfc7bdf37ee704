// cgroup v1: one hierarchy per controller (or per co-mounted set), found in
// /proc/self/mountinfo. A job gets a group in each hierarchy it needs, and
// job-init joins all of them before exec.
import fs from 'node:fs';
import path from 'node:path';
import type { JobLimits, ResourceUsage } from '../protocol.js';
import { physicalBlockDevices } from './block-devices.js';
import { parseBlkioServiceBytes, parseFlatKeyed } from './usage-stats.js';
import { CgroupError, JOB_GROUP_NAME, type CgroupDriver, type JobCgroup } from './driver.js';
import { childGroups, createGroups, ensureGroup, killFrozen, readControl, readControlIfPresent, readKeyed, readNumber, readPids, removeGroup, undoGroups, writeControl, type Freezer } from './cgroupfs.js';
import type { PreparedParent } from './driver.js';

const CFS_PERIOD_US = 100_000;
/**
 * Controllers every job needs: cpu and memory for its limits, freezer to kill
 * it (without it the only way is to kill pids read from cgroup.procs, which
 * races with forks and pid reuse).
 */
const ALWAYS = ['cpu', 'memory', 'freezer'] as const;
/**
 * Joined whenever mounted: cpuacct and blkio count CPU time and I/O bytes for
 * the job's usage figures; blkio also carries an I/O limit and pids a process
 * limit, and a job with either limit is refused when its controller is missing.
 */
const OPTIONAL = ['cpuacct', 'blkio', 'pids'] as const;

export class CgroupV1Driver implements CgroupDriver {
  readonly name = 'v1';
  readonly #mounts: Map<string, string>;

  constructor(
    readonly parent: string,
    mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8'),
  ) {
    this.#mounts = v1Mounts(mountinfo);
  }

  prepare(): PreparedParent {
    for (const controller of ALWAYS) this.#mount(controller);
    const controllers = this.#joined();
    const made: string[] = [];
    try {
      // Co-mounted controllers (cpu,cpuacct) share one hierarchy: made once.
      for (const dir of new Set(controllers.map((controller) => path.join(this.#mounts.get(controller)!, this.parent)))) made.push(...ensureGroup(dir));
    } catch (err) {
      undoGroups(made);
      throw err;
    }
    return { controllers, made };
  }

  create(jobId: string, limits: JobLimits): JobCgroup {
    if (limits.ioBps > 0) this.#mount('blkio');
    if (limits.pids > 0) this.#mount('pids');
    const dirs = this.#dirs(jobId, this.#joined());
    // Co-mounted controllers (cpu,cpuacct) share one directory: make each once.
    const unique = [...new Set(dirs.values())];
    const group = new V1JobCgroup(`/${this.parent}/${jobId}`, unique, dirs);
    createGroups(unique, () => {
      const cpu = dirs.get('cpu')!;
      writeControl(cpu, 'cpu.cfs_period_us', String(CFS_PERIOD_US));
      writeControl(cpu, 'cpu.cfs_quota_us', String(Math.round((limits.cpuPercent * CFS_PERIOD_US) / 100)));
      const memory = dirs.get('memory')!;
      writeControl(memory, 'memory.limit_in_bytes', String(limits.memoryBytes));
      // With swap accounting memsw caps memory+swap at the same figure (swap
      // off for the job); without it, swappiness 0 is the closest v1 offers.
      if (fs.existsSync(path.join(memory, 'memory.memsw.limit_in_bytes'))) {
        writeControl(memory, 'memory.memsw.limit_in_bytes', String(limits.memoryBytes));
      } else {
        writeControl(memory, 'memory.swappiness', '0');
      }
      if (limits.pids > 0) writeControl(dirs.get('pids')!, 'pids.max', String(limits.pids));
      if (limits.ioBps > 0) {
        const blkio = dirs.get('blkio')!;
        for (const device of physicalBlockDevices()) {
          writeControl(blkio, 'blkio.throttle.read_bps_device', `${device} ${limits.ioBps}`);
          writeControl(blkio, 'blkio.throttle.write_bps_device', `${device} ${limits.ioBps}`);
        }
      }
    });
    return group;
  }

  open(jobId: string): JobCgroup {
    const dirs = this.#dirs(jobId, this.#joined());
    return new V1JobCgroup(`/${this.parent}/${jobId}`, [...new Set(dirs.values())], dirs);
  }

  listJobs(): string[] {
    const ids = new Set<string>();
    for (const controller of this.#joined()) {
      for (const id of childGroups(path.join(this.#mounts.get(controller)!, this.parent), JOB_GROUP_NAME)) ids.add(id);
    }
    return [...ids];
  }

  /** The controllers a job's groups are made in. */
  #joined(): string[] {
    return [...ALWAYS, ...OPTIONAL].filter((c) => this.#mounts.has(c));
  }

  #dirs(jobId: string, controllers: readonly string[]): Map<string, string> {
    return new Map(controllers.map((controller) => [controller, path.join(this.#mount(controller), this.parent, jobId)]));
  }

  #mount(controller: string): string {
    const mount = this.#mounts.get(controller);
    if (!mount) {
      throw new CgroupError('CONTROLLER_UNAVAILABLE', `cgroup v1 controller "${controller}" is not mounted; it is needed ${controller === 'freezer' ? "to kill a job's processes without racing its forks" : "to enforce the job's limits"}`);
    }
    return mount;
  }
}

class V1JobCgroup implements JobCgroup {
  readonly membership: readonly string[];

  constructor(
    readonly path: string,
    readonly joinDirs: readonly string[],
    readonly dirs: ReadonlyMap<string, string>,
  ) {
    this.membership = [...dirs.keys()].map((controller) => `${controller}:${path}`);
  }

  populated(): boolean {
    return readPids(this.#freezer).length > 0;
  }

  /** Through the freezer (required on v1): no process is ever killed by a pid that may have been reused. */
  killAll(): Promise<void> {
    const dir = this.#freezer;
    const freezer: Freezer = {
      dir,
      freeze: () => writeControl(dir, 'freezer.state', 'FROZEN'),
      frozen: () => readControl(dir, 'freezer.state').trim() === 'FROZEN',
      thaw: () => writeControl(dir, 'freezer.state', 'THAWED'),
      pids: () => readPids(dir),
      populated: () => this.populated(),
    };
    return killFrozen(freezer);
  }

  #devices: string[] | undefined;

  get #freezer(): string {
    return this.dirs.get('freezer')!;
  }

  oomKilled(): boolean {
    return (readKeyed(this.dirs.get('memory')!, 'memory.oom_control', 'oom_kill') ?? 0) > 0;
  }

  usage(): ResourceUsage {
    const memory = this.dirs.get('memory')!;
    const cpuacct = this.dirs.get('cpuacct');
    const blkio = this.dirs.get('blkio');
    const throttledNs = parseFlatKeyed(readControl(this.dirs.get('cpu')!, 'cpu.stat')).get('throttled_time') ?? 0;
    // Read once per job: usage is asked for on every GetJob, and disks do not come and go mid-job.
    this.#devices ??= physicalBlockDevices();
    const io = blkio
      ? parseBlkioServiceBytes(readControlIfPresent(blkio, 'blkio.throttle.io_service_bytes'), this.#devices)
      : { read: 0, write: 0 };
    return {
      cpuUsec: cpuacct ? Math.round((readNumber(cpuacct, 'cpuacct.usage') ?? 0) / 1000) : 0,
      cpuThrottledUsec: Math.round(throttledNs / 1000),
      memoryBytes: readNumber(memory, 'memory.usage_in_bytes') ?? 0,
      memoryPeakBytes: readNumber(memory, 'memory.max_usage_in_bytes') ?? 0,
      ioReadBytes: io.read,
      ioWriteBytes: io.write,
      sampledAt: Date.now(),
    };
  }

  async remove(): Promise<void> {
    for (const dir of this.joinDirs) await removeGroup(dir);
  }
}

/** controller → mount point of every cgroup v1 hierarchy. */
export function v1Mounts(mountinfo: string): Map<string, string> {
  const mounts = new Map<string, string>();
  for (const line of mountinfo.split('\n')) {
    // <id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <fstype> <source> <super opts>
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const [fstype, , superOpts] = right.split(' ');
    if (fstype !== 'cgroup' || !superOpts) continue;
    const mountPoint = left.split(' ')[4]!;
    for (const opt of superOpts.split(',')) {
      if (!mounts.has(opt)) mounts.set(opt, mountPoint);
    }
  }
  return mounts;
}
