// The real server on loopback, the real job-init and real cgroups, driven by
// the generated client.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { GetJobsStreamReq, JobStatus, OutputStream, type DataChunk, type Job, type Limits } from '../../src/gen/jobworker/v1/jobworker.js';
import { MAX_CHUNK_BYTES } from '../../src/supervisor/rpc/job-service.js';
import { alive, groupsUnder, waitUntil } from '../helpers/host.js';
import { collectStream, firstOutput as firstOutputOf, rejects, HOST_VIEW, startTestServer, unary, type TestServer } from '../helpers/server.js';

let ts: TestServer;

test.before(async () => {
  // Its jobs read and write the test's files.
  ts = await startTestServer(undefined, { isolation: HOST_VIEW });
});

test.after.always(async () => {
  await ts?.stop();
});

const limits = (l: Partial<Limits> = {}): Limits => ({ maxCpuPercent: 0, maxMemoryMb: 0, maxIoBps: 0, ...l });

async function create(command: string, args: string[] = [], l: Partial<Limits> = {}): Promise<Job> {
  const res = await unary(ts.client('admin'), 'createJob', { command, args, limits: limits(l) });
  return res.job!;
}

async function getJob(id: string): Promise<Job> {
  return (await unary(ts.client('admin'), 'getJob', { id })).job!;
}

/** Follows the job's output to its end, then returns the job as GetJob shows it. */
async function waitForEnd(id: string): Promise<{ job: Job; stdout: Buffer; stderr: Buffer }> {
  const { stdout, stderr } = await collectStream(ts.client('admin'), { id, follow: true });
  return { job: await getJob(id), stdout, stderr };
}

/** Resolves once the job has written something, without holding a stream open. */
const firstOutput = (id: string): Promise<void> => firstOutputOf(ts.client('admin'), id);


test.serial('lifecycle: a job runs, its output streams, and it ends COMPLETED with exit code 0', async (t) => {
  const job = await create('sh', ['-c', 'echo out; echo err >&2']);
  t.is(job.status, JobStatus.JOB_STATUS_RUNNING);
  t.regex(job.id, /^[0-9a-f-]{36}$/);
  t.is(job.owner, 'admin');
  t.true(job.pid > 0);
  t.is(job.cgroup, `/${ts.server.cgroupParent}/${job.id}`);
  t.deepEqual(job.limits, { maxCpuPercent: 100, maxMemoryMb: 512, maxIoBps: 0, maxPids: 4096 });
  const { job: ended, stdout, stderr } = await waitForEnd(job.id);
  t.is(stdout.toString(), 'out\n');
  t.is(stderr.toString(), 'err\n');
  t.is(ended.status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(ended.exitCode, 0);
  t.is(ended.signal, '');
  t.is(ended.outputBytes, 8);
  t.truthy(ended.endedAt);
  t.true(ended.endedAt!.getTime() >= ended.startedAt!.getTime());
  t.deepEqual(groupsUnder(ts.server.cgroupParent), [], 'the job cgroup is removed');
});

test.serial('lifecycle: a non-zero exit ends FAILED with the code and a message', async (t) => {
  const { job } = await waitForEnd((await create('sh', ['-c', 'exit 3'])).id);
  t.is(job.status, JobStatus.JOB_STATUS_FAILED);
  t.is(job.exitCode, 3);
  t.is(job.message, 'exited with code 3');
});

test.serial('lifecycle: a job killed by a signal nobody asked for ends FAILED with the signal', async (t) => {
  const { job } = await waitForEnd((await create('sh', ['-c', 'kill -9 $$'])).id);
  t.is(job.status, JobStatus.JOB_STATUS_FAILED);
  t.is(job.exitCode, undefined);
  t.is(job.signal, 'SIGKILL');
  t.false(job.oomKilled);
});

test.serial('create: a command that does not exist fails with the exec error and leaves nothing behind', async (t) => {
  const before = (await unary(ts.client('admin'), 'getJobs', {})).jobs.length;
  const err = await rejects(create('nosuchcmd-jobworker'));
  t.is(err.code, Status.FAILED_PRECONDITION);
  t.is(err.details, 'exec "nosuchcmd-jobworker": No such file or directory');
  t.is((await unary(ts.client('admin'), 'getJobs', {})).jobs.length, before, 'no job recorded');
  t.deepEqual(groupsUnder(ts.server.cgroupParent), [], 'no cgroup left');
});

test.serial('create: a file that is not executable fails with the exec error', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-noexec-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'data.txt');
  fs.writeFileSync(file, 'not a program\n', { mode: 0o644 });
  const err = await rejects(create(file));
  t.is(err.code, Status.FAILED_PRECONDITION);
  t.is(err.details, `exec "${file}": Permission denied`);
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
});

