// deploy/jobworkerd.service: valid for systemd, and saying what the server needs.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { repoRoot } from '../helpers/paths.js';

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
