// Quotas on a real server (--quota-file; the rules' own tests are in
// policy/quotas.test.ts): a CreateJob past its owner's quota is
// RESOURCE_EXHAUSTED naming the quota, the limit and the use, with nothing
// recorded or started; admitted again once use drops; concurrent creates at
// the edge never overshoot; calls past calls= are refused while another
// caller is answered (and its latency under a flood: rpc/fairness.test.ts).
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { credentials, status as Status, type ServiceError } from '@grpc/grpc-js';
import { issueCert } from '../../certs/pki.js';
import { ERROR_CODE_TRAILER } from '../../src/common/error-codes.js';
import { GetJobsStreamReq, JobServiceClient, JobStatus } from '../../src/gen/jobworker/v1/jobworker.js';
import { QuotaRules } from '../../src/supervisor/policy/quotas.js';
import { groupsUnder } from '../helpers/host.js';
import { HOST_VIEW, startTestServer, unary, type TestServer } from '../helpers/server.js';

let ts: TestServer;

test.before(async () => {
  ts = await startTestServer(undefined, { isolation: HOST_VIEW });
});

test.after.always(() => ts?.stop());

/** Quotas from now on, as a reload sets them. */
function quotas(text: string): void {
  ts.server.setQuotas(QuotaRules.parse(text, 'quotas'));
}

test.afterEach.always(async () => {
  quotas('');
  const admin = ts.client('admin');
  const { jobs } = await unary(admin, 'getJobs', { status: JobStatus.JOB_STATUS_RUNNING });
  await Promise.all(jobs.map((job) => unary(admin, 'stopJob', { id: job.id, graceMs: 0 })));
});

const sleeper = (limits?: { maxCpuPercent?: number; maxMemoryMb?: number }) => ({
  command: 'sleep',
  args: ['600'],
  limits: limits && { maxCpuPercent: limits.maxCpuPercent ?? 0, maxMemoryMb: limits.maxMemoryMb ?? 0, maxIoBps: 0, maxPids: 0 },
});

/** The refusal of a call: its status, error code and message. */
async function refusal(promise: Promise<unknown>): Promise<{ code: number; errorCode: unknown; details: string }> {
  return promise.then(
    () => {
      throw new Error('the call was answered, not refused');
    },
    (err: ServiceError) => ({ code: err.code, errorCode: err.metadata?.get(ERROR_CODE_TRAILER)[0], details: err.details }),
  );
}

/** The jobs with a cgroup under the server's parent (one directory per hierarchy each). */
const jobGroups = (): number => new Set(groupsUnder(ts.server.cgroupParent).map((dir) => path.basename(dir))).size;

const jobCount = async (): Promise<number> => (await unary(ts.client('viewer'), 'getJobs', {})).jobs.length;

test.serial('running: the job past the quota is refused with the limit and the use, nothing recorded or started; admitted once one ends', async (t) => {
  quotas('cn=admin running=2');
  const admin = ts.client('admin');
  const first = (await unary(admin, 'createJob', sleeper())).job!;
  await unary(admin, 'createJob', sleeper());
  const jobs = await jobCount();
  t.deepEqual(await refusal(unary(admin, 'createJob', sleeper())), {
    code: Status.RESOURCE_EXHAUSTED,
    errorCode: 'QUOTA_EXCEEDED',
    details: 'quota exceeded: running jobs: limit 2, cn=admin has 2 running or starting (rule cn=admin at quotas:1)',
  });
  t.is(await jobCount(), jobs, 'nothing recorded');
  t.is(jobGroups(), 2, 'nothing started');
  await unary(admin, 'stopJob', { id: first.id, graceMs: 0 });
  await t.notThrowsAsync(unary(admin, 'createJob', sleeper()), 'admitted once a job has ended');
});

