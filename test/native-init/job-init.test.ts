import { readFileSync } from 'node:fs';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { execa, execaSync } from 'execa';
import { detectDriver } from '../../src/workers/cgroup/select.js';
import { childrenOf, hasCommand, scratchDir } from '../helpers/host.js';
import { jobInitPath } from '../helpers/paths.js';

// Deadline for a single job-init run: a failure guard, never a wait.
const timeout = 10_000;
const v2 = detectDriver('/sys/fs/cgroup') === 'v2';
/** Registered either way: what does not apply to this host's cgroups (or tools) is reported as skipped. */
const onV1 = v2 ? test.skip : test.serial;
const withPerl = hasCommand('perl') ? test.serial : test.skip;
/** util-linux's setpriv, which can set securebits (busybox's cannot). */
const withSetpriv = hasCommand('setpriv') && execaSync('setpriv', ['--help'], { reject: false }).stdout.includes('--securebits') ? test : test.skip;
/** What job-init writes on its status channel just before it execs the command. */
const EXEC = 'exec\n';

/** Runs job-init the way the supervisor does: fd 3 is the status pipe. */
const runJobInit = (args: readonly string[]) =>
  execa(jobInitPath, args, {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    reject: false,
    stripFinalNewline: false,
    timeout,
  });

/**
 * A cgroup of our own, removed when the test ends: in the v1 hierarchy of
 * `controller`, or in the v2 tree (where there is one hierarchy for all).
 */
const makeCgroup = async (t: { teardown(fn: () => Promise<void>): void }, controller: string, name = `jobworker-test-init-${process.pid}`) => {
  const dir = v2 ? `/sys/fs/cgroup/${name}` : `/sys/fs/cgroup/${controller}/${name}`;
  await mkdir(dir, { recursive: true });
  // The group is empty again once the job has exited, so rmdir succeeds.
  t.teardown(() => rmdir(dir));
  return { name, dir };
};

/** The path /proc/self/cgroup shows for one v1 controller, or the v2 line's. */
const cgroupPathOf = (procSelfCgroup: string, controller: string) =>
  procSelfCgroup.match(v2 ? /^0::(.*)$/m : new RegExp(`^\\d+:[^:]*\\b${controller}\\b[^:]*:(.*)$`, 'm'))?.[1];

test('exec: a command that starts says "exec" on the status pipe, which then closes', async (t) => {
  const result = await runJobInit(['--', 'true']);
  t.is(result.stdio[3], EXEC);
});

test("exec: the command's stdout and exit code come through unchanged", async (t) => {
  const result = await runJobInit(['--', 'sh', '-c', 'echo out; exit 7']);
  t.is(result.stdout, 'out\n');
  t.is(result.exitCode, 7);
});

test('exec: a missing command is reported on the status pipe and exits 127', async (t) => {
  const result = await runJobInit(['--', 'nosuchcmd-xyz']);
  t.is(result.stdio[3], `${EXEC}exec\t2\tNo such file or directory\tnosuchcmd-xyz\n`);
  t.is(result.exitCode, 127);
  t.regex(result.stderr, /job-init: exec nosuchcmd-xyz: No such file or directory/);
});

/** Runs job-init with entries (each NUL-ended, as the supervisor sends them) on fd 4, its --env-fd, and an environment of its own. */
async function runWithEnv(t: ExecutionContext, entries: string, args: readonly string[]) {
  const file = path.join(scratchDir(t, '/tmp'), 'env');
  await writeFile(file, entries);
  // The shell opens the file on fd 4 and becomes job-init.
  return execa('/bin/sh', ['-c', 'exec "$0" --env-fd 4 "$@" 4<"$ENV_FILE"', jobInitPath, ...args], {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    env: { JOB_INIT_OWN: 'not for the command', ENV_FILE: file },
    extendEnv: false,
    reject: false,
    stripFinalNewline: false,
    timeout,
  });
}

test("env: the command's environment is what --env-fd holds, none of job-init's own", async (t) => {
  const result = await runWithEnv(t, 'GREETING=hello world\0EMPTY=\0PATH=/usr/bin:/bin\0', ['--', 'env']);
  t.is(result.stdio[3], EXEC);
  t.is(result.stdout, 'GREETING=hello world\nEMPTY=\nPATH=/usr/bin:/bin\n');
});

