// Whatever users send, what the server answers stays within what any client
// receives: one user's enormous command lines never break another user's
// listing, jobctl list and top, or the metrics endpoint.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { credentials, status as Status } from '@grpc/grpc-js';
import { execa } from 'execa';
import { JobServiceClient, type Limits } from '../../../src/gen/jobworker/v1/jobworker.js';
import { MAX_REQUEST_BYTES } from '../../../src/supervisor/policy/command.js';
import { MAX_DETAILS_BYTES } from '../../../src/supervisor/rpc/status.js';
import { jobctlPath } from '../../helpers/paths.js';
import { rejects, startTestServer, unary } from '../../helpers/server.js';
import { groupsUnder } from '../../helpers/host.js';

const limits: Limits = { maxCpuPercent: 0, maxMemoryMb: 0, maxIoBps: 0 };
const JOBS = 70;
/** Two arguments of 120,000 bytes: each job's request is just under the cap, 17 MB in all (jobctl takes answers up to 16 MiB, other clients 4). */
const BIG = 'x'.repeat(120_000);

test.serial(`bounded answers: with ${JOBS} running jobs of ~240 KB of arguments each, GetJobs, jobctl list, jobctl top and the metrics endpoint all answer`, async (t) => {
  const ts = await startTestServer(t, { metricsListen: '127.0.0.1:0' });
  const admin = ts.client('admin');
  let next = 0;
  const created: string[] = [];
  const creator = async (): Promise<void> => {
    while (next++ < JOBS) {
      created.push((await unary(admin, 'createJob', { command: 'sh', args: ['-c', 'exec sleep 600', 'big', BIG, BIG], limits })).job!.id);
    }
  };
  await Promise.all(Array.from({ length: 8 }, creator));
  t.teardown(() => Promise.all(created.map((id) => unary(admin, 'stopJob', { id, graceMs: 0 }))));

  // A client with grpc's own default receive limit (4 MiB), as one generated from proto/ in any language has.
  const plain = new JobServiceClient(
    `localhost:${ts.server.port}`,
    credentials.createSsl(...(['ca-cert.pem', 'client-viewer-key.pem', 'client-viewer-cert.pem'].map((name) => fs.readFileSync(path.join(ts.pki, name))) as [Buffer, Buffer, Buffer])),
  );
  t.teardown(() => plain.close());
  const listed: string[] = [];
  let pageToken = '';
  do {
    const page = await unary(plain, 'getJobs', { pageToken });
    t.true(page.jobs.length > 0 && page.jobs.length < JOBS, `a page of ${page.jobs.length} jobs`);
    listed.push(...page.jobs.map((job) => job.id));
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  t.deepEqual([...listed].sort(), [...created].sort());
  t.is(listed.length, JOBS);

  const env = ts.env('viewer');
  const list = await execa('node', [jobctlPath, '--json', 'list'], { env, reject: false });
  t.is(list.exitCode, 0, list.stderr);
  t.is((JSON.parse(list.stdout) as unknown[]).length, JOBS);

  const scrape = async (): Promise<string> => {
    const response = await fetch(`http://127.0.0.1:${ts.server.metricsPort}/metrics`);
    t.is(response.status, 200);
    return response.text();
  };
  const getJobCalls = (text: string): number => Number(/^jobworker_rpcs_total\{method="GetJob",code="OK"\} (\d+)$/m.exec(text)?.[1] ?? 0);
  const before = getJobCalls(await scrape());
  const top = await execa('node', [jobctlPath, 'top', '--once', '--json', '--interval', '0.2'], { env, reject: false });
  t.is(top.exitCode, 0, top.stderr);
  const rows = JSON.parse(top.stdout) as { id: string; cpuPercent: number | null; memoryBytes: number }[];
  t.is(rows.length, JOBS);
  t.true(rows.every((row) => row.cpuPercent !== null && row.memoryBytes > 0), 'every row has fresh figures');
  const metrics = await scrape();
  t.is(getJobCalls(metrics), before, 'top read usage a page at a time, not with a GetJob per job');
  t.regex(metrics, new RegExp(`^jobworker_jobs\\{state="running"\\} ${JOBS}$`, 'm'));
});

test.serial('bounded answers: a job whose command, args, env, workdir, rootfs and user pass 256 KiB is refused, naming the cap and the size, and nothing is recorded', async (t) => {
  const ts = await startTestServer(t);
  const admin = ts.client('admin');
  const arg = 'a'.repeat(120_000);
  const err = await rejects(unary(admin, 'createJob', { command: 'echo', args: Array.from({ length: 8 }, () => arg), limits }));
  t.is(err.code, Status.INVALID_ARGUMENT);
  t.is(err.details, `the job's command, args, env, workdir, rootfs and user must be at most ${MAX_REQUEST_BYTES} bytes together (256 KiB), got ${4 + 8 * 120_000}`);
  // The environment counts as well: just over, by the env alone.
  const envErr = await rejects(unary(admin, 'createJob', { command: 'true', env: [`BIG=${'e'.repeat(MAX_REQUEST_BYTES)}`], limits }));
  t.is(envErr.code, Status.INVALID_ARGUMENT);
  t.regex(envErr.details, /must be at most 262144 bytes together \(256 KiB\), got 262152$/);
  // Messages that echo what was sent are cut to what a trailer carries (percent-encoded): a user name of
  // 200 KB, and a command of emoji whose cut would fall inside a character (half of one would break the answer).
  const userErr = await rejects(unary(admin, 'createJob', { command: 'true', isolation: { user: 'u'.repeat(200_000) }, limits }));
  t.is(userErr.code, Status.INVALID_ARGUMENT);
  t.true(Buffer.byteLength(encodeURI(userErr.details)) <= MAX_DETAILS_BYTES, `a ${userErr.details.length}-character message`);
  const emoji = await rejects(unary(admin, 'createJob', { command: `x${'\u{1F600}'.repeat(1000)}`, limits }));
  t.is(emoji.code, Status.FAILED_PRECONDITION);
  t.regex(emoji.details, /^exec "x\u{1F600}+…$/u);
  t.true(Buffer.byteLength(encodeURI(emoji.details)) <= MAX_DETAILS_BYTES);
  t.is((await unary(admin, 'getJobs', {})).jobs.length, 0, 'and the server answers on');
  t.deepEqual((await unary(admin, 'getJobs', {})).jobs, []);
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
});