test.serial('running: creates racing at the edge never overshoot it', async (t) => {
  quotas('cn=admin running=3');
  const clients = Array.from({ length: 4 }, () => ts.client('admin'));
  const outcomes = await Promise.all(
    Array.from({ length: 16 }, (_, i) =>
      unary(clients[i % clients.length]!, 'createJob', sleeper()).then(
        () => 'created',
        (err: ServiceError) => err.details,
      ),
    ),
  );
  t.is(outcomes.filter((o) => o === 'created').length, 3, outcomes.join('\n'));
  t.true(outcomes.filter((o) => o !== 'created').every((o) => o.startsWith('quota exceeded: running jobs: limit 3, cn=admin has 3 running or starting')));
  t.is((await unary(ts.client('viewer'), 'getJobs', { status: JobStatus.JOB_STATUS_RUNNING })).jobs.length, 3);
  t.is(jobGroups(), 3);
});

test.serial('cpu and memory: the --max-cpu and --max-memory of running jobs together', async (t) => {
  quotas('cn=admin cpu=150 memory=100');
  const admin = ts.client('admin');
  await unary(admin, 'createJob', sleeper({ maxCpuPercent: 100, maxMemoryMb: 64 }));
  t.is(
    (await refusal(unary(admin, 'createJob', sleeper({ maxCpuPercent: 100, maxMemoryMb: 16 })))).details,
    'quota exceeded: cpu (the --max-cpu of running jobs, percent of a core): limit 150, cn=admin uses 100 and this job asks 100 (rule cn=admin at quotas:1)',
  );
  t.is(
    (await refusal(unary(admin, 'createJob', sleeper({ maxCpuPercent: 50, maxMemoryMb: 64 })))).details,
    'quota exceeded: memory (the --max-memory of running jobs, MiB): limit 100, cn=admin uses 64 and this job asks 64 (rule cn=admin at quotas:1)',
  );
  await t.notThrowsAsync(unary(admin, 'createJob', sleeper({ maxCpuPercent: 50, maxMemoryMb: 36 })), 'exactly at both limits');
});

test.serial('rate: jobs created per window, whether or not they still run; a start that failed is not counted', async (t) => {
  quotas('cn=admin rate=2/h');
  const admin = ts.client('admin');
  t.is((await refusal(unary(admin, 'createJob', { command: '/nonexistent/command', args: [] }))).code, Status.FAILED_PRECONDITION);
  for (let i = 0; i < 2; i++) {
    const { job } = await unary(admin, 'createJob', { command: 'true', args: [] });
    await unary(admin, 'waitJob', { id: job!.id });
  }
  t.is(
    (await refusal(unary(admin, 'createJob', { command: 'true', args: [] }))).details,
    'quota exceeded: rate: limit 2 jobs per hour, cn=admin created 2 in the last one (rule cn=admin at quotas:1)',
  );
});

