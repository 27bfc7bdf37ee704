import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs, { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import type { ServerOptions } from '../../src/supervisor/server.js';
import { v1Mounts } from '../../src/workers/cgroup/v1.js';
import { detectDriver } from '../../src/workers/cgroup/select.js';
import { startTestServer, unary } from '../helpers/server.js';

const MOUNTINFO = [
  '25 22 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755',
  '26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate',
  '28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct',
  '29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,memory',
  '30 25 0:27 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd',
].join('\n');

test('cgroup v1: controllers are found by their mount, co-mounted ones sharing a directory', (t) => {
  const mounts = v1Mounts(MOUNTINFO);
  t.is(mounts.get('cpu'), '/sys/fs/cgroup/cpu,cpuacct');
  t.is(mounts.get('cpuacct'), '/sys/fs/cgroup/cpu,cpuacct');
  t.is(mounts.get('memory'), '/sys/fs/cgroup/memory');
  t.false(mounts.has('blkio'));
  t.false(mounts.has('unified'), 'the cgroup2 mount is not a v1 hierarchy');
});

/** A directory standing in for a cgroup mount root, with cgroup.controllers as given (or none). */
function fakeRoot(t: ExecutionContext, controllers: string | null): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-select-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  if (controllers !== null) fs.writeFileSync(path.join(dir, 'cgroup.controllers'), controllers);
  return dir;
}

test('cgroup: a root whose cgroup.controllers lists controllers is v2; an empty list (hybrid) or none at all is v1', (t) => {
  t.is(detectDriver(fakeRoot(t, 'cpuset cpu io memory pids\n')), 'v2');
  t.is(detectDriver(fakeRoot(t, '\n')), 'v1');
  t.is(detectDriver(fakeRoot(t, null)), 'v1');
  t.is(detectDriver('/nonexistent'), 'v1');
});

test("cgroup: this host's driver is the one its mounts say", (t) => {
  // v2 exactly when /sys/fs/cgroup itself is a cgroup2 mount (a pure v2
  // host, the VM); on a hybrid one (this machine, CI) it is a tmpfs of v1
  // hierarchies.
  const root = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((line) => line.split(' ')[4] === '/sys/fs/cgroup');
  const fstype = root?.split(' - ')[1]?.split(' ')[0];
  t.is(detectDriver('/sys/fs/cgroup'), fstype === 'cgroup2' ? 'v2' : 'v1', root);
});

/** On a hybrid host the cgroup2 tree has no controllers at all: a parent nothing was delegated to. */
const HYBRID_UNIFIED = '/sys/fs/cgroup/unified';
const hybrid = detectDriver('/sys/fs/cgroup') === 'v1' && fs.existsSync(path.join(HYBRID_UNIFIED, 'cgroup.controllers'));

test.serial('cgroup v2: a job whose controllers are not delegated is refused, naming the controller, and nothing is left', async (t) => {
  let overrides: Partial<ServerOptions>;
  let parentDir: string;
  if (hybrid) {
    // The host's cgroup2 tree exists but has no controllers (they are bound
    // to the v1 hierarchies): exactly a v2 parent that was not delegated cpu.
    overrides = { cgroupDriver: 'v2', cgroupMountRoot: HYBRID_UNIFIED };
    parentDir = HYBRID_UNIFIED;
  } else {
    // Pure v2: a parent that holds a process of its own cannot hand
    // controllers down (the no-internal-process rule), as with a unit
    // that was not given Delegate=yes.
    const parent = `jobworker-test-undelegated-${process.pid}`;
    parentDir = path.join('/sys/fs/cgroup', parent);
    fs.mkdirSync(parentDir);
    const squatter = spawn('sleep', ['600'], { stdio: 'ignore' });
    t.teardown(async () => {
      squatter.kill('SIGKILL');
      await once(squatter, 'exit');
      fs.rmdirSync(parentDir);
    });
    fs.writeFileSync(path.join(parentDir, 'cgroup.procs'), String(squatter.pid));
    overrides = { cgroupDriver: 'v2', cgroupParent: parent };
  }
  const ts = await startTestServer(t, overrides);
  t.is(ts.server.cgroup.driver, 'v2');
  const err = (await unary(ts.client('admin'), 'createJob', { command: 'true', args: [], limits: { maxCpuPercent: 0, maxMemoryMb: 0, maxIoBps: 0 } }).catch(
    (e: ServiceError) => e,
  )) as ServiceError;
  t.is(err.code, Status.FAILED_PRECONDITION);
  // cpu on the hybrid host; on pure v2 cpu (a threaded controller) may still be enabled beside the process, memory cannot.
  const parentShown = hybrid ? `${parentDir}/${ts.server.cgroupParent.split('/').pop()}` : parentDir;
  t.regex(err.details, new RegExp(`^cgroup v2 controller "(cpu|memory)" is not enabled in ${parentShown}/cgroup\\.subtree_control; it is needed to enforce the job's limits$`));
  t.deepEqual((await unary(ts.client('admin'), 'getJobs', {})).jobs, []);
});
