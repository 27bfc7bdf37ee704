// A real jobworkerd process (bin/jobworkerd.js) for the tests that need the
// binary itself: signals, crashes, restarts, a cgroup of its own.
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import { openChannel } from '../../src/client/channel.js';
import { removeParentTree } from './host.js';
import { HOST_VIEW_FLAGS, type Teardown } from './server.js';
import { repoRoot } from './paths.js';

export interface LogLine {
  msg: string;
  port?: number;
  level: number;
  jobId?: string;
  hadProcesses?: boolean;
  cgroup?: string;
  cgroupParent?: string;
  why?: string;
  err?: string;
  entries?: number;
}

export interface Daemon {
  process: ResultPromise<{ reject: false }>;
  port: number;
  /** Every log line so far: the ones up to "listening" when startDaemon resolves, later ones as they come. */
  log: LogLine[];
}

export interface DaemonOptions {
  /** Extra flags. */
  args?: string[];
  /** Supervisor threads; default 1. */
  workers?: number;
  /** A cgroup v2 group (relative to /sys/fs/cgroup) to start the daemon in, as systemd would. */
  cgroup?: string;
  /** Jobs run as root in the host's namespaces, to read the test's files (HOST_VIEW). */
  hostView?: boolean;
  /** Added to the daemon's environment. */
  env?: Record<string, string>;
  /** A command that runs node with the daemon's argv after its own (e.g. setpriv with its flags). */
  wrapper?: string[];
}

/** A jobworkerd that has been started, not necessarily serving yet. */
export interface LaunchedDaemon {
  process: ResultPromise<{ reject: false }>;
  /** Every log line so far. */
  log: LogLine[];
  /** Resolves with the first log line (so far or to come) with this message; rejects if the daemon's output ends first. */
  logged(msg: string): Promise<LogLine & { port?: number }>;
}

/** Starts a real jobworkerd on a free loopback port, without waiting for it; SIGKILLed in teardown if still running. */
export function launchDaemon(t: Teardown, pki: string, parent: string, options: DaemonOptions = {}): LaunchedDaemon {
  const argv = [
    path.join(repoRoot, 'bin/jobworkerd.js'),
    ...['--listen', '127.0.0.1:0', '--ca', `${pki}/ca-cert.pem`, '--cert', `${pki}/server-cert.pem`, '--key', `${pki}/server-key.pem`],
    ...['--cgroup-parent', parent, '--workers', String(options.workers ?? 1), '--data-dir', `${pki}/data`],
    ...(options.hostView ? HOST_VIEW_FLAGS : []),
    ...(options.args ?? []),
  ];
  // The shell joins the group and then becomes node: the daemon starts there, as under systemd.
  const env = options.env ?? {};
  const child = options.cgroup
    ? execa('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec node "$@"', `/sys/fs/cgroup/${options.cgroup}`, ...argv], { reject: false, env, forceKillAfterDelay: false })
    : options.wrapper
      ? execa(options.wrapper[0]!, [...options.wrapper.slice(1), 'node', ...argv], { reject: false, env, forceKillAfterDelay: false })
      : execa('node', argv, { reject: false, env, forceKillAfterDelay: false });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const log: LogLine[] = [];
  const waiters: { msg: string; resolve(line: LogLine): void }[] = [];
  let ended = false;
  const ends: (() => void)[] = [];
  readline
    .createInterface({ input: child.stdout! })
    .on('line', (line) => {
      const entry = JSON.parse(line) as LogLine;
      log.push(entry);
      for (const waiter of waiters.filter((w) => w.msg === entry.msg)) waiter.resolve(entry);
    })
    .on('close', () => {
      ended = true;
      for (const end of ends) end();
    });
  const logged = (msg: string): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      const seen = log.find((entry) => entry.msg === msg);
      if (seen) return resolve(seen);
      if (ended) return reject(new Error(`jobworkerd's log ended without "${msg}"`));
      waiters.push({ msg, resolve });
      ends.push(() => reject(new Error(`jobworkerd's log ended without "${msg}"`)));
    });
  return { process: child, log, logged };
}

/** A real jobworkerd on a free loopback port, once it serves; SIGKILLed in teardown if still running. */
export async function startDaemon(t: ExecutionContext, pki: string, parent: string, options: DaemonOptions = {}): Promise<Daemon> {
  const daemon = launchDaemon(t, pki, parent, options);
  try {
    const listening = await daemon.logged('jobworkerd listening');
    return { process: daemon.process, port: listening.port!, log: daemon.log };
  } catch {
    throw new Error(`jobworkerd exited before listening: ${(await daemon.process).stderr}`);
  }
}

/** A dev PKI (in a new directory under dir) and a cgroup parent name of the test's own, both removed in teardown. */
export async function daemonSetup(t: ExecutionContext, dir = '/tmp'): Promise<{ pki: string; parent: string }> {
  const pki = fs.mkdtempSync(path.join(dir, 'jobworker-bin-pki-'));
  t.teardown(() => fs.rmSync(pki, { recursive: true, force: true }));
  await execa('node', [path.join(repoRoot, 'dist/certs/make-dev-pki.js'), pki]);
  const parent = `jobworker-test-bin-${process.pid}-${++daemons}`;
  t.teardown(() => removeParentTree(parent));
  return { pki, parent };
}
let daemons = 0;

export function adminClient(t: ExecutionContext, pki: string, port: number, role: 'admin' | 'viewer' = 'admin') {
  const client = openChannel({ server: `localhost:${port}`, ca: `${pki}/ca-cert.pem`, cert: `${pki}/client-${role}-cert.pem`, key: `${pki}/client-${role}-key.pem` });
  t.teardown(() => client.close());
  return client;
}