test("env: without --env-fd the command's environment is empty", async (t) => {
  const result = await runJobInit(['--', 'env']);
  t.is(result.stdout, '');
});

test("env: the command is looked up in the job's PATH", async (t) => {
  const result = await runWithEnv(t, 'PATH=/nonexistent\0', ['--', 'env']);
  t.is(result.stdio[3], `${EXEC}exec\t2\tNo such file or directory\tenv\n`);
});

test('env: an entry without its NUL is refused before anything runs', async (t) => {
  const result = await runWithEnv(t, 'A=1\0B=2', ['--', 'echo', 'ran']);
  t.is(result.exitCode, 127);
  t.is(result.stdout, '');
  t.is(result.stdio[3], 'env\t22\tInvalid argument\tan entry without its NUL\n');
});

withSetpriv('user: securebits the server was started with are cleared, so setuid leaves no capability behind', async (t) => {
  // With no-setuid-fixup, setuid from root would keep every permitted capability (and NO_NEW_PRIVS lets a file-capability binary use them).
  const status = ['--user', '65534:65534', '--', 'grep', '-E', '^Cap(Prm|Eff)', '/proc/self/status'];
  const options = { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], reject: false, stripFinalNewline: false, timeout } as const;
  const cleared = await execa('setpriv', ['--securebits', '+no_setuid_fixup', jobInitPath, ...status], options);
  t.is(cleared.stdio[3], EXEC);
  t.is(cleared.stdout, 'CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n');
  // Locked bits cannot be cleared: the start fails rather than run the job with them.
  const locked = await execa('setpriv', ['--securebits', '+no_setuid_fixup,+no_setuid_fixup_locked', jobInitPath, ...status], options);
  t.is(locked.exitCode, 127);
  t.is(locked.stdio[3], 'capabilities\t1\tOperation not permitted\tsecurebits\n');
  t.is(locked.stdout, '');
  // Locked off, as systemd's SecureBits=keep-caps-locked hardening leaves them: nothing to clear, the job starts.
  const lockedOff = await execa('setpriv', ['--securebits', '+keep_caps_locked,+no_setuid_fixup_locked', jobInitPath, ...status], options);
  t.is(lockedOff.stdio[3], EXEC);
  t.is(lockedOff.stdout, 'CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n');
});

test.serial('cgroup: the command starts inside the cgroup it was given', async (t) => {
  const group = await makeCgroup(t, 'pids');
  const result = await runJobInit(['--cgroup', group.dir, '--', 'cat', '/proc/self/cgroup']);
  t.is(result.stdio[3], EXEC);
  t.true(cgroupPathOf(result.stdout, 'pids')?.endsWith(`/${group.name}`), result.stdout);
});

onV1('cgroup: the command starts inside every cgroup it was given (v1: one hierarchy per controller)', async (t) => {
  const pids = await makeCgroup(t, 'pids');
  const cpu = await makeCgroup(t, 'cpu');
  const result = await runJobInit(['--cgroup', pids.dir, '--cgroup', cpu.dir, '--', 'cat', '/proc/self/cgroup']);
  t.is(result.stdio[3], EXEC);
  t.true(cgroupPathOf(result.stdout, 'pids')?.endsWith(`/${pids.name}`), result.stdout);
  t.true(cgroupPathOf(result.stdout, 'cpu')?.endsWith(`/${cpu.name}`), result.stdout);
});

onV1('cgroup check: a /proc/self/cgroup past 16 KiB (long paths in many v1 hierarchies) is read whole, and every group is checked', async (t) => {
  // Twelve levels of 250-character names: each line of /proc/self/cgroup
  // carries the ~3 KB path, in every hierarchy joined (cpuset left out: a
  // new cpuset group takes no process until its cpus and mems are set).
  const deep = Array.from({ length: 12 }, (_, i) => `${String(i).padStart(3, '0')}${'x'.repeat(247)}`).join('/');
  const controllers = ['cpu', 'cpuacct', 'memory', 'pids', 'freezer', 'blkio', 'devices'].filter((c) => cgroupPathOf(readFileSync('/proc/self/cgroup', 'utf8'), c) !== undefined);
  const groups = await Promise.all(controllers.map(async (controller) => ({ controller, ...(await makeDeepCgroup(t, controller, `jobworker-test-init-deep-${process.pid}/${deep}`)) })));
  const expect = groups.flatMap(({ controller, name }) => ['--expect-cgroup', `${controller}:/${name}`]);
  const result = await runJobInit([...groups.flatMap(({ dir }) => ['--cgroup', dir]), ...expect, '--', 'cat', '/proc/self/cgroup']);
  t.true(Buffer.byteLength(result.stdout) > 16 * 1024, `the table is ${Buffer.byteLength(result.stdout)} bytes`);
  t.is(result.stdio[3], EXEC, result.stderr);
  for (const { controller, name } of groups) t.true(cgroupPathOf(result.stdout, controller)?.endsWith(`/${name}`), controller);
});

