// Where the server puts job cgroups when systemd delegates a cgroup to it
// (deploy/jobworkerd.service: Delegate=yes, --cgroup-delegated). Each test
// is for one driver and is reported skipped under the other: the v2 one
// runs in the cgroup v2 VM (npm run test:cgroup2), the v1 one on a v1 or
// hybrid host such as this one.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import type { Limits } from '../../src/gen/jobworker/v1/jobworker.js';
import { detectDriver } from '../../src/workers/cgroup/select.js';
import { adminClient, daemonSetup, startDaemon } from '../helpers/daemon.js';
import { alive, waitUntil } from '../helpers/host.js';
import { unary } from '../helpers/server.js';

const limits: Limits = { maxCpuPercent: 0, maxMemoryMb: 0, maxIoBps: 0 };
const ROOT = '/sys/fs/cgroup';

const procs = (dir: string): number[] => fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
const subgroups = (dir: string): string[] =>
  fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);

/** A group standing in for /system.slice/jobworkerd.service: killed and removed, subtree and all, in teardown. */
function serviceGroup(t: ExecutionContext): string {
  const name = `jobworker-test-svc-${process.pid}`;
  fs.mkdirSync(path.join(ROOT, name));
  t.teardown(async () => {
    const dir = path.join(ROOT, name);
    fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1');
    await waitUntil(() => /^populated 0$/m.test(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8')), `${dir} to empty`);
    const remove = (group: string): void => {
      for (const child of subgroups(group)) remove(path.join(group, child));
      fs.rmdirSync(group);
    };
    remove(dir);
  });
  return name;
}

const v2 = detectDriver(ROOT) === 'v2';
const onV2 = v2 ? test.serial : test.skip;
const onV1 = v2 ? test.skip : test.serial;

{
  onV2('delegation (v2): the server moves into <own>/supervisor, job groups go under <own>/jobworker, and a restart in the leaf reaps them', async (t) => {
    const { pki } = await daemonSetup(t);
    const service = serviceGroup(t);
    const serviceDir = path.join(ROOT, service);
    const daemon = await startDaemon(t, pki, 'jobworker', { cgroup: service, args: ['--cgroup-delegated'] });

    // The no-internal-process rule: the service group holds no process once job controllers are enabled in it.
    t.deepEqual(procs(serviceDir), []);
    t.deepEqual(procs(path.join(serviceDir, 'supervisor')), [daemon.process.pid!]);
    t.is(daemon.log.find((e) => e.msg === 'moved the server into a leaf of its delegated cgroup')?.cgroup, `/${service}/supervisor`);
    const enabled = fs.readFileSync(path.join(serviceDir, 'cgroup.subtree_control'), 'utf8').trim().split(' ');
    for (const controller of ['cpu', 'memory', 'pids']) t.true(enabled.includes(controller), `${controller} enabled in ${enabled.join(' ')}`);

    const admin = adminClient(t, pki, daemon.port);
    const job = (await unary(admin, 'createJob', { command: 'sleep', args: ['600'], limits: { ...limits, maxCpuPercent: 50, maxPids: 32 } })).job!;
    t.is(job.cgroup, `/${service}/jobworker/${job.id}`);
    t.is(fs.readFileSync(path.join(ROOT, job.cgroup, 'cpu.max'), 'utf8').trim(), '50000 100000');
    // The job's 32 and job-init's two around its PID namespace (outside it, and its PID 1).
    t.is(fs.readFileSync(path.join(ROOT, job.cgroup, 'pids.max'), 'utf8').trim(), '34');
    const inGroup = procs(path.join(ROOT, job.cgroup));
    t.is(inGroup.length, 3);
    t.true(inGroup.includes(job.pid));
    t.false(fs.existsSync(path.join(ROOT, 'jobworker')), 'nothing is made outside the delegated subtree');

    // systemd restarts a crashed service; here the new process starts in the leaf.
    daemon.process.kill('SIGKILL');
    await daemon.process;
    const restarted = await startDaemon(t, pki, 'jobworker', { cgroup: `${service}/supervisor`, args: ['--cgroup-delegated'] });
    t.false(restarted.log.some((e) => e.msg === 'moved the server into a leaf of its delegated cgroup'), 'already in the leaf');
    t.is(restarted.log.find((e) => e.msg === 'removed a job cgroup left by an earlier run')?.jobId, job.id);
    t.false(alive(job.pid));
    t.deepEqual(subgroups(path.join(serviceDir, 'jobworker')), []);
    const second = (await unary(adminClient(t, pki, restarted.port), 'createJob', { command: 'true', args: [], limits })).job!;
    t.is(second.cgroup, `/${service}/jobworker/${second.id}`);
    restarted.process.kill('SIGTERM');
    t.is((await restarted.process).exitCode, 0);
  });
}
{
  onV1('delegation (v1): under cgroup v1 --cgroup-delegated only logs a warning, and job groups stay under each hierarchy root', async (t) => {
    const { pki, parent } = await daemonSetup(t);
    const daemon = await startDaemon(t, pki, parent, { args: ['--cgroup-delegated'] });
    t.true(daemon.log.some((e) => e.msg.startsWith('--cgroup-delegated applies to cgroup v2 only')));
    const job = (await unary(adminClient(t, pki, daemon.port), 'createJob', { command: 'true', args: [], limits })).job!;
    t.is(job.cgroup, `/${parent}/${job.id}`);
    daemon.process.kill('SIGTERM');
    t.is((await daemon.process).exitCode, 0);
  });
}
