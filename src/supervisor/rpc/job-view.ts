// A job as the API shows it (the proto's Job), from its record.
import { DependencyCondition, JobStatus, Network, type Dependency as DependencyView, type Isolation, type Job } from '../../gen/jobworker/v1/jobworker.js';
import type { JobIsolation } from '../../workers/protocol.js';
import type { Dependency, JobRecord, JobState } from '../jobs/record.js';

export const STATUS: Record<JobState, JobStatus> = {
  WAITING: JobStatus.JOB_STATUS_WAITING,
  RUNNING: JobStatus.JOB_STATUS_RUNNING,
  COMPLETED: JobStatus.JOB_STATUS_COMPLETED,
  FAILED: JobStatus.JOB_STATUS_FAILED,
  STOPPED: JobStatus.JOB_STATUS_STOPPED,
  TIMED_OUT: JobStatus.JOB_STATUS_TIMED_OUT,
};

/** `node`: the fleet node the job runs on, when this server is one. */
export function toJob(record: JobRecord, node = ''): Job {
  return {
    id: record.id,
    command: record.command,
    args: [...record.args],
    limits: {
      maxCpuPercent: record.limits.cpuPercent,
      maxMemoryMb: record.limits.memoryBytes / (1024 * 1024),
      maxIoBps: record.limits.ioBps,
      maxPids: record.limits.pids,
    },
    status: STATUS[record.state],
    pid: record.pid,
    cgroup: record.cgroup,
    startedAt: record.startedAt ?? undefined,
    endedAt: record.endedAt ?? undefined,
    exitCode: record.exitCode ?? undefined,
    signal: record.signal ?? '',
    oomKilled: record.oomKilled,
    owner: record.owner,
    message: record.message,
    outputBytes: record.log.length,
    outputStart: record.log.start,
    outputProblem: record.log.problem,
    usage: record.usage ? { ...record.usage, sampledAt: new Date(record.usage.sampledAt) } : undefined,
    isolation: record.isolation ? isolationOf(record.isolation) : undefined,
    workdir: record.workdir ?? '',
    node,
    name: record.name ?? '',
    labels: { ...record.labels },
    timeoutMs: record.timeoutMs ?? 0,
    stdin: record.stdin,
    createdAt: record.createdAt,
    after: toDependencies(record.after),
  };
}

/** Dependencies as Job.after shows them (by id). */
export function toDependencies(after: readonly Dependency[]): DependencyView[] {
  return after.map(({ id, condition }) => ({ job: id, condition: condition === 'any' ? DependencyCondition.DEPENDENCY_CONDITION_ANY : DependencyCondition.DEPENDENCY_CONDITION_OK }));
}

/** Job.after (by id) as a record holds it. */
export function fromDependencies(after: readonly DependencyView[]): Dependency[] {
  return after.map(({ job, condition }) => ({ id: job, condition: condition === DependencyCondition.DEPENDENCY_CONDITION_ANY ? 'any' : 'ok' }));
}

function isolationOf(isolation: JobIsolation): Isolation {
  return {
    pidNamespace: isolation.pidNamespace,
    mountNamespace: isolation.mountNamespace,
    network: isolation.network === 'host' ? Network.NETWORK_HOST : Network.NETWORK_NONE,
    user: `${isolation.uid}:${isolation.gid}`,
    rootfs: isolation.rootfs ?? '',
  };
}
