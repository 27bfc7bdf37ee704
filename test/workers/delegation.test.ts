import test from 'ava';
import { ownCgroupV2, placeV2 } from '../../src/workers/cgroup/delegation.js';

test('placement: on a bare host the parent is taken from the root and the server stays where it is', (t) => {
  t.deepEqual(placeV2('jobworker', '/', false), { parent: 'jobworker', moveTo: null });
  t.deepEqual(placeV2('/jobworker', '/', true), { parent: 'jobworker', moveTo: null }, 'the root group is exempt from the no-internal-process rule');
  // A server started from a login shell: not delegated, so its session is left alone.
  t.deepEqual(placeV2('jobworker', '/user.slice/user-0.slice/session-3.scope', false), { parent: 'jobworker', moveTo: null });
});

test('placement: a delegated server moves into <own>/supervisor and its jobs go under <own>/<parent>', (t) => {
  t.deepEqual(placeV2('jobworker', '/system.slice/jobworkerd.service', true), {
    parent: 'system.slice/jobworkerd.service/jobworker',
    moveTo: 'system.slice/jobworkerd.service/supervisor',
  });
  t.deepEqual(placeV2('a/b', '/svc', true), { parent: 'svc/a/b', moveTo: 'svc/supervisor' });
});

test('placement: a server already in the supervisor leaf (a restart, DelegateSubgroup=) stays and finds its subtree', (t) => {
  t.deepEqual(placeV2('jobworker', '/system.slice/jobworkerd.service/supervisor', true), {
    parent: 'system.slice/jobworkerd.service/jobworker',
    moveTo: null,
  });
});

test('placement: an absolute parent is taken from the root; the server moves only if it would sit above its jobs', (t) => {
  t.deepEqual(placeV2('/jobworker', '/system.slice/jobworkerd.service', true), { parent: 'jobworker', moveTo: null });
  t.deepEqual(placeV2('/svc', '/svc', false), { parent: 'svc', moveTo: 'svc/supervisor' });
  t.deepEqual(placeV2('/svc/jobs', '/svc', false), { parent: 'svc/jobs', moveTo: 'svc/supervisor' });
  t.deepEqual(placeV2('/svc2/jobs', '/svc', false), { parent: 'svc2/jobs', moveTo: null }, 'a sibling whose name extends ours is not below us');
});

test('placement: the own group is the "0::" line of /proc/self/cgroup, whatever v1 lines come first', (t) => {
  t.is(ownCgroupV2('12:pids:/x\n1:name=systemd:/system.slice/a.service\n0::/system.slice/a.service\n'), '/system.slice/a.service');
  t.is(ownCgroupV2('0::/\n'), '/');
  t.throws(() => ownCgroupV2('4:memory:/x\n'), { message: /no cgroup v2 entry/ });
});