const badCreate = test.macro({
  async exec(t, command: string, args: string[], l: Partial<Limits>, code: Status, details: RegExp) {
    const before = (await unary(ts.client('admin'), 'getJobs', {})).jobs.length;
    const err = await rejects(create(command, args, l));
    t.is(err.code, code);
    t.regex(err.details, details);
    t.is((await unary(ts.client('admin'), 'getJobs', {})).jobs.length, before);
    t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
  },
  title: (title) => `create: ${title} is refused with a clear status and leaves nothing behind`,
});

test.serial('an empty command', badCreate, '', [], {}, Status.INVALID_ARGUMENT, /^command must not be empty$/);
test.serial('a command with a NUL byte', badCreate, 'ec\0ho', [], {}, Status.INVALID_ARGUMENT, /NUL/);
test.serial('too many arguments', badCreate, 'true', Array.from({ length: 5000 }, () => 'x'), {}, Status.INVALID_ARGUMENT, /at most 4096 arguments/);
test.serial('an argument longer than the kernel takes', badCreate, 'echo', ['x'.repeat(128 * 1024)], {}, Status.INVALID_ARGUMENT, /each argument must be at most 131071 bytes/);
test.serial('CPU above cores x 100', badCreate, 'true', [], { maxCpuPercent: os.availableParallelism() * 100 + 1 }, Status.INVALID_ARGUMENT, /max_cpu_percent must be from 1 to/);
test.serial('memory below 4 MB', badCreate, 'true', [], { maxMemoryMb: 3 }, Status.INVALID_ARGUMENT, /max_memory_mb must be from 4 to/);
test.serial("memory above the host's", badCreate, 'true', [], { maxMemoryMb: 10 * 1024 * 1024 }, Status.INVALID_ARGUMENT, /max_memory_mb/);

test.serial('create: a request over 4 MiB is refused before it is decoded, and the server carries on', async (t) => {
  const err = await rejects(create('echo', Array.from({ length: 40 }, () => 'x'.repeat(120_000))));
  t.is(err.code, Status.RESOURCE_EXHAUSTED);
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
  t.true(Array.isArray((await unary(ts.client('admin'), 'getJobs', {})).jobs));
});

test.serial('ids: an unknown id is NOT_FOUND and a malformed one INVALID_ARGUMENT, for every RPC taking one', async (t) => {
  const unknown = '123e4567-e89b-42d3-a456-426614174000';
  const client = ts.client('admin');
  for (const call of [
    () => unary(client, 'getJob', { id: unknown }),
    () => unary(client, 'stopJob', { id: unknown }),
    () => collectStream(client, { id: unknown, follow: false }),
    () => unary(client, 'waitJob', { id: unknown }),
  ]) {
    const err = await rejects(call());
    t.is(err.code, Status.NOT_FOUND);
    t.is(err.details, `job ${unknown} not found`);
  }
  // Anything that is not a UUID is a name: one nobody has is NOT_FOUND too.
  const nameless = await rejects(unary(client, 'getJob', { id: 'nope' }));
  t.is(nameless.code, Status.NOT_FOUND);
  t.is(nameless.details, 'no job is named "nope"');
  for (const id of ['', 'no spaces', '../../etc/passwd', 'x'.repeat(10_000)]) {
    const err = await rejects(unary(client, 'getJob', { id }));
    t.is(err.code, Status.INVALID_ARGUMENT);
    t.regex(err.details, /^expected a job id \(a UUID such as \S+\) or a job name, got /);
    t.true(err.details.length < 200, 'the bad id is truncated in the message');
  }
});

