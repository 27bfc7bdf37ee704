// Output kept on disk: bounded server memory whatever jobs print, retention,
// reading like `docker logs`, listing at scale, a full disk.
import test, { type ExecutionContext } from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { execa } from 'execa';
import { GetJobsStreamReq, JobStatus, type DataChunk, type Job, type JobServiceClient } from '../../../src/gen/jobworker/v1/jobworker.js';
import type { ServerOptions } from '../../../src/supervisor/server.js';
import { adminClient, daemonSetup, startDaemon, type Daemon } from '../../helpers/daemon.js';
import { pidsIn, tmpfs, waitUntil } from '../../helpers/host.js';
import { jobctlPath as jobctl } from '../../helpers/paths.js';
import { collectStream, rejects, HOST_VIEW, startTestServer, unary, waitForEnd, type TestServer } from '../../helpers/server.js';
import { MAX_CHUNK_BYTES } from '../../../src/supervisor/rpc/job-service.js';

const MiB = 1024 * 1024;
const limits = { maxCpuPercent: 100, maxMemoryMb: 256, maxIoBps: 0, maxPids: 0 };

/** The daemon's resident memory, sampled every 50 ms (the kernel announces no change) until stop(). */
function sampleRss(pid: number): { stop(): number } {
  let peak = 0;
  const sample = () => {
    const match = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    peak = Math.max(peak, Number(match![1]) * 1024);
  };
  sample();
  const timer = setInterval(sample, 50);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return peak;
    },
  };
}

async function daemonWith(t: ExecutionContext): Promise<{ daemon: Daemon; client: JobServiceClient; pki: string }> {
  const { pki, parent } = await daemonSetup(t);
  const daemon = await startDaemon(t, pki, parent, { workers: 2 });
  return { daemon, client: adminClient(t, pki, daemon.port), pki };
}

