// What operators use every day, through the real server: deadlines, names,
// labels, waiting for a job, and what each refuses.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import test from 'ava';
import { connect, JobStatus, type JobworkerClient } from 'jobworker/client';
import { refusal } from '../helpers/client-lib.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let client: JobworkerClient;
let dataDir: string;

test.before(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-operator-'));
  server = await startTestServer(undefined, { dataDir, metricsListen: '127.0.0.1:0', deadlines: { defaultMs: null, maxMs: 3_600_000 } });
  const env = server.env('admin');
  client = connect({ server: server.address, ca: env.JOBWORKER_CA!, cert: env.JOBWORKER_CERT!, key: env.JOBWORKER_KEY! });
});

test.after.always(async () => {
  client?.close();
  await server?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function endsCounted(outcome: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.server.metricsPort}/metrics`)).text();
  return Number(new RegExp(`^jobworker_job_ends_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
}

test.serial('a deadline stops the job as StopJob does and it ends TIMED_OUT, saying so, in get, list and the metrics', async (t) => {
  const before = await endsCounted('timed_out');
  // It ignores SIGTERM: the grace passes and SIGKILL through the cgroup ends it.
  const job = await client.create({ command: 'sh', args: ['-c', "trap '' TERM; echo up; sleep 600"], timeoutMs: 1_500 });
  t.is(job.timeoutMs, 1_500);
  const ended = await client.wait(job.id);
  t.is(ended.status, JobStatus.JOB_STATUS_TIMED_OUT);
  t.is(ended.message, 'deadline of 1.5 s exceeded; killed by SIGKILL');
  t.is(ended.signal, 'SIGKILL');
  const elapsed = ended.endedAt!.getTime() - ended.startedAt!.getTime();
  t.true(elapsed >= 1_500 && elapsed < 30_000, `ended ${elapsed} ms after its start`);
  const [listed] = await client.list({ status: JobStatus.JOB_STATUS_TIMED_OUT, limit: 1 });
  t.is(listed!.id, job.id);
  t.is(await endsCounted('timed_out'), before + 1);
  // A job that ends before its deadline ends as it did, and an operator's stop stays a stop.
  const quick = await client.create({ command: 'true', timeoutMs: 60_000 });
  t.is((await client.wait(quick.id)).status, JobStatus.JOB_STATUS_COMPLETED);
  const stopped = await client.create({ command: 'sleep', args: ['600'], timeoutMs: 60_000 });
  t.is((await client.stop(stopped.id)).status, JobStatus.JOB_STATUS_STOPPED);
});

test.serial('timeouts of 0 or past the ceiling are refused, naming it, and nothing starts', async (t) => {
  const running = (await client.list({ status: JobStatus.JOB_STATUS_RUNNING })).length;
  const zero = await refusal(client.create({ command: 'true', timeoutMs: 0 }));
  t.is(zero.grpcStatus, Status.INVALID_ARGUMENT);
  t.is(zero.message, "timeout_ms must be at least 1 (leave it unset for the server's default), got 0");
  const past = await refusal(client.create({ command: 'true', timeoutMs: 3_600_001 }));
  t.is(past.grpcStatus, Status.INVALID_ARGUMENT);
  t.is(past.message, "timeout_ms 3600001 (3600001ms) is past the server's --max-timeout, 1h");
  t.is((await client.list({ status: JobStatus.JOB_STATUS_RUNNING })).length, running);
});

test.serial('names: unique while the job runs, a clash names the holder; a name means the running job, else the newest ended one', async (t) => {
  const first = await client.create({ command: 'sh', args: ['-c', 'echo first; sleep 600'], name: 'web-1' });
  t.is(first.name, 'web-1');
  const clash = await refusal(client.create({ command: 'true', name: 'web-1' }));
  t.is(clash.grpcStatus, Status.ALREADY_EXISTS);
  t.is(clash.code, 'NAME_TAKEN');
  t.is(clash.message, `job name "web-1" is taken by job ${first.id}, which has not ended`);
  t.is((await client.get('web-1')).id, first.id);
  for await (const chunk of client.stream('web-1')) t.is(Buffer.from(chunk.data).toString(), 'first\n');
  t.is((await client.stop('web-1')).status, JobStatus.JOB_STATUS_STOPPED);
  // Ended: the name is free again, and means the newest job of that name.
  const second = await client.create({ command: 'sh', args: ['-c', 'exit 3'], name: 'web-1' });
  t.is((await client.wait('web-1')).id, second.id);
  t.is((await client.get('web-1')).exitCode, 3);
  // Two starts at once: one gets the name.
  const both = await Promise.allSettled([client.create({ command: 'sleep', args: ['600'], name: 'race' }), client.create({ command: 'sleep', args: ['600'], name: 'race' })]);
  t.is(both.filter((outcome) => outcome.status === 'fulfilled').length, 1);
  t.is((both.find((outcome) => outcome.status === 'rejected') as PromiseRejectedResult).reason.code, 'NAME_TAKEN');
  await client.stop('race');
  const bad = await refusal(client.create({ command: 'true', name: 'no spaces' }));
  t.is(bad.message, 'job name "no spaces" is not valid (1 to 63 letters, digits and _ . - starting and ending with a letter or digit, not shaped like a job id)');
  const idShaped = await refusal(client.create({ command: 'true', name: '123E4567-E89B-12D3-A456-426614174000' }));
  t.is(idShaped.grpcStatus, Status.INVALID_ARGUMENT);
  const missing = await refusal(client.get('nobody-has-this'));
  t.is(missing.grpcStatus, Status.NOT_FOUND);
  t.is(missing.message, 'no job is named "nobody-has-this"');
});

test.serial('labels: kept with the job, filter GetJobs (all must match, paginated), checked like node labels', async (t) => {
  const jobs = [];
  for (let shard = 0; shard < 5; shard++) {
    jobs.push(await client.create({ command: 'sleep', args: ['600'], labels: { env: 'load', shard: String(shard % 2) } }));
  }
  const other = await client.create({ command: 'sleep', args: ['600'], labels: { env: 'prod' } });
  t.deepEqual(jobs[0]!.labels, { env: 'load', shard: '0' });
  const shard1 = await client.list({ labels: { env: 'load', shard: '1' } });
  t.deepEqual(shard1.map((job) => job.id), [jobs[3]!.id, jobs[1]!.id]);
  // One job per page: the filter holds across pages.
  const load = [];
  let pageToken = '';
  do {
    const page = await new Promise<{ jobs: { id: string }[]; nextPageToken: string }>((resolve, reject) =>
      server.client('viewer').getJobs({ status: 0, owner: '', pageSize: 1, pageToken, freshUsage: false, node: '', labels: { env: 'load' } }, (err, res) => (err ? reject(err) : resolve(res))),
    );
    load.push(...page.jobs.map((job) => job.id));
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  t.deepEqual(load, jobs.map((job) => job.id).reverse());
  const tooMany = await refusal(client.create({ command: 'true', labels: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])) }));
  t.is(tooMany.message, 'a job takes at most 32 labels, got 33');
  const badKey = await refusal(client.create({ command: 'true', labels: { 'bad key': 'v' } }));
  t.is(badKey.grpcStatus, Status.INVALID_ARGUMENT);
  const badFilter = await refusal(client.list({ labels: { env: 'a b' } }));
  t.is(badFilter.grpcStatus, Status.INVALID_ARGUMENT);
  await Promise.all([...jobs, other].map((job) => client.stop(job.id)));
});