test.serial('roles: a viewer may read but not create or stop', async (t) => {
  const job = await create('sleep', ['600']);
  t.teardown(() => unary(ts.client('admin'), 'stopJob', { id: job.id, graceMs: 0 }).catch(() => undefined));
  const viewer = ts.client('viewer');
  t.is((await unary(viewer, 'getJob', { id: job.id })).job!.id, job.id);
  t.true((await unary(viewer, 'getJobs', {})).jobs.some((j) => j.id === job.id));
  t.deepEqual((await collectStream(viewer, { id: job.id, follow: false })).stdout, Buffer.alloc(0));
  const denyCreate = await rejects(unary(viewer, 'createJob', { command: 'true', args: [], limits: limits() }));
  t.is(denyCreate.code, Status.PERMISSION_DENIED);
  t.is(denyCreate.details, 'permission denied: role "viewer" may not CreateJob');
  const denyStop = await rejects(unary(viewer, 'stopJob', { id: job.id }));
  t.is(denyStop.code, Status.PERMISSION_DENIED);
  t.is(denyStop.details, 'permission denied: role "viewer" may not StopJob');
  t.is((await getJob(job.id)).status, JobStatus.JOB_STATUS_RUNNING, 'the denied stop did nothing');
});

test.serial('output: random binary on stdout and stderr arrives byte-exact on each stream', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-bytes-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const out = randomBytes(5 * 1024 * 1024 + 17);
  const err = randomBytes(3 * 1024 * 1024 + 5);
  fs.writeFileSync(path.join(dir, 'out'), out);
  fs.writeFileSync(path.join(dir, 'err'), err);
  const job = await create('sh', ['-c', `cat ${dir}/out; cat ${dir}/err >&2; cat ${dir}/out`]);
  const followed = await collectStream(ts.client('admin'), { id: job.id, follow: true });
  const expectedOut = Buffer.concat([out, out]);
  t.true(followed.stdout.equals(expectedOut), `stdout: ${followed.stdout.length} bytes, ${expectedOut.length} expected`);
  t.true(followed.stderr.equals(err), `stderr: ${followed.stderr.length} bytes, ${err.length} expected`);
  t.true(followed.chunks.every((c) => c.data.length <= MAX_CHUNK_BYTES), 'history goes out in bounded chunks');
  // Offsets run on without a gap across both streams.
  let offset = 0;
  for (const chunk of followed.chunks) {
    t.is(chunk.offset, offset);
    offset += chunk.data.length;
  }
  // A reader that comes after the end gets the same bytes.
  const later = await collectStream(ts.client('viewer'), { id: job.id, follow: false });
  t.true(later.stdout.equals(expectedOut));
  t.true(later.stderr.equals(err));
});

test.serial('output: a follower gets output live, while the job runs', async (t) => {
  const job = await create('sh', ['-c', 'echo first; exec sleep 600']);
  t.teardown(() => unary(ts.client('admin'), 'stopJob', { id: job.id, graceMs: 0 }).catch(() => undefined));
  const stream = ts.client('viewer').getJobsStream(GetJobsStreamReq.fromPartial({ id: job.id, follow: true }));
  const first = await new Promise<Buffer>((resolve, reject) => {
    stream.once('data', (chunk: { data: Buffer }) => resolve(chunk.data));
    stream.once('error', reject);
  });
  t.is(first.toString(), 'first\n');
  t.is((await getJob(job.id)).status, JobStatus.JOB_STATUS_RUNNING);
  const end = new Promise<void>((resolve) => stream.on('end', resolve).resume());
  await unary(ts.client('admin'), 'stopJob', { id: job.id, graceMs: 0 });
  await end;
});

test.serial('output: without follow a reader gets what was written so far and the stream ends', async (t) => {
  const job = await create('sh', ['-c', 'echo so-far; exec sleep 600']);
  t.teardown(() => unary(ts.client('admin'), 'stopJob', { id: job.id, graceMs: 0 }).catch(() => undefined));
  await firstOutput(job.id);
  const { stdout } = await collectStream(ts.client('admin'), { id: job.id, follow: false });
  t.is(stdout.toString(), 'so-far\n');
  t.is((await getJob(job.id)).status, JobStatus.JOB_STATUS_RUNNING);
});

