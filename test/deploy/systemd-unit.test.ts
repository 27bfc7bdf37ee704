// deploy/jobworkerd.service: valid for systemd, and saying what the server needs.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { execa } from 'execa';
import { JobStatus } from '../../src/gen/jobworker/v1/jobworker.js';
import { adminClient, daemonSetup, startDaemon } from '../helpers/daemon.js';
import { repoRoot } from '../helpers/paths.js';
import { unary, waitForEnd } from '../helpers/server.js';

const UNIT = path.join(repoRoot, 'deploy/jobworkerd.service');
const text = fs.readFileSync(UNIT, 'utf8');
const setting = (key: string): string | undefined => new RegExp(`^${key}=(.*)$`, 'm').exec(text)?.[1];

test('systemd unit: systemd-analyze verify finds nothing to say', async (t) => {
  // It warns (exit 0) about unknown keys and bad values, so any output is a failure.
  const result = await execa('systemd-analyze', ['verify', UNIT], { reject: false });
  t.is(result.exitCode, 0);
  t.is(result.stdout + result.stderr, '');
});

test('systemd unit: the cgroup is delegated, a stop reaches the server first, and a crash takes the jobs with it', (t) => {
  t.is(setting('Delegate'), 'yes');
  t.is(setting('KillMode'), 'mixed');
  t.is(setting('Restart'), 'on-failure');
  t.is(setting('TasksMax'), 'infinity', 'jobs have their own pids limits; the unit must not cap them all together');
  // Longer than the longest grace a stop may ask for at shutdown (--stop-grace default) plus cgroup cleanup.
  t.true(Number(setting('TimeoutStopSec')) >= 60);
});

test('systemd unit: ExecStart runs jobworkerd with --cgroup-delegated and only flags it knows', async (t) => {
  const execStart = /^ExecStart=((?:.*\\\n)*.*)$/m.exec(text)![1]!.replace(/\\\n/g, ' ');
  const flags = execStart.match(/--[a-z-]+/g)!;
  t.true(flags.includes('--cgroup-delegated'));
  const help = (await execa('node', [path.join(repoRoot, 'bin/jobworkerd.js'), '--help'])).stdout;
  for (const flag of flags) t.true(help.includes(`${flag} `), `jobworkerd --help lists ${flag}`);
});

// ---------------------------------------------------------------------------
// What the unit asks of the server, tried without systemd: a notify socket of
// the test's own, and the unit's capability bounding set applied by setpriv.

/**
 * Listens on a notify socket as systemd does (a Unix datagram socket, the
 * sender's credentials passed) and prints one JSON line per message: Node
 * itself cannot receive datagrams on a Unix socket.
 */
const NOTIFY_LISTENER = `
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(sys.argv[1])
print(json.dumps({"listening": True}), flush=True)
while True:
    data, ancillary, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", payload[:12])[0]
    print(json.dumps({"pid": pid, "fields": data.decode().split("\\n")}), flush=True)
`;

interface Notification {
  pid: number;
  fields: string[];
}

test('Type=notify: READY=1 from the server itself once it serves, STOPPING=1 when told to stop', async (t) => {
  t.is(setting('Type'), 'notify');
  const { pki, parent } = await daemonSetup(t);
  const socket = path.join(pki, 'notify');
  const listener = execa('python3', ['-c', NOTIFY_LISTENER, socket], { reject: false });
  t.teardown(() => {
    listener.kill();
  });
  const messages = readline.createInterface({ input: listener.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<Notification> => JSON.parse((await messages.next()).value as string) as Notification;
  /** The next message that says `field`: systemd-notify also sends BARRIER=1 of its own after each. */
  const nextWith = async (field: string): Promise<Notification> => {
    for (;;) {
      const message = await next();
      if (message.fields.includes(field)) return message;
    }
  };
  t.deepEqual(await next(), { listening: true } as unknown as Notification);

  const daemon = await startDaemon(t, pki, parent, { env: { NOTIFY_SOCKET: socket } });
  const ready = await nextWith('READY=1');
  // Sent by a child, but with the server's pid as its credentials: systemd takes it as the main process's.
  t.is(ready.pid, daemon.process.pid!);
  t.true(ready.fields.includes(`STATUS=serving on port ${daemon.port}`), ready.fields.join(' '));

  daemon.process.kill('SIGTERM');
  const stopping = await nextWith('STOPPING=1');
  t.is(stopping.pid, daemon.process.pid!);
  t.is((await daemon.process).exitCode, 0);
});

test('Type=notify: a server that cannot tell systemd it is ready stops, exit 1, rather than wait to be timed out', async (t) => {
  const { pki, parent } = await daemonSetup(t);
  const daemon = await startDaemon(t, pki, parent, { env: { NOTIFY_SOCKET: path.join(pki, 'nobody-listens-here') } });
  const result = await daemon.process;
  t.is(result.exitCode, 1);
  t.regex(result.stderr, /^jobworkerd: cannot tell systemd it is ready \(NOTIFY_SOCKET is set, systemd-notify failed; see the log\)$/m);
});

test('hardening: under the unit\'s capability bounding set and NoNewPrivileges, isolated jobs and root jobs run and stop', async (t) => {
  t.is(setting('NoNewPrivileges'), 'yes');
  const caps = setting('CapabilityBoundingSet')!.split(' ').map((cap) => `+${cap.replace(/^CAP_/, '').toLowerCase()}`);
  const { pki, parent } = await daemonSetup(t);
  const daemon = await startDaemon(t, pki, parent, {
    wrapper: ['setpriv', '--no-new-privs', '--bounding-set', `-all,${caps.join(',')}`, '--inh-caps', '-all'],
    args: ['--allow-root-jobs'],
  });
  const client = adminClient(t, pki, daemon.port);
  // Every namespace, mounts, a private /dev made with mknod, lo up, nobody.
  const isolated = await unary(client, 'createJob', { command: 'sh', args: ['-c', 'id -u; cat /proc/1/comm; ls /sys/class/net; echo x > /dev/null && echo devnull'], limits: { maxMemoryMb: 64, maxPids: 32 } });
  const { job, output } = await waitForEnd(client, isolated.job!.id);
  t.is(job.status, JobStatus.JOB_STATUS_COMPLETED, `${job.message} ${output.stderr.toString()}`);
  t.is(output.stdout.toString(), '65534\njob-init\nlo\ndevnull\n');
  // Root jobs still get what job-init lets them keep (CHOWN, DAC_OVERRIDE…): all of it is in the unit's set.
  const root = await unary(client, 'createJob', { command: 'sh', args: ['-c', 'grep CapEff /proc/self/status'], isolation: { user: 'root' } });
  const rootEnd = await waitForEnd(client, root.job!.id);
  t.is(rootEnd.job.status, JobStatus.JOB_STATUS_COMPLETED, rootEnd.job.message);
  const effective = BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(rootEnd.output.stdout.toString())![1]}`);
  // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT AUDIT_WRITE SETFCAP
  const kept = [0, 1, 3, 4, 5, 6, 7, 8, 10, 18, 29, 31].reduce((mask, cap) => mask | (1n << BigInt(cap)), 0n);
  t.is(effective, kept, `CapEff ${effective.toString(16)}`);
  // A stop: SIGTERM through job-init, then the cgroup kill.
  const sleeper = await unary(client, 'createJob', { command: 'sleep', args: ['600'] });
  t.is((await unary(client, 'stopJob', { id: sleeper.job!.id, graceMs: 100 })).job!.status, JobStatus.JOB_STATUS_STOPPED);
  daemon.process.kill('SIGTERM');
  t.is((await daemon.process).exitCode, 0);
});
