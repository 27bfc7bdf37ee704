// Paths a job's start and output can take besides the usual one: a job-init
// that cannot be spawned, the inline output path bench scenario 3 compares
// the rings against, and the start phases the log reports for the bench.
import test from 'ava';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { status as Status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { JobStatus } from '../../../src/gen/jobworker/v1/jobworker.js';
import { groupsUnder } from '../../helpers/host.js';
import { collectStream, rejects, startTestServer, unary } from '../../helpers/server.js';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

test('a job-init that cannot be spawned fails CreateJob with the reason and leaves no cgroup; the server goes on', async (t) => {
  const ts = await startTestServer(t, { jobInitPath: '/nonexistent/job-init' });
  const err = await rejects(unary(ts.client('admin'), 'createJob', { command: 'true', args: [], limits: undefined }));
  t.is(err.code, Status.INTERNAL);
  t.regex(err.details, /spawn job-init: .*ENOENT/);
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
  t.deepEqual((await unary(ts.client('viewer'), 'getJobs', {})).jobs, [], 'nothing was recorded');
});

test('--output-path inline: the main thread reads the pipes, and every byte of stdout and stderr arrives', async (t) => {
  const ts = await startTestServer(t, { outputPath: 'inline' });
  // 4 MiB of each, more than a pipe or a ring holds, written while nobody reads yet.
  const script = 'head -c 4194304 /dev/urandom | tee /dev/stderr';
  const job = (await unary(ts.client('admin'), 'createJob', { command: 'sh', args: ['-c', script], limits: undefined })).job!;
  const { stdout, stderr } = await collectStream(ts.client('admin'), { id: job.id, follow: true });
  t.is(stdout.length, 4 * 2 ** 20);
  t.is(sha256(stderr), sha256(stdout));
  const ended = (await unary(ts.client('admin'), 'getJob', { id: job.id })).job!;
  t.is(ended.status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(ended.outputBytes, 8 * 2 ** 20);
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
});

test("the 'job started' log line says where the start's time went", async (t) => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const ts = await startTestServer(t, { logger: pino({ level: 'info' }, sink) });
  const job = (await unary(ts.client('admin'), 'createJob', { command: 'true', args: [], limits: undefined })).job!;
  const started = lines.find((line) => line.msg === 'job started' && line.jobId === job.id);
  const start = started?.start as Record<string, number> | undefined;
  t.truthy(start, 'a job started line for the job');
  t.deepEqual(Object.keys(start!).sort(), ['cgroupMs', 'execMs', 'spawnMs', 'totalMs']);
  for (const [phase, ms] of Object.entries(start!)) t.true(Number.isFinite(ms) && ms >= 0, `${phase}: ${ms}`);
  t.true(start!.totalMs! >= start!.cgroupMs! + start!.spawnMs! + start!.execMs! - 0.05, 'the total covers the phases');
  await collectStream(ts.client('admin'), { id: job.id, follow: true });
});