test.serial('output: 50 followers of one job all get exactly the bytes it wrote while one of them reads slowly', async (t) => {
  // 16 MiB of random bytes the test knows: each reader is checked against them, not against another reader.
  const written = randomBytes(16 * 1024 * 1024);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-fanout-')), 'data');
  fs.writeFileSync(file, written);
  t.teardown(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));
  const job = await create('sh', ['-c', 'cat "$0"; echo tail >&2', file]);
  const readers = Array.from({ length: 50 }, (_, i) =>
    i === 0 ? slowCollect(job.id, 2) : collectStream(ts.client(i % 2 === 0 ? 'admin' : 'viewer'), { id: job.id, follow: true }),
  );
  const results = await Promise.all(readers);
  for (const [i, r] of results.entries()) {
    t.is(r.stdout.length, written.length, `reader ${i} stdout length`);
    t.true(r.stdout.equals(written), `reader ${i} stdout is the job's bytes`);
    t.is(r.stderr.toString(), 'tail\n', `reader ${i} stderr`);
  }
});

test.serial('output: a follower that cancels is released at once', async (t) => {
  const job = await create('sleep', ['600']);
  t.teardown(() => unary(ts.client('admin'), 'stopJob', { id: job.id, graceMs: 0 }).catch(() => undefined));
  const log = ts.server.store.get(job.id)!.log;
  const streams = Array.from({ length: 10 }, () => ts.client('admin').getJobsStream(GetJobsStreamReq.fromPartial({ id: job.id, follow: true })));
  for (const s of streams) s.on('error', () => undefined);
  // Ten TLS connections first: generous, for the emulated v2 VM under load.
  await waitUntil(() => log.waiting === 10, 'followers to park', 60_000);
  for (const s of streams) s.cancel();
  await waitUntil(() => log.waiting === 0, 'followers to be released', 60_000);
  t.is(log.waiting, 0);
});

test.serial('output: a job that leaves a background child holding its pipes still ends', async (t) => {
  const { job, stdout } = await waitForEnd((await create('sh', ['-c', 'sleep 600 & echo $!; echo bye'])).id);
  t.is(job.status, JobStatus.JOB_STATUS_COMPLETED);
  const [childPid, bye] = stdout.toString().split('\n');
  t.is(bye, 'bye');
  t.true(Number(childPid) > 0);
  t.false(alive(Number(childPid)), 'the background child was killed with its job');
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
});

test.serial('stop: a job that ignores SIGTERM is killed after the grace period and ends STOPPED', async (t) => {
  const job = await create('sh', ['-c', "trap '' TERM; echo ready; while :; do sleep 1; done"]);
  await firstOutput(job.id);
  const started = Date.now();
  const stopped = (await unary(ts.client('admin'), 'stopJob', { id: job.id, graceMs: 300 })).job!;
  const took = Date.now() - started;
  t.is(stopped.status, JobStatus.JOB_STATUS_STOPPED);
  t.is(stopped.signal, 'SIGKILL');
  t.true(took >= 300, `stop returned after ${took} ms, before the grace period`);
  t.true(took < 10_000, `stop took ${took} ms`);
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
});

test.serial('stop: processes that left the process group (setsid, double fork) die with the job', async (t) => {
  const job = await create('sh', ['-c', 'setsid sleep 600 & echo $!; (sh -c "sleep 600 & echo \\$!" &); exec sleep 600']);
  const pids: number[] = [];
  const stream = ts.client('admin').getJobsStream(GetJobsStreamReq.fromPartial({ id: job.id, follow: true }));
  let text = '';
  await new Promise<void>((resolve) =>
    stream.on('data', (chunk: { data: Buffer }) => {
      text += chunk.data.toString();
      if (text.split('\n').length >= 3) resolve();
    }),
  );
  pids.push(...text.trim().split('\n').map(Number));
  t.is(pids.length, 2);
  t.true(pids.every(alive));
  const stopped = (await unary(ts.client('admin'), 'stopJob', { id: job.id })).job!;
  t.is(stopped.status, JobStatus.JOB_STATUS_STOPPED);
  await waitUntil(() => !pids.some(alive), 'escaped processes to die');
  t.false(pids.some(alive));
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
});

