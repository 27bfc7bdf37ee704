// Starting job-init for a job: its command line (src/native-init/job-init.c
// says what each option does), the job's environment on its control fd, and
// the read ends of the job's stdio pipes once job-init announces them.
import fs from 'node:fs';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { JobCgroup } from './cgroup/driver.js';
import type { OutputSource } from './pipe-pump.js';
import { StreamId, type RunJobTask } from './protocol.js';

/** job-init's --env-fd and --report-fd: the fd after its status channel, a socketpair. */
export const CONTROL_FD = 4;

/** The job's environment for job-init's --env-fd: NAME=value entries, each ending in a NUL. */
export function sendEnvironment(channel: Duplex, env: Record<string, string>): void {
  // A job-init that dies before reading it says why on its status channel; the broken pipe adds nothing.
  channel.on('error', () => undefined);
  // end(): our half closes, job-init reads EOF; its half stays open for the end report.
  channel.end(Buffer.from(Object.entries(env).map(([name, value]) => `${name}=${value}\0`).join('')));
}

/** job-init's options (see src/native-init/job-init.c) for this job. */
export function jobInitOptions(task: RunJobTask, cgroup: JobCgroup): string[] {
  const { isolation } = task;
  const options = ['--stdio', 'pipes', ...(task.stdin ? ['--stdin', 'pipe'] : []), ...cgroup.joinDirs.flatMap((dir) => ['--cgroup', dir]), ...cgroup.membership.flatMap((line) => ['--expect-cgroup', line])];
  const namespaces = [
    ...(isolation.pidNamespace ? ['pid', 'uts', 'ipc'] : []),
    ...(isolation.mountNamespace ? ['mount'] : []),
    ...(isolation.network === 'none' ? ['net'] : []),
  ];
  if (namespaces.length > 0) options.push('--namespaces', namespaces.join(','));
  if (isolation.pidNamespace) options.push('--hostname', task.jobId.replaceAll('-', '').slice(0, 12));
  if (isolation.mountNamespace) {
    // tmpfs pages count against the job's memory limit anyway: a bigger /tmp could never fill.
    options.push('--tmp-size', String(task.limits.memoryBytes), ...task.hide.flatMap((hidden) => ['--hide', hidden]));
    if (isolation.rootfs !== null) options.push('--rootfs', isolation.rootfs);
  }
  options.push('--user', `${isolation.uid}:${isolation.gid}`, '--workdir', task.workdir, '--env-fd', String(CONTROL_FD));
  // Only an init (PID namespace) has anything to report; without one the leader is the job.
  if (isolation.pidNamespace) options.push('--report-fd', String(CONTROL_FD));
  return options;
}

/** Both or neither: a half-opened pair is closed again before the error goes up. */
export function openPipes(pid: number, stdoutFd: number, stderrFd: number): [number, number] {
  const opened: number[] = [];
  try {
    for (const fd of [stdoutFd, stderrFd]) opened.push(openPipeEnd(pid, fd));
  } catch (err) {
    for (const fd of opened) fs.closeSync(fd);
    throw err;
  }
  return [opened[0]!, opened[1]!];
}

export function readersOf([stdout, stderr]: [number, number]): OutputSource[] {
  return [
    { stream: StreamId.Stdout, readable: new net.Socket({ fd: stdout, readable: true, writable: false }) },
    { stream: StreamId.Stderr, readable: new net.Socket({ fd: stderr, readable: true, writable: false }) },
  ];
}

/**
 * The job's stdin, from the write end job-init announced (opened as the
 * output pipes are): a socket that takes the job's input, held back as the
 * pipe fills.
 */
export function openStdin(pid: number, fd: number): net.Socket {
  return new net.Socket({ fd: openPipeEnd(pid, fd, fs.constants.O_WRONLY), readable: false, writable: true });
}

/**
 * Opens job-init's end of a stdio pipe through /proc while job-init waits for
 * our acknowledgement; it is our child and has not exec'd, so the pid is its.
 * (libuv opens every file close-on-exec, so no later job inherits it.)
 */
function openPipeEnd(pid: number, fd: number, mode: number = fs.constants.O_RDONLY): number {
  return fs.openSync(`/proc/${pid}/fd/${fd}`, mode | fs.constants.O_NONBLOCK);
}

