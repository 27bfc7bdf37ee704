// The freeze→kill→thaw loop both drivers share (cgroupfs.ts killFrozen), on
// a group that fails in the ways the kernel can fail it. The real kills run
// in the server tests, on both drivers.
import test from 'ava';
import { CgroupError } from '../../src/workers/cgroup/driver.js';
import { killFrozen, type Freezer } from '../../src/workers/cgroup/cgroupfs.js';

function group(overrides: Partial<Freezer>): Freezer & { thawed: number } {
  const state = {
    dir: '/sys/fs/cgroup/jobworker/test',
    thawed: 0,
    freeze: () => undefined,
    frozen: () => true,
    thaw: () => {
      state.thawed += 1;
    },
    pids: () => [],
    populated: () => true,
    ...overrides,
  };
  return state;
}

test('kill: when killing fails and the thaw after it fails too, the kill\'s error is the one reported', async (t) => {
  const killFailed = Object.assign(new Error('kill EPERM'), { code: 'EPERM' });
  const frozen = group({
    pids: () => {
      throw killFailed;
    },
    thaw: () => {
      throw new CgroupError('CGROUP_SETUP_FAILED', 'write "THAWED" to freezer.state: EBUSY');
    },
  });
  t.is(await t.throwsAsync(killFrozen(frozen)), killFailed);
});

test('kill: the group is thawed after a failed round, and a thaw that fails on its own is a kill failure', async (t) => {
  const frozen = group({
    thaw: () => {
      throw new CgroupError('CGROUP_SETUP_FAILED', 'write "THAWED" to freezer.state: EBUSY');
    },
  });
  const err = await t.throwsAsync(killFrozen(frozen), { instanceOf: CgroupError });
  t.is((err as CgroupError).code, 'CGROUP_KILL_FAILED');
  t.is(err?.message, 'write "THAWED" to freezer.state: EBUSY');
});

test('kill: an empty group is left alone; one that empties after a round is done', async (t) => {
  const empty = group({ populated: () => false, freeze: () => t.fail('froze an empty group') });
  await killFrozen(empty);
  let rounds = 0;
  const emptying = group({ populated: () => rounds === 0, pids: () => (rounds++, []) });
  await killFrozen(emptying);
  t.is(rounds, 1);
  t.is(emptying.thawed, 1, 'thawed after its round');
});