test.serial("stop: the grace period holds for the whole job, not just its leader", async (t) => {
  // The leader (sh) dies at once on SIGTERM; its child needs half a second
  // to clean up and must get it.
  const job = await create('sh', ['-c', `sh -c 'trap "sleep 0.5; echo cleaned; exit 0" TERM; echo ready; while :; do sleep 0.1; done' & wait`]);
  await firstOutput(job.id);
  await unary(ts.client('admin'), 'stopJob', { id: job.id, graceMs: 10_000 });
  const { stdout } = await collectStream(ts.client('admin'), { id: job.id, follow: false });
  t.is(stdout.toString(), 'ready\ncleaned\n');
});

test.serial('stop: a later stop with a shorter grace period cuts an earlier long one short', async (t) => {
  // The job says when a SIGTERM reaches it, and carries on.
  const job = await create('sh', ['-c', "trap 'echo got TERM' TERM; echo ready; while :; do sleep 1; done"]);
  await firstOutput(job.id);
  const admin = ts.client('admin');
  const started = Date.now();
  const slow = unary(admin, 'stopJob', { id: job.id, graceMs: 600_000 });
  // The long stop has reached the server (and its SIGTERM the job) before the short one is sent.
  const log = ts.server.store.get(job.id)!.log;
  await waitUntil(() => log.length >= 'ready\ngot TERM\n'.length, 'the first stop\'s SIGTERM to reach the job', 60_000);
  const fast = await unary(admin, 'stopJob', { id: job.id, graceMs: 0 });
  t.is(fast.job!.status, JobStatus.JOB_STATUS_STOPPED);
  t.is(fast.job!.signal, 'SIGKILL', 'killed when the short grace ran out, not by the first SIGTERM');
  t.is((await slow).job!.status, JobStatus.JOB_STATUS_STOPPED);
  t.true(Date.now() - started < 10_000, 'the ten-minute grace period did not hold the job');
  t.is((await collectStream(admin, { id: job.id })).stdout.toString(), 'ready\ngot TERM\n');
});

test.serial('stop: stopping an ended job returns it as it is', async (t) => {
  const { job } = await waitForEnd((await create('true')).id);
  const again = (await unary(ts.client('admin'), 'stopJob', { id: job.id })).job!;
  t.is(again.status, JobStatus.JOB_STATUS_COMPLETED);
  t.deepEqual(again.endedAt, job.endedAt);
});

test.serial('limits: the requested limits land in the job cgroup files', async (t) => {
  const driver = ts.server.cgroup.driver;
  const script =
    driver === 'v2'
      ? 'g=/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup); cat $g/cpu.max $g/memory.max $g/memory.swap.max $g/pids.max $g/io.max'
      : 'for c in cpu memory blkio pids; do eval "g_$c=/sys/fs/cgroup/$c$(grep -E "^[0-9]+:([^:]*,)?$c(,[^:]*)?:" /proc/self/cgroup | cut -d: -f3)"; done; ' +
        'cat $g_cpu/cpu.cfs_quota_us $g_cpu/cpu.cfs_period_us $g_memory/memory.limit_in_bytes $g_blkio/blkio.throttle.read_bps_device $g_blkio/blkio.throttle.write_bps_device $g_pids/pids.max';
  const { job, stdout } = await waitForEnd((await create('sh', ['-c', script], { maxCpuPercent: 50, maxMemoryMb: 64, maxIoBps: 1048576, maxPids: 100 })).id);
  t.is(job.status, JobStatus.JOB_STATUS_COMPLETED, job.message);
  const lines = stdout.toString().trim().split('\n');
  if (driver === 'v2') {
    t.is(lines[0], '50000 100000');
    t.is(lines[1], String(64 * 1024 * 1024));
    t.is(lines[2], '0');
    t.is(lines[3], '100');
    t.regex(lines[4]!, /^\d+:\d+ rbps=1048576 wbps=1048576/);
  } else {
    t.is(lines[0], '50000');
    t.is(lines[1], '100000');
    t.is(lines[2], String(64 * 1024 * 1024));
    t.regex(lines[3]!, /^\d+:\d+ 1048576$/);
    t.regex(lines[4]!, /^\d+:\d+ 1048576$/);
    t.is(lines[5], '100');
  }
});

