import test from 'ava';
import type { PeerCertificate } from 'node:tls';
import { FORWARDED_FOR_METADATA, PERMISSIONS, authorize, callerOf, forwardedCaller, forwardedFor, type RpcName } from '../../../src/supervisor/rpc/authz.js';
import { JobworkerError } from '../../../src/supervisor/errors.js';

const cert = (subject: Record<string, unknown>): PeerCertificate => ({ subject }) as unknown as PeerCertificate;
const RPCS = Object.keys(PERMISSIONS) as RpcName[];

const table: [string, Record<string, unknown>, RpcName[]][] = [
  ['admin', { CN: 'alice', OU: 'admin' }, [
      'CreateJob', 'GetJob', 'StopJob', 'GetJobs', 'GetJobsStream', 'WriteInput', 'WaitJob', 'GetQuota',
      'CreateSchedule', 'GetSchedule', 'GetSchedules', 'PauseSchedule', 'ResumeSchedule', 'DeleteSchedule', 'RunSchedule',
      'GetNodes', 'DrainNode', 'UndrainNode',
    ]],
  ['viewer', { CN: 'bob', OU: 'viewer' }, ['GetJob', 'GetJobs', 'GetJobsStream', 'WaitJob', 'GetQuota', 'GetSchedule', 'GetSchedules', 'GetNodes']],
  // A fleet node's certificate: it hands jobs over; everything else it does for a caller it names.
  ['node', { CN: 'n1', OU: 'node' }, ['StartJob']],
  ['no OU', { CN: 'carol' }, []],
  ['OU root', { CN: 'dave', OU: 'root' }, []],
  ['OU "Admin " (case and space)', { CN: 'erin', OU: 'Admin ' }, []],
  ['OU "admin,viewer" (one value)', { CN: 'frank', OU: 'admin,viewer' }, []],
  ['several OUs', { CN: 'grace', OU: ['admin', 'viewer'] }, []],
  ['several OUs, all admin', { CN: 'heidi', OU: ['admin', 'admin'] }, []],
];

for (const [name, subject, allowed] of table) {
  for (const rpc of RPCS) {
    const ok = allowed.includes(rpc);
    test(`authz: ${name} ${ok ? 'may' : 'may not'} call ${rpc}`, (t) => {
      const caller = callerOf(cert(subject));
      t.is(caller.cn, subject.CN as string);
      if (ok) t.notThrows(() => authorize(caller, rpc));
      else {
        const err = t.throws(() => authorize(caller, rpc), { instanceOf: JobworkerError });
        t.is(err?.code, 'PERMISSION_DENIED');
      }
    });
  }
}

test('authz: a viewer is told which role lacks which permission', (t) => {
  const err = t.throws(() => authorize(callerOf(cert({ CN: 'v', OU: 'viewer' })), 'CreateJob'));
  t.is(err?.message, 'permission denied: role "viewer" may not CreateJob');
});

test('authz: a certificate without a usable role is told why', (t) => {
  t.regex(t.throws(() => authorize(callerOf(cert({ CN: 'x' })), 'GetJobs'))!.message, /has no OU/);
  t.regex(t.throws(() => authorize(callerOf(cert({ CN: 'x', OU: ['admin', 'viewer'] })), 'GetJobs'))!.message, /several OUs/);
  t.regex(t.throws(() => authorize(callerOf(cert({ CN: 'x', OU: 'root' })), 'GetJobs'))!.message, /unknown role "root"/);
});

test('forwarded calls: a node certificate answers for the caller it names; any other certificate naming one is UNAUTHENTICATED', (t) => {
  const node = callerOf(cert({ CN: 'n1', OU: 'node' }));
  const alice = callerOf(cert({ CN: 'alice', OU: 'admin' }));
  t.deepEqual(forwardedCaller(node, forwardedFor(alice), 'GetJob'), { cn: 'alice', role: 'admin', via: 'n1' });
  // Only what nodes forward: a node cannot create jobs, drain or list as someone else.
  for (const rpc of ['CreateJob', 'GetJobs', 'DrainNode', 'StartJob'] as const) {
    t.is(t.throws(() => forwardedCaller(node, forwardedFor(alice), rpc), { instanceOf: JobworkerError })?.message, `${rpc} is never forwarded between nodes (only GetJob, StopJob, GetJobsStream, WriteInput, WaitJob)`);
  }
  t.is(forwardedCaller(alice, undefined, 'CreateJob'), alice);
  const posing = t.throws(() => forwardedCaller(alice, forwardedFor({ cn: 'root', role: 'admin' }), 'GetJob'), { instanceOf: JobworkerError });
  t.is(posing?.code, 'UNAUTHENTICATED');
  t.is(posing?.message, "only a fleet node's certificate (OU node) may forward calls for another caller");
  // A node cannot forward a node (StartJob is the nodes' own), nor a caller without a role.
  for (const claimed of [{ cn: 'n2', role: 'node' }, { cn: 'x' }, 'not json']) {
    const bytes = Buffer.from(typeof claimed === 'string' ? claimed : JSON.stringify(claimed));
    t.is(t.throws(() => forwardedCaller(node, bytes, 'GetJob'), { instanceOf: JobworkerError })?.code, 'UNAUTHENTICATED', String(bytes));
  }
  t.is(FORWARDED_FOR_METADATA.endsWith('-bin'), true, 'binary metadata: a CN may hold any character');
});