test.serial('memory: server RSS stays under 300 MB while a job writes 2 GiB with no reader; the oldest output past 1 GiB is discarded', async (t) => {
  const { daemon, client, pki } = await daemonWith(t);
  const rss = sampleRss(daemon.process.pid!);
  const job = (await unary(client, 'createJob', { command: 'head', args: ['-c', String(2048 * MiB), '/dev/zero'], limits })).job!;
  const { job: ended } = await waitForEnd(client, job.id);
  const peak = rss.stop();
  t.log(`peak RSS ${(peak / 1e6).toFixed(0)} MB`);
  t.true(peak < 300e6, `peak RSS ${(peak / 1e6).toFixed(0)} MB`);
  t.is(ended.status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(ended.outputBytes, 2048 * MiB);
  // What is kept: at most 1 GiB, at least that less a segment (an eighth) and a block.
  t.true(ended.outputStart >= 1024 * MiB && ended.outputStart <= 1024 * MiB + 128 * MiB + 256 * 1024, `output starts at ${ended.outputStart}`);
  const dir = path.join(pki, 'data', 'output', job.id);
  const onDisk = fs.readdirSync(dir).filter((f) => f.endsWith('.out')).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
  t.is(onDisk, ended.outputBytes - ended.outputStart, 'what was discarded is gone from disk');
  daemon.process.kill('SIGTERM');
  await daemon.process;
});

test.serial('memory: server RSS stays under 300 MB while 100 followers each stream 20 MiB of a 1 GiB log (2 GiB in all)', async (t) => {
  const { daemon, client, pki } = await daemonWith(t);
  const job = (await unary(client, 'createJob', { command: 'head', args: ['-c', String(1024 * MiB), '/dev/zero'], limits })).job!;
  await waitForEnd(client, job.id);
  const rss = sampleRss(daemon.process.pid!);
  // Two connections, 50 streams each (a connection takes at most 128).
  const clients = [adminClient(t, pki, daemon.port, 'viewer'), adminClient(t, pki, daemon.port, 'viewer')];
  // Each follower reads its share from the log's first byte on, checks it, and lets go: 100 readers
  // at once through the files, which is what the memory bound is about (all 100 GiB would take half an hour here).
  const share = 20 * MiB;
  const zeros = Buffer.alloc(MAX_CHUNK_BYTES);
  const received = await Promise.all(
    Array.from({ length: 100 }, (_, i) => {
      const stream = clients[i % 2]!.getJobsStream(GetJobsStreamReq.fromPartial({ id: job.id, follow: true }));
      let got = 0;
      return new Promise<number>((resolve, reject) => {
        stream.on('data', (chunk: DataChunk) => {
          if (chunk.offset !== got) reject(new Error(`follower ${i}: chunk at ${chunk.offset}, expected ${got}`));
          if (!zeros.subarray(0, chunk.data.length).equals(chunk.data)) reject(new Error(`follower ${i}: wrong bytes at offset ${chunk.offset}`));
          got += chunk.data.length;
          if (got >= share) {
            stream.cancel();
            resolve(got);
          }
        });
        stream.on('error', (err: Error & { code?: number }) => {
          if (err.code !== Status.CANCELLED) reject(err);
        });
      });
    }),
  );
  const peak = rss.stop();
  t.true(received.every((bytes) => bytes >= share), 'every follower got its share');
  t.log(`peak RSS ${(peak / 1e6).toFixed(0)} MB while 100 followers read ${(received.reduce((a, b) => a + b) / MiB).toFixed(0)} MiB`);
  t.true(peak < 300e6, `peak RSS ${(peak / 1e6).toFixed(0)} MB`);
  daemon.process.kill('SIGTERM');
  await daemon.process;
});

test('retention: past --max-output-bytes a reader starts at the first byte kept, and the chunk offset says where that is', async (t) => {
  const ts = await startTestServer(t, { maxOutputBytes: MiB, isolation: HOST_VIEW });
  const data = randomBytes(5 * MiB);
  const file = path.join(ts.pki, 'data.bin');
  fs.writeFileSync(file, data);
  const { job, output } = await waitForEnd(ts.client(), (await unary(ts.client(), 'createJob', { command: 'cat', args: [file], limits })).job!.id);
  t.is(job.outputBytes, data.length);
  t.true(job.outputStart > 0 && data.length - job.outputStart <= MiB, `kept from ${job.outputStart}`);
  const again = await collectStream(ts.client(), { id: job.id });
  t.is(again.chunks[0]!.offset, job.outputStart);
  t.true(again.stdout.equals(data.subarray(job.outputStart)));
  t.true(output.stdout.length > 0);
});

test('retention: past --retain-jobs the oldest ended jobs go, record and files; running jobs stay', async (t) => {
  const ts = await startTestServer(t, { retainJobs: 2 });
  const client = ts.client();
  const runningJob = (await unary(client, 'createJob', { command: 'sleep', args: ['600'], limits })).job!;
  t.teardown(() => unary(client, 'stopJob', { id: runningJob.id, graceMs: 0 }).catch(() => undefined));
  const ended: string[] = [];
  for (let i = 0; i < 4; i += 1) {
    const { job } = await waitForEnd(client, (await unary(client, 'createJob', { command: 'echo', args: [`job ${i}`], limits })).job!.id);
    ended.push(job.id);
  }
  await waitUntil(() => !fs.existsSync(path.join(ts.pki, 'data', 'output', ended[1]!)), 'the pruned output to be deleted');
  const listed = (await unary(client, 'getJobs', {})).jobs.map((job) => job.id);
  t.deepEqual(listed, [ended[3], ended[2], runningJob.id]);
  t.is((await rejects(unary(client, 'getJob', { id: ended[0]! }))).code, Status.NOT_FOUND);
  t.false(fs.existsSync(path.join(ts.pki, 'data', 'output', ended[0]!)));
  t.true(fs.existsSync(path.join(ts.pki, 'data', 'output', ended[3]!)));
});

test('retention: jobs that ended longer than --retain-for ago go', async (t) => {
  const ts = await startTestServer(t, { retainForMs: 1500 });
  const client = ts.client();
  const { job: old } = await waitForEnd(client, (await unary(client, 'createJob', { command: 'echo', args: ['old'], limits })).job!.id);
  // The age is what is under test: let it pass.
  await waitUntil(() => Date.now() > old.endedAt!.getTime() + 2000, 'the first job to age', 5000);
  const { job: fresh } = await waitForEnd(client, (await unary(client, 'createJob', { command: 'echo', args: ['fresh'], limits })).job!.id);
  t.deepEqual((await unary(client, 'getJobs', {})).jobs.map((job) => job.id), [fresh.id]);
});

test('reading: --since, --tail and --timestamps pick and stamp lines like docker logs', async (t) => {
  const ts = await startTestServer(t, { isolation: HOST_VIEW });
  const go = path.join(ts.pki, 'go');
  // The job prints two lines, waits for the test, then prints two more.
  const script = `echo one; echo two >&2; while [ ! -e ${go} ]; do sleep 0.02; done; echo three; printf four`;
  const job = (await unary(ts.client(), 'createJob', { command: 'sh', args: ['-c', script], limits })).job!;
  await waitUntil(() => ts.server.store.get(job.id)!.log.length === 8, 'the first two lines');
  const firstHalf = await collectStream(ts.client(), { id: job.id, timestamps: true });
  const between = new Date(Math.max(...firstHalf.chunks.map((c) => c.time!.getTime())) + 1);
  await waitUntil(() => Date.now() > between.getTime(), 'the clock to pass the first lines');
  fs.writeFileSync(go, '');
  await waitForEnd(ts.client(), job.id);

  const run = async (...args: string[]) => (await execa('node', [jobctl, 'stream', ...args, job.id], { env: ts.env() })).stdout;
  t.is(await run('--tail', '2'), 'three\nfour');
  t.is(await run('--tail', '0'), '');
  t.is(await run('--since', between.toISOString()), 'three\nfour');
  t.is(await run('--since', '1h', '--tail', '3'), 'three\nfour', 'stdout only: "two" went to stderr');
  t.is(await run('--since', new Date(Date.now() + 3600_000).toISOString()), '', 'nothing arrived after a time to come');
  const stamped = (await run('--timestamps')).split('\n');
  t.is(stamped.length, 3);
  for (const [i, text] of ['one', 'three', 'four'].entries()) t.regex(stamped[i]!, new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z ${text}$`));
  const json = (await run('--json', '--timestamps', '--tail', '1')).split('\n').map((line) => JSON.parse(line) as { time: string; data_base64: string });
  t.is(Buffer.from(json[0]!.data_base64, 'base64').toString(), 'four');
  t.true(Date.parse(json[0]!.time) >= between.getTime());
  const bad = await execa('node', [jobctl, 'stream', '--since', 'yesterday', job.id], { env: ts.env(), reject: false });
  t.is(bad.exitCode, 2);
  t.regex(bad.stderr + bad.stdout, /expected a duration back from now/);
});

test('reading: --tail with --follow gives the last lines, then what comes', async (t) => {
  const ts = await startTestServer(t, { isolation: HOST_VIEW });
  const go = path.join(ts.pki, 'go');
  const script = `seq 1 1000; while [ ! -e ${go} ]; do sleep 0.02; done; echo after`;
  const job = (await unary(ts.client(), 'createJob', { command: 'sh', args: ['-c', script], limits })).job!;
  await waitUntil(() => ts.server.store.get(job.id)!.log.length >= 3893, 'seq to finish');
  const follow = execa('node', [jobctl, 'stream', '--follow', '--tail', '2', job.id], { env: ts.env() });
  let seen = '';
  follow.stdout!.on('data', (data: Buffer) => (seen += data.toString()));
  await waitUntil(() => seen === '999\n1000\n', 'the last two lines');
  fs.writeFileSync(go, '');
  t.is((await follow).stdout, '999\n1000\nafter');
});

test('reading: a follower with a since still to come gets only what arrives after it', async (t) => {
  const ts = await startTestServer(t, { isolation: HOST_VIEW });
  const [early, late] = [path.join(ts.pki, 'early'), path.join(ts.pki, 'late')];
  const script = `while [ ! -e ${early} ]; do sleep 0.02; done; echo early; while [ ! -e ${late} ]; do sleep 0.02; done; echo late`;
  const job = (await unary(ts.client(), 'createJob', { command: 'sh', args: ['-c', script], limits })).job!;
  const since = new Date(Date.now() + 3000);
  const following = collectStream(ts.client(), { id: job.id, follow: true, since });
  fs.writeFileSync(early, '');
  await waitUntil(() => ts.server.store.get(job.id)!.log.length === 6, 'the early line');
  t.true(Date.now() < since.getTime(), 'the early line came before since (3 s margin)');
  await waitUntil(() => Date.now() > since.getTime(), 'since to pass', 5000);
  fs.writeFileSync(late, '');
  t.is((await following).stdout.toString(), 'late\n');
});

test('listing: newest first, filtered by status and owner, a page at a time', async (t) => {
  const ts = await startTestServer(t);
  const client = ts.client();
  const done: string[] = [];
  for (let i = 0; i < 3; i += 1) done.push((await waitForEnd(client, (await unary(client, 'createJob', { command: 'true', args: [], limits })).job!.id)).job.id);
  const running: string[] = [];
  for (let i = 0; i < 2; i += 1) running.push((await unary(client, 'createJob', { command: 'sleep', args: ['600'], limits })).job!.id);
  t.teardown(() => Promise.all(running.map((id) => unary(client, 'stopJob', { id, graceMs: 0 }).catch(() => undefined))));
  const all = [...done, ...running].reverse();

  t.deepEqual((await unary(client, 'getJobs', {})).jobs.map((j) => j.id), all, 'the plain call lists every job');
  const pages: string[][] = [];
  let pageToken = '';
  do {
    const page = await unary(client, 'getJobs', { pageSize: 2, pageToken });
    pages.push(page.jobs.map((j) => j.id));
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  t.deepEqual(pages, [all.slice(0, 2), all.slice(2, 4), all.slice(4)]);
  t.deepEqual((await unary(client, 'getJobs', { status: JobStatus.JOB_STATUS_RUNNING })).jobs.map((j) => j.id), [...running].reverse());
  const firstDone = await unary(client, 'getJobs', { status: JobStatus.JOB_STATUS_COMPLETED, pageSize: 2 });
  t.deepEqual(firstDone.jobs.map((j) => j.id), [done[2], done[1]]);
  t.deepEqual((await unary(client, 'getJobs', { status: JobStatus.JOB_STATUS_COMPLETED, pageSize: 2, pageToken: firstDone.nextPageToken })).jobs.map((j) => j.id), [done[0]]);
  t.deepEqual((await unary(client, 'getJobs', { owner: 'admin', pageSize: 5 })).nextPageToken, '', 'no token when nothing is left');
  t.deepEqual((await unary(client, 'getJobs', { owner: 'someone-else' })).jobs, []);

  const badToken = await rejects(unary(client, 'getJobs', { pageToken: 'garbage' }));
  t.is(badToken.code, Status.INVALID_ARGUMENT);
  t.regex(badToken.details, /page_token is not one this server gave out/);
  t.is((await rejects(unary(client, 'getJobs', { pageSize: 10_001 }))).code, Status.INVALID_ARGUMENT);

  const table = (await execa('node', [jobctl, 'list', '--status', 'RUNNING', '--limit', '1'], { env: ts.env() })).stdout.split('\n');
  t.is(table.length, 2);
  t.true(table[1]!.startsWith(running[1]!));
  const bad = await execa('node', [jobctl, 'list', '--status', 'DONE'], { env: ts.env(), reject: false });
  t.is(bad.exitCode, 2);
});

/**
 * A server whose data directory is a 16 MiB tmpfs, and a job that writes 8
 * MiB of random bytes once the tmpfs has only 2 MiB left; resolves once its
 * capture has paused.
 */
async function pausedJob(t: ExecutionContext, overrides: Partial<ServerOptions> = {}, dataBytes = 8 * MiB, size = '16m'): Promise<{ ts: TestServer; job: Job; data: Buffer; filler: string }> {
  const dataDir = await tmpfs(t, size);
  const ts = await startTestServer(t, { dataDir: path.join(dataDir, 'data'), isolation: HOST_VIEW, ...overrides });
  const data = randomBytes(dataBytes);
  const file = path.join(ts.pki, 'data.bin');
  fs.writeFileSync(file, data);
  const go = path.join(ts.pki, 'go');
  const job = (await unary(ts.client(), 'createJob', { command: 'sh', args: ['-c', `while [ ! -e ${go} ]; do sleep 0.02; done; cat ${file}`], limits })).job!;
  const { stdout: free } = await execa('df', ['--output=avail', '-B1', dataDir]);
  const filler = path.join(dataDir, 'filler');
  fs.writeFileSync(filler, Buffer.alloc(Number(free.split('\n')[1]) - 2 * MiB));
  fs.writeFileSync(go, '');
  await waitUntil(() => ts.server.store.get(job.id)!.log.problem !== '', 'capture to pause');
  return { ts, job, data, filler };
}

test.serial('disk full: output capture pauses with a clear status while the job waits, and resumes losing nothing when space returns', async (t) => {
  const { ts, job, data, filler } = await pausedJob(t);
  const client = ts.client();
  const seen = (await unary(client, 'getJob', { id: job.id })).job!;
  t.is(seen.status, JobStatus.JOB_STATUS_RUNNING, 'the job waits');
  t.regex(seen.outputProblem, /^output capture paused since .*: cannot write to .*: ENOSPC: no space left on device.*the job waits, retrying every 1 s$/);
  const getText = (await execa('node', [jobctl, 'get', job.id], { env: ts.env() })).stdout;
  t.regex(getText, /output problem: +output capture paused/);

  fs.rmSync(filler);
  const { job: ended, output } = await waitForEnd(client, job.id);
  t.is(ended.status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(ended.outputProblem, '');
  t.is(createHash('sha256').update(output.stdout).digest('hex'), createHash('sha256').update(data).digest('hex'));
});

test.serial('disk full, --output-path inline: the job waits on its pipe as with the rings; the server does not read its output into memory', async (t) => {
  const { ts, job, data, filler } = await pausedJob(t, { outputPath: 'inline' }, 32 * MiB, '64m');
  // cat (the job's shell runs it) blocks in write(2) once its pipe is full: nobody reads it while the log has no room.
  const cat = () => pidsIn(job.cgroup).find((pid) => fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'cat');
  await waitUntil(() => /^1 /.test(fs.readFileSync(`/proc/${cat()}/syscall`, 'utf8')), 'the job to block writing its output');
  const record = ts.server.store.get(job.id)!;
  t.true(record.log.length < 8 * MiB, `${record.log.length} bytes taken in while the disk is full (the job has ${data.length} to write)`);
  fs.rmSync(filler);
  const { job: ended, output } = await waitForEnd(ts.client(), job.id);
  t.is(ended.status, JobStatus.JOB_STATUS_COMPLETED);
  t.true(output.stdout.equals(data), 'every byte, once the disk takes them');
});

test.serial('disk full: shutdown does not wait for the disk: the paused job is stopped, its unwritten output given up', async (t) => {
  const { ts, job } = await pausedJob(t);
  await ts.stop();
  const record = ts.server.store.get(job.id)!;
  t.is(record.state, 'STOPPED');
  t.regex(record.log.problem, /could not be written and is lost/);
});

test.serial('disk full: a paused job can still be stopped at once; what it wrote is kept and written once space returns', async (t) => {
  const { ts, job, data, filler } = await pausedJob(t);
  const client = ts.client();
  const { job: stopped } = await unary(client, 'stopJob', { id: job.id, graceMs: 0 });
  t.is(stopped!.status, JobStatus.JOB_STATUS_STOPPED);
  t.regex(stopped!.outputProblem, /output capture paused/, 'its last output still waits for the disk');
  fs.rmSync(filler);
  await waitUntil(() => ts.server.store.get(job.id)!.log.problem === '', 'the rest to be written');
  const { job: after } = await unary(client, 'getJob', { id: job.id });
  const { stdout } = await collectStream(client, { id: job.id });
  t.is(stdout.length, after!.outputBytes);
  t.true(stdout.equals(data.subarray(0, stdout.length)), 'a byte-exact prefix of what the job wrote');
});