test.serial('limits: direct writes under max_io_bps 1 MiB/s are held to about that rate', async (t) => {
  const scratch = path.join(os.tmpdir(), `jobworker-iolimit-${process.pid}-${Date.now()}`);
  t.teardown(() => fs.rmSync(scratch, { force: true }));
  // 4 MiB at 1 MiB/s: about 4 s throttled, well under a second on this disk unthrottled.
  const { job, stderr } = await waitForEnd(
    (await create('sh', ['-c', `dd if=/dev/zero of=${scratch} bs=64k count=64 oflag=direct && rm ${scratch}`], { maxIoBps: 1024 * 1024 })).id,
  );
  t.is(job.status, JobStatus.JOB_STATUS_COMPLETED, `${job.message} ${stderr.toString()}`);
  const took = job.endedAt!.getTime() - job.startedAt!.getTime();
  // The throttle lets a little through at once (a slice's budget), so the bound is loose.
  t.true(took >= 2_000, `4 MiB written in ${took} ms under a 1 MiB/s limit`);
  t.true(job.usage!.ioWriteBytes >= 4 * 1024 * 1024, `${job.usage!.ioWriteBytes} B counted`);
});

test.serial('limits: a job allocating past its memory limit ends FAILED with the oom_killed flag', async (t) => {
  // The shell holds 64 MiB in a variable under a 16 MiB limit.
  const { job } = await waitForEnd((await create('sh', ['-c', 'x=$(head -c 67108864 /dev/zero | tr "\\0" a); echo ${#x}'], { maxMemoryMb: 16 })).id);
  t.is(job.status, JobStatus.JOB_STATUS_FAILED);
  t.true(job.oomKilled);
  t.regex(job.message, /killed by the memory limit \(16 MiB\)|the memory limit \(16 MiB\) killed one of its processes/);
  t.true(job.usage!.memoryPeakBytes > 12 * 1024 * 1024, `peak ${job.usage!.memoryPeakBytes} B: the job ran up to its limit`);
});

test.serial('limits: a job whose leader exits 0 after one of its processes was OOM killed still ends FAILED', async (t) => {
  // v1 kills the largest process (the inner shell); v2 (memory.oom.group) kills the whole job.
  const { job } = await waitForEnd((await create('sh', ['-c', 'sh -c \'x=$(head -c 67108864 /dev/zero | tr "\\0" a)\'; exit 0'], { maxMemoryMb: 16 })).id);
  t.is(job.status, JobStatus.JOB_STATUS_FAILED);
  t.true(job.oomKilled);
  t.regex(job.message, /memory limit \(16 MiB\)/);
});

test.serial('limits: a job that merely touches its memory limit is not OOM killed', async (t) => {
  // Page cache is reclaimed at the limit rather than killing anyone: 64 MiB through a 16 MiB job.
  const { job } = await waitForEnd((await create('sh', ['-c', 'head -c 67108864 /dev/zero | cat >/dev/null'], { maxMemoryMb: 16 })).id);
  t.is(job.status, JobStatus.JOB_STATUS_COMPLETED, job.message);
  t.false(job.oomKilled);
});

test.serial('limits: a fork bomb under max_pids 64 is contained, the server stays responsive, and stop ends it', async (t) => {
  const job = await create('sh', ['-c', 'bomb() { bomb | bomb & }; bomb; exec sleep 600'], { maxPids: 64 });
  const pidsDir = ts.server.cgroup.driver === 'v2' ? `/sys/fs/cgroup${job.cgroup}` : `/sys/fs/cgroup/pids${job.cgroup}`;
  // The bomb has hit the ceiling once the kernel has refused it a fork.
  await waitUntil(() => /^max [1-9]/m.test(fs.readFileSync(`${pidsDir}/pids.events`, 'utf8')), 'the pids limit to refuse a fork');
  t.true(Number(fs.readFileSync(`${pidsDir}/pids.current`, 'utf8')) <= 64);
  const asked = Date.now();
  t.is((await getJob(job.id)).status, JobStatus.JOB_STATUS_RUNNING);
  t.true(Date.now() - asked < 5_000, 'GetJob answered while the bomb runs');
  const stopped = (await unary(ts.client('admin'), 'stopJob', { id: job.id, graceMs: 0 })).job!;
  t.is(stopped.status, JobStatus.JOB_STATUS_STOPPED);
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
});