/** A nested cgroup, every level removed when the test ends (innermost first). */
async function makeDeepCgroup(t: { teardown(fn: () => Promise<void>): void }, controller: string, name: string) {
  const root = `/sys/fs/cgroup/${controller}`;
  await mkdir(path.join(root, name), { recursive: true });
  const levels = name.split('/').map((_, i, all) => path.join(root, ...all.slice(0, i + 1)));
  t.teardown(async () => {
    for (const level of levels.reverse()) await rmdir(level);
  });
  return { name, dir: path.join(root, name) };
}

test.serial('cgroup: a cgroup that cannot be joined is reported and the command never runs', async (t) => {
  const dir = v2 ? `/sys/fs/cgroup/jobworker-test-init-missing-${process.pid}` : `/sys/fs/cgroup/pids/jobworker-test-init-missing-${process.pid}`;
  const result = await runJobInit(['--cgroup', dir, '--', 'echo', 'ran']);
  t.is(result.stdio[3], `cgroup\t2\tNo such file or directory\t${dir}\n`);
  t.is(result.exitCode, 127);
  t.is(result.stdout, '');
});

test('session: the command leads its own session and process group', async (t) => {
  const result = await runJobInit(['--', 'cat', '/proc/self/stat']);
  // Fields after "(comm)": state ppid pgrp session ...
  const pid = Number(result.stdout.split(' ')[0]);
  const [, , pgrp, session] = result.stdout.slice(result.stdout.lastIndexOf(')') + 2).split(' ');
  t.true(pid > 0);
  t.is(Number(pgrp), pid);
  t.is(Number(session), pid);
});

// A parent that ignores SIGTERM and SIGINT and blocks SIGTERM and SIGUSR1,
// then execs its arguments: exec keeps both, so its child inherits them.
const ignoreAndBlockSignals = [
  '-MPOSIX',
  '-e',
  '$SIG{TERM} = $SIG{INT} = "IGNORE"; sigprocmask(SIG_BLOCK, POSIX::SigSet->new(SIGTERM, SIGUSR1)) or die; exec @ARGV or die',
];
const readSignalMasks = ['grep', '-E', '^Sig(Ign|Blk):', '/proc/self/status'];
const noSignals = '0000000000000000';

/** SigIgn and SigBlk of readSignalMasks run under ignoreAndBlockSignals, with or without job-init. */
const signalMasks = async (throughJobInit: boolean) => {
  const command = throughJobInit ? [jobInitPath, '--', ...readSignalMasks] : readSignalMasks;
  const result = await execa('perl', [...ignoreAndBlockSignals, ...command], {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    timeout,
  });
  return Object.fromEntries(result.stdout.split('\n').map((line) => line.split(/:\s+/)));
};

withPerl('signals: signals the parent ignored are back to their default action', async (t) => {
  t.not((await signalMasks(false))['SigIgn'], noSignals, 'the fixture should ignore signals');
  t.is((await signalMasks(true))['SigIgn'], noSignals);
});

withPerl('signals: signals the parent blocked are unblocked', async (t) => {
  t.not((await signalMasks(false))['SigBlk'], noSignals, 'the fixture should block signals');
  t.is((await signalMasks(true))['SigBlk'], noSignals);
});

/** The fds `ls -l /proc/self/fd` reports, with their targets (busybox's ls shows none for the directory it reads). */
const parseFdListing = (listing: string) =>
  listing
    .split('\n')
    .map((line) => line.match(/^l\S+ .* (\d+)(?: -> (.*))?$/))
    .filter((match) => match !== null)
    .map(([, fd, target]) => ({ fd: Number(fd), target }));