test.serial('wait answers when the job ends, without polling; a deadline on the wait gives up, the job goes on', async (t) => {
  const job = await client.create({ command: 'sleep', args: ['600'] });
  const gaveUp = await client.wait(job.id, { timeoutMs: 300 }).catch((err: unknown) => err);
  t.is((gaveUp as Error).name, 'TimeoutError');
  t.is((await client.get(job.id)).status, JobStatus.JOB_STATUS_RUNNING);
  const waiting = client.wait(job.id);
  await client.stop(job.id);
  const ended = await waiting;
  t.is(ended.status, JobStatus.JOB_STATUS_STOPPED);
  t.truthy(ended.endedAt);
  const missing = await refusal(client.wait('123e4567-e89b-12d3-a456-426614174000'));
  t.is(missing.grpcStatus, Status.NOT_FOUND);
});

test.serial('name, labels, deadline and stdin are kept in the history across a restart', async (t) => {
  const job = await client.create({ command: 'true', name: 'kept', labels: { env: 'load' }, timeoutMs: 90_000, stdin: true });
  await client.writeInput(job.id, Buffer.alloc(0)).catch(() => undefined);
  await client.wait(job.id);
  await server.stop();
  // A new server on the same data directory reads the history back.
  const again = await startTestServer(t, { dataDir });
  const env = again.env('admin');
  const reader = connect({ server: again.address, ca: env.JOBWORKER_CA!, cert: env.JOBWORKER_CERT!, key: env.JOBWORKER_KEY! });
  t.teardown(() => reader.close());
  const back = await reader.get('kept');
  t.is(back.id, job.id);
  t.deepEqual(back.labels, { env: 'load' });
  t.is(back.timeoutMs, 90_000);
  t.true(back.stdin);
  t.deepEqual((await reader.list({ labels: { env: 'load' }, limit: 1 }))[0]!.id, job.id);
});