test.serial('limits: a busy loop at --max-cpu 20 gets about a fifth of a core, and the throttling shows in its usage', async (t) => {
  // `times` prints the CPU time of the shell's children: the loop's.
  const { job, stdout } = await waitForEnd((await create('sh', ['-c', 'timeout 3 sh -c "while :; do :; done"; times'], { maxCpuPercent: 20 })).id);
  t.is(job.status, JobStatus.JOB_STATUS_COMPLETED, job.message);
  const children = stdout.toString().trim().split('\n')[1]!;
  const seconds = children
    .split(' ')
    .map((field) => /^(\d+)m([\d.]+)s$/.exec(field)!)
    .reduce((sum, m) => sum + Number(m[1]) * 60 + Number(m[2]), 0);
  // 3 s at 20% is 0.6 s of CPU; unthrottled it would be ~3 s.
  t.true(seconds > 0.3 && seconds < 1.0, `the loop used ${seconds} s of CPU in 3 s`);
  const usage = job.usage!;
  t.true(usage.cpuUsec > 0.3e6 && usage.cpuUsec < 1.0e6, `the cgroup counted ${usage.cpuUsec} µs of CPU`);
  // Held back by its limit: ~2.4 s of the 3 s on an idle machine, less when other work takes the
  // cores (the loop then waits for a core as well as for its quota); never none.
  t.true(usage.cpuThrottledUsec > 0, `throttled for ${usage.cpuThrottledUsec} µs`);
});

test.serial('usage: GetJob reads CPU, memory and disk I/O of a running job; the final figures stay once it has ended', async (t) => {
  // Direct I/O, so the bytes reach the disk (and its counters) inside the job on both drivers.
  const scratch = path.join(os.tmpdir(), `jobworker-usage-${process.pid}-${Date.now()}`);
  const script = [
    `dd if=/dev/zero of=${scratch} bs=1M count=8 oflag=direct 2>/dev/null`,
    `dd if=${scratch} of=/dev/null bs=1M iflag=direct 2>/dev/null`,
    `rm -f ${scratch}`,
    // (Not `timeout`: busybox's, in the v2 VM, leaves the rest of the script to another process.)
    'sh -c "while :; do :; done" & loop=$!; sleep 1; kill $loop',
    'x=$(head -c 33554432 /dev/zero | tr "\\0" a)',
    'echo ready',
    // Not last: busybox sh execs a script's last command in place of the shell, and x would go with it.
    'sleep 600',
    'echo ${#x}',
  ].join('; ');
  const created = Date.now();
  const job = await create('sh', ['-c', script]);
  t.teardown(async () => {
    await unary(ts.client('admin'), 'stopJob', { id: job.id, graceMs: 0 }).catch(() => undefined);
    fs.rmSync(scratch, { force: true });
  });
  await firstOutput(job.id);
  const before = Date.now();
  const running = (await getJob(job.id)).usage!;
  const MiB = 1024 * 1024;
  t.true(running.sampledAt!.getTime() >= before - 1_000, 'read when asked, not remembered');
  // At most one core (the default limit) for as long as the job has existed.
  const elapsedUsec = (Date.now() - created) * 1000;
  t.true(running.cpuUsec > 0.5e6 && running.cpuUsec <= elapsedUsec, `cpu ${running.cpuUsec} µs in ${elapsedUsec} µs, after a 1 s busy loop`);
  t.true(running.memoryBytes >= 32 * MiB, `memory now ${running.memoryBytes} B while a 32 MiB variable is held`);
  t.true(running.memoryPeakBytes >= running.memoryBytes);
  t.true(running.ioWriteBytes >= 8 * MiB && running.ioWriteBytes < 64 * MiB, `wrote ${running.ioWriteBytes} B`);
  t.true(running.ioReadBytes >= 8 * MiB && running.ioReadBytes < 64 * MiB, `read ${running.ioReadBytes} B`);
  // GetJobs fresh_usage reads a page's running jobs through their supervisor threads: read then too.
  const listedAt = Date.now();
  const listedFresh = (await unary(ts.client('viewer'), 'getJobs', { freshUsage: true })).jobs.find((j) => j.id === job.id)!.usage!;
  t.true(listedFresh.sampledAt!.getTime() >= listedAt - 1_000, 'a fresh page is read when asked');
  t.true(listedFresh.memoryBytes >= 32 * MiB && listedFresh.cpuUsec >= running.cpuUsec);

  const stopped = (await unary(ts.client('admin'), 'stopJob', { id: job.id, graceMs: 0 })).job!;
  const final = stopped.usage!;
  t.is(final.memoryBytes, 0, 'nothing is in use once the job has ended');
  t.true(final.memoryPeakBytes >= running.memoryPeakBytes);
  t.true(final.cpuUsec >= running.cpuUsec);
  t.true(final.ioWriteBytes >= running.ioWriteBytes);
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
  t.deepEqual((await getJob(job.id)).usage, final, 'kept after the cgroup is gone');
  const listed = (await unary(ts.client('viewer'), 'getJobs', {})).jobs.find((j) => j.id === job.id)!;
  t.deepEqual(listed.usage, final);
});