test.serial('output: past the output its jobs keep, no new job', async (t) => {
  quotas('cn=admin output=1K');
  const admin = ts.client('admin');
  const { job } = await unary(admin, 'createJob', { command: 'head', args: ['-c', '2000', '/dev/zero'] });
  await unary(admin, 'waitJob', { id: job!.id });
  const { details } = await refusal(unary(admin, 'createJob', { command: 'true', args: [] }));
  t.regex(details, /^quota exceeded: output kept: limit 1024 bytes, cn=admin's jobs keep \d+ \(rule cn=admin at quotas:1; it drops as they are pruned\)$/);
  t.true(Number(/keep (\d+)/.exec(details)![1]) >= 2000);
});

test.serial("precedence: a CN's rule over its role's, its role's over the default", async (t) => {
  quotas('default running=0\nrole=admin running=1\ncn=alice running=2');
  const ca = { certPem: fs.readFileSync(path.join(ts.pki, 'ca-cert.pem'), 'utf8'), keyPem: fs.readFileSync(path.join(ts.pki, 'ca-key.pem'), 'utf8') };
  const pair = await issueCert(ca, { cn: 'alice', ou: 'admin', kind: 'client' });
  const alice = new JobServiceClient(`localhost:${ts.server.port}`, credentials.createSsl(Buffer.from(ca.certPem), Buffer.from(pair.keyPem), Buffer.from(pair.certPem)));
  t.teardown(() => alice.close());
  const admin = ts.client('admin');
  await unary(admin, 'createJob', sleeper());
  t.regex((await refusal(unary(admin, 'createJob', sleeper()))).details, /limit 1, cn=admin has 1 .*\(rule role=admin at quotas:2\)$/);
  await unary(alice, 'createJob', sleeper());
  await unary(alice, 'createJob', sleeper());
  t.regex((await refusal(unary(alice, 'createJob', sleeper()))).details, /limit 2, cn=alice has 2 .*\(rule cn=alice at quotas:3\)$/);
});

test.serial('calls: past calls= in flight a caller is refused at once; another caller is answered; admitted again once a call ends', async (t) => {
  quotas('cn=admin calls=1');
  const admin = ts.client('admin');
  const { job } = await unary(admin, 'createJob', sleeper());
  const stream = admin.getJobsStream(GetJobsStreamReq.fromPartial({ id: job!.id, follow: true }));
  const ended = new Promise((resolve) => stream.on('error', resolve).on('end', resolve));
  stream.resume();
  // The follow counts once the server has it: poll until a call says so.
  let refused: { code: number; details: string } | undefined;
  for (let i = 0; i < 200 && !refused; i++) {
    refused = await unary(admin, 'getJob', { id: job!.id }).then(
      () => undefined,
      (err: ServiceError) => ({ code: err.code, details: err.details }),
    );
  }
  t.deepEqual(refused, { code: Status.RESOURCE_EXHAUSTED, details: 'quota exceeded: calls in flight: limit 1, cn=admin has 1 open (rule cn=admin at quotas:1)' });
  await t.notThrowsAsync(unary(ts.client('viewer'), 'getJob', { id: job!.id }), 'the viewer is not counted with the admin');
  stream.cancel();
  await ended;
  let answered = false;
  for (let i = 0; i < 200 && !answered; i++) {
    answered = await unary(admin, 'getJob', { id: job!.id }).then(
      () => true,
      () => false,
    );
  }
  t.true(answered, 'admitted again once the follow has ended');
});

test.serial('GetQuota: the rule that applies, its limits and the use now, for the caller or another CN', async (t) => {
  quotas('role=admin running=2 cpu=300 memory=1024 rate=10/m calls=5\ndefault running=1');
  const admin = ts.client('admin');
  // Earlier tests' jobs keep output, and their creations of the last minute count in this rule's window.
  const before = (await unary(admin, 'getQuota', {})).use!;
  await unary(admin, 'createJob', sleeper({ maxCpuPercent: 100, maxMemoryMb: 256 }));
  const own = await unary(admin, 'getQuota', {});
  t.deepEqual(own, {
    owner: 'admin',
    rule: 'role=admin',
    ruleSource: 'quotas:1',
    limits: { running: 2, cpuPercent: 300, memoryMb: 1024, outputBytes: undefined, rateJobs: 10, rateWindowSeconds: 60, calls: 5, rps: undefined },
    use: { running: 1, cpuPercent: 100, memoryMb: 256, outputBytes: before.outputBytes, created: before.created + 1, calls: 1 },
  });
  t.is(before.running, 0);
  const viewer = ts.client('viewer');
  // The viewer's own: the default; admin's, as the viewer sees it: the admin's role's rule (its create showed its role), no call of its own in flight.
  t.like(await unary(viewer, 'getQuota', {}), { owner: 'viewer', rule: 'default', ruleSource: 'quotas:2', use: { running: 0, calls: 1 } });
  t.like(await unary(viewer, 'getQuota', { owner: 'admin' }), { owner: 'admin', rule: 'role=admin', use: { running: 1, cpuPercent: 100, calls: 0 } });
  // A CN never seen: its role is unknown, so only a cn= rule or the default can apply.
  t.like(await unary(viewer, 'getQuota', { owner: 'someone-else' }), { owner: 'someone-else', rule: 'default', use: { running: 0, created: 0 } });
  quotas('');
  t.like(await unary(viewer, 'getQuota', {}), { rule: '', ruleSource: '', limits: undefined });
  t.is((await refusal(unary(viewer, 'getQuota', { owner: 'x'.repeat(65) }))).details, 'owner must be at most 64 characters, got 65');
});