const onlyStdioReachesTheCommand = test.macro({
  async exec(t, statusFd: number, inheritedFds: number) {
    const stdio: ['ignore', 'pipe', 'pipe', ...Array<'pipe'>] = ['ignore', 'pipe', 'pipe', ...Array<'pipe'>(inheritedFds).fill('pipe')];
    const result = await execa(jobInitPath, ['--status-fd', String(statusFd), '--', 'ls', '-l', '/proc/self/fd'], {
      stdio,
      reject: false,
      stripFinalNewline: false,
      timeout,
    });
    t.is(result.exitCode, 0, result.stderr);
    t.is(result.stdio[statusFd], EXEC);
    const fds = parseFdListing(result.stdout);
    // fd 3 is the directory ls itself opened: everything inherited is gone.
    t.deepEqual(
      fds.map(({ fd }) => fd),
      [0, 1, 2, 3],
      result.stdout,
    );
    if (fds[3]!.target !== undefined) t.regex(fds[3]!.target, /^\/proc\/\d+\/fd$/);
  },
  title: (_, statusFd: number, inheritedFds: number) =>
    `fds: with status fd ${statusFd} among fds 3..${2 + inheritedFds}, the command gets only stdio`,
});

test(onlyStdioReachesTheCommand, 3, 2);
test(onlyStdioReachesTheCommand, 5, 4);

const rejectsUsage = test.macro({
  async exec(t, args: readonly string[], problem: RegExp) {
    const result = await runJobInit([...args]);
    t.is(result.exitCode, 125);
    t.regex(result.stderr, problem);
    t.is(result.stdout, '');
  },
  title: (_, args: readonly string[]) =>
    `usage: job-init ${args.length > 0 ? args.join(' ') : '(no arguments)'} exits 125 naming the problem`,
});

test(rejectsUsage, [], /missing '--' and a command/);
test(rejectsUsage, ['echo', 'ran'], /missing '--' before the command echo/);
test(rejectsUsage, ['--cgroup', '/tmp', '--'], /missing command after '--'/);
test(rejectsUsage, ['--bogus', '--', 'echo', 'ran'], /unknown option --bogus/);
test(rejectsUsage, ['--cgroup'], /missing value for --cgroup/);
test(rejectsUsage, ['--status-fd', 'three', '--', 'echo', 'ran'], /--status-fd needs an fd number, not three/);
test(rejectsUsage, ['--namespaces', 'pid,bogus', '--', 'echo', 'ran'], /--namespaces takes a list of pid, mount, net, uts and ipc, not pid,bogus/);
test(rejectsUsage, ['--user', '1000', '--', 'echo', 'ran'], /--user takes UID:GID, not 1000/);
test(rejectsUsage, ['--user', '4294967295:0', '--', 'echo', 'ran'], /--user takes UID:GID, not 4294967295:0/);
test(rejectsUsage, ['--tmp-size', '0', '--', 'echo', 'ran'], /--tmp-size takes a number of bytes, not 0/);
test(rejectsUsage, ['--hostname', 'x', '--', 'echo', 'ran'], /--hostname needs --namespaces uts/);
test(rejectsUsage, ['--rootfs', '/srv', '--', 'echo', 'ran'], /--rootfs needs --namespaces mount/);
test(rejectsUsage, ['--namespaces', 'mount', '--rootfs', 'srv', '--', 'echo', 'ran'], /--rootfs takes an absolute path, not srv/);

test('usage: a usage error is also reported on the status pipe', async (t) => {
  const result = await runJobInit(['--bogus', '--', 'echo', 'ran']);
  t.is(result.stdio[3], 'usage\t22\tInvalid argument\t\n');
});

test('pid namespace: the job ends as its command did, exit code or signal, through the process outside', async (t) => {
  const exited = await runJobInit(['--namespaces', 'pid', '--', 'sh', '-c', 'echo $$; exit 7']);
  t.is(exited.stdout, '2\n');
  t.is(exited.exitCode, 7);
  const killed = await runJobInit(['--namespaces', 'pid', '--', 'sh', '-c', 'kill -SEGV $$']);
  t.is(killed.signal, 'SIGSEGV');
});