test.serial('stop: a process that left the job\'s session and closed its output dies when the leader exits', async (t) => {
  const { job, stdout } = await waitForEnd((await create('sh', ['-c', 'setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!'])).id);
  t.is(job.status, JobStatus.JOB_STATUS_COMPLETED, job.message);
  const pid = Number(stdout.toString());
  t.true(pid > 0);
  t.false(alive(pid), 'the escaped process was killed with its job');
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
});

test.serial('output: GetJob never shows RUNNING once a follower has seen the end', async (t) => {
  for (let i = 0; i < 10; i++) {
    const { job } = await waitForEnd((await create('echo', [String(i)])).id);
    t.is(job.status, JobStatus.JOB_STATUS_COMPLETED);
  }
});

test.serial('output: a job can open its stdout and stderr by path, as with real pipes', async (t) => {
  const { job, stdout, stderr } = await waitForEnd((await create('sh', ['-c', 'echo to-out > /dev/stdout; echo to-err > /dev/stderr; test -p /proc/self/fd/1'])).id);
  t.is(job.status, JobStatus.JOB_STATUS_COMPLETED, job.message);
  t.is(stdout.toString(), 'to-out\n');
  t.is(stderr.toString(), 'to-err\n');
});

test.serial('job environment: a minimal environment of its own and / as its working directory', async (t) => {
  const { stdout } = await waitForEnd((await create('sh', ['-c', 'pwd; env | sort'])).id);
  const [cwd, ...env] = stdout.toString().trim().split('\n');
  t.is(cwd, '/');
  const names = env.map((line) => line.split('=')[0]).filter((name) => name !== 'PWD' && name !== 'SHLVL' && name !== '_');
  // Root's passwd entry gives USER and LOGNAME (HOST_VIEW runs jobs as root).
  t.deepEqual(names, ['HOME', 'JOBWORKER_JOB_ID', 'LANG', 'LOGNAME', 'PATH', 'USER']);
});

test.serial('output: stream chunks carry the stream they came from', async (t) => {
  const { stdout, stderr, chunks } = await collectStream(ts.client('admin'), { id: (await create('sh', ['-c', 'printf o; printf e >&2'])).id, follow: true });
  t.is(stdout.toString(), 'o');
  t.is(stderr.toString(), 'e');
  t.deepEqual(new Set(chunks.map((c) => c.stream)), new Set([OutputStream.OUTPUT_STREAM_STDOUT, OutputStream.OUTPUT_STREAM_STDERR]));
});

/** A reader that takes its time over every chunk, as a client on a slow link would. */
async function slowCollect(id: string, delayMs: number): Promise<{ stdout: Buffer; stderr: Buffer }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  for await (const chunk of ts.client('viewer').getJobsStream(GetJobsStreamReq.fromPartial({ id, follow: true })) as AsyncIterable<DataChunk>) {
    (chunk.stream === OutputStream.OUTPUT_STREAM_STDERR ? err : out).push(chunk.data);
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
  return { stdout: Buffer.concat(out), stderr: Buffer.concat(err) };
}
