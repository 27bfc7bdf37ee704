import test from 'ava';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
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

test('cgroup: a hybrid host (v1 controllers, empty cgroup2 tree) is detected as v1', (t) => {
  // This machine and CI: /sys/fs/cgroup is a tmpfs of v1 hierarchies.
  t.is(detectDriver('/sys/fs/cgroup'), 'v1');
  t.is(detectDriver('/nonexistent'), 'v1');
});

test.serial('cgroup v2: a job whose controllers are not delegated is refused, naming the controller, and nothing is left', async (t) => {
  // The host's cgroup2 tree exists but has no controllers (they are bound to
  // the v1 hierarchies): exactly a v2 parent that was not delegated cpu.
  const ts = await startTestServer(t, { cgroupDriver: 'v2', cgroupMountRoot: '/sys/fs/cgroup/unified' });
  t.is(ts.server.cgroup.driver, 'v2');
  const err = (await unary(ts.client('admin'), 'createJob', { command: 'true', args: [], limits: { maxCpuPercent: 0, maxMemoryMb: 0, maxIoBps: 0 } }).catch(
    (e: ServiceError) => e,
  )) as ServiceError;
  t.is(err.code, Status.FAILED_PRECONDITION);
  t.regex(err.details, /^cgroup v2 controller "cpu" is not enabled in \/sys\/fs\/cgroup\/unified\/jobworker-test-[\d-]+\/cgroup.subtree_control/);
  t.deepEqual((await unary(ts.client('admin'), 'getJobs', {})).jobs, []);
});