test('pid namespace: with --report-fd the init reports how the job ended (its wait status) the moment it knows', async (t) => {
  const run = (script: string) =>
    execa(jobInitPath, ['--namespaces', 'pid', '--report-fd', '4', '--', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'], reject: false, stripFinalNewline: false, timeout });
  const exited = await run('exit 7');
  t.is(exited.stdio[4], `exit\t${7 << 8}\n`);
  t.is(exited.exitCode, 7);
  const killed = await run('kill -TERM $$');
  t.is(killed.stdio[4], 'exit\t15\n');
  t.is(killed.signal, 'SIGTERM');
  // The command itself never holds the report fd.
  const fds = await run('ls /proc/self/fd');
  t.deepEqual(fds.stdout.trim().split('\n').map(Number).sort(), [0, 1, 2, 3]);
});

test('pid namespace: if its init is killed on its own, the process outside ends too, as the init did', async (t) => {
  const child = execa(jobInitPath, ['--namespaces', 'pid', '--', 'sleep', '100'], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], reject: false, timeout });
  // The status pipe closes at the exec of sleep ("exec", then EOF): by then the init is there.
  for await (const _ of child.stdio[3] as AsyncIterable<unknown>);
  const [init] = childrenOf(child.pid!);
  process.kill(init!, 'SIGKILL');
  const result = await child;
  t.is(result.signal, 'SIGKILL');
  t.false(result.timedOut);
});

test('job-init is linked statically: no loader runs in it, whatever environment it is started with', async (t) => {
  const elf = await readFile(jobInitPath);
  // ELF64: program headers at e_phoff (0x20), e_phnum (0x38) of e_phentsize (0x36) bytes; PT_INTERP = 3.
  const offset = Number(elf.readBigUInt64LE(0x20));
  const types = Array.from({ length: elf.readUInt16LE(0x38) }, (_, i) => elf.readUInt32LE(offset + i * elf.readUInt16LE(0x36)));
  t.false(types.includes(3), 'no program interpreter (ld.so)');
});

test('cgroup check: a group /proc/self/cgroup does not name fails the start before the command runs', async (t) => {
  const result = await runJobInit(['--expect-cgroup', 'pids:/jobworker-not-this-one', '--', 'echo', 'ran']);
  t.is(result.exitCode, 127);
  t.is(result.stdout, '');
  t.regex(result.stdio[3] as string, /^cgroupcheck\t\d+\t[^\t]+\tpids:\/jobworker-not-this-one\n$/);
});

test('oom score: the command does not inherit the parent\'s OOM score adjustment', async (t) => {
  // A parent with a score of its own, as a systemd unit's OOMScoreAdjust= gives.
  // (+500: this sandbox's kernel answers EIO to negative scores.)
  const result = await execa(
    'sh',
    ['-c', `echo 500 > /proc/self/oom_score_adj && exec ${jobInitPath} -- cat /proc/self/oom_score_adj`],
    { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], reject: false, timeout },
  );
  t.is(result.exitCode, 0, result.stderr);
  t.is(result.stdout.trim(), '0');
});

test('stdio pipes: the command gets real pipes on fds 1 and 2 once the supervisor acknowledges', async (t) => {
  const child = execa(jobInitPath, ['--stdio', 'pipes', '--', 'sh', '-c', 'test -p /proc/self/fd/1 && test -p /proc/self/fd/2 && echo piped > /dev/stdout'], {
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    buffer: false,
    reject: false,
    timeout,
  });
  const status = child.stdio[3] as import('node:net').Socket;
  const ready = await new Promise<string>((resolve) => status.once('data', (chunk: Buffer) => resolve(chunk.toString())));
  const [word, out, err] = ready.trim().split('\t');
  t.is(word, 'ready');
  const { openSync, createReadStream } = await import('node:fs');
  const stdout = createReadStream('', { fd: openSync(`/proc/${child.pid}/fd/${out}`, 'r') });
  const stderrFd = openSync(`/proc/${child.pid}/fd/${err}`, 'r');
  status.write('k');
  let text = '';
  for await (const chunk of stdout) text += String(chunk);
  const result = await child;
  (await import('node:fs')).closeSync(stderrFd);
  t.is(result.exitCode, 0);
  t.is(text, 'piped\n');
});
