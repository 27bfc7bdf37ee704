// job-init as build/spawn.node starts it (no fork of the server): what
// job-init may rely on (fds 0-2 /dev/null, its two channels on 3 and 4 and
// nothing else of ours, an empty environment, cwd /), a command behind it
// with no signal ignored or blocked, its exit reported once with code or
// signal, signals sent only while it is unreaped, and a start that fails
// throwing errno's code.
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { JobInitProcess } from '../../src/workers/job-init-process.js';
import { jobInitPath } from '../helpers/paths.js';

/** Everything the process wrote on fd 3 (its status channel), to EOF. */
async function statusText(child: JobInitProcess): Promise<string> {
  const chunks: Buffer[] = [];
  child.status.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(child.status, 'end');
  return Buffer.concat(chunks).toString();
}

test('the child gets /dev/null on 0-2, its two channels on 3 and 4 and no other fd of the server, no environment, cwd /', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-spawn-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // An fd of the server's own that is not close-on-exec would leak into every job: this one is (libuv's opens are).
  const serverFd = fs.openSync(path.join(dir, 'server-file'), 'w');
  t.teardown(() => fs.closeSync(serverFd));
  const script = [
    // Expansions come before a command's redirections: readlink sees the shell's fds as they were given.
    'for fd in 0 1 2 3 4; do echo "$fd $(readlink /proc/$$/fd/$fd)" >&3; done',
    `[ -e /proc/$$/fd/${serverFd} ] && echo "leaked ${serverFd}" >&3`,
    'echo "cwd $(pwd)" >&3',
    'echo "env $(env | grep -v -e ^PWD= -e ^SHLVL= -e ^_= | wc -l)" >&3',
    'cat <&4 >&3',
  ].join('\n');
  const child = new JobInitProcess('/bin/sh', ['-c', script]);
  child.control.end('from the server on fd 4\n');
  const text = await statusText(child);
  const lines = text.trimEnd().split('\n');
  t.is(lines[0], '0 /dev/null');
  t.is(lines[1], '1 /dev/null');
  t.is(lines[2], '2 /dev/null');
  t.regex(lines[3]!, /^3 socket:\[\d+\]$/);
  t.regex(lines[4]!, /^4 socket:\[\d+\]$/);
  t.false(text.includes('leaked'), text);
  t.true(lines.includes('cwd /'), text);
  t.true(lines.includes('env 0'), text);
  t.is(lines.at(-1), 'from the server on fd 4');
  t.deepEqual(await child.exited, { code: 0, signal: null });
});

test('its exit comes once, as a code or a signal\'s name; after it no signal is sent (the pidfd is gone with the process)', async (t) => {
  const exits = new JobInitProcess('/bin/sh', ['-c', 'exit 7']);
  t.deepEqual(await exits.exited, { code: 7, signal: null });
  t.false(exits.kill('SIGKILL'));

  const sleeps = new JobInitProcess('/bin/sleep', ['600']);
  t.true(sleeps.kill('SIGTERM'));
  t.deepEqual(await sleeps.exited, { code: null, signal: 'SIGTERM' });
  t.false(sleeps.kill('SIGKILL'));

  // Named as Node names it, not by the alias listed after it (SIGIOT).
  const aborts = new JobInitProcess('/bin/sh', ['-c', 'kill -ABRT $$']);
  t.deepEqual(await aborts.exited, { code: null, signal: 'SIGABRT' });
});

test('a start that fails throws errno\'s code and leaves no fd open', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-spawn-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'not-executable'), '#!/bin/sh\n', { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'not-a-program'), 'just text\n', { mode: 0o755 });
  const before = fs.readdirSync('/proc/self/fd').length;
  for (const [file, code] of [
    ['/nonexistent/job-init', 'ENOENT'],
    [path.join(dir, 'not-executable'), 'EACCES'],
    [path.join(dir, 'not-a-program'), 'ENOEXEC'],
  ] as const) {
    const err = t.throws(() => new JobInitProcess(file, [])) as NodeJS.ErrnoException;
    t.is(err.code, code);
    t.regex(err.message, new RegExp(`^spawn ${file} ${code}$`));
  }
  t.is(fs.readdirSync('/proc/self/fd').length, before);
});

test('a command started through job-init this way ignores and blocks no signal (posix_spawn leaves glibc\'s own two ignored; job-init undoes that)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-spawn-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'signals');
  const child = new JobInitProcess(jobInitPath, ['--', '/bin/sh', '-c', `exec grep -E "^Sig(Ign|Blk):" /proc/self/status > ${out}`]);
  child.control.end();
  t.is(await statusText(child), 'exec\n');
  t.deepEqual(await child.exited, { code: 0, signal: null });
  t.is(fs.readFileSync(out, 'utf8'), 'SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n');
});
