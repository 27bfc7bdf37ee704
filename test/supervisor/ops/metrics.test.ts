// The Prometheus endpoint, scraped after jobs of every outcome: the values
// are checked against what the test did, not only their presence.
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import test from 'ava';
import { execa } from 'execa';
import { GetJobsStreamReq, JobStatus } from '../../../src/gen/jobworker/v1/jobworker.js';
import { issueCert } from '../../../certs/pki.js';
import { repoRoot } from '../../helpers/paths.js';
import { collectStream, rejects, startTestServer, unary, waitForEnd, type TestServer } from '../../helpers/server.js';

type Samples = Map<string, number>;

/** The samples of a text exposition, keyed `name{label="value",…}` as printed (labels in prom-client's order). */
function parseExposition(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

function get(url: string, options: https.RequestOptions = {}, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const request = (url.startsWith('https:') ? https : http).request(url, { ...options, method }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode!, type: String(response.headers['content-type']), body }));
    });
    request.on('error', reject);
    request.end();
  });
}

async function scrape(server: TestServer): Promise<Samples> {
  const response = await get(`http://127.0.0.1:${server.server.metricsPort}/metrics`);
  if (response.status !== 200) throw new Error(`scrape: ${response.status} ${response.body}`);
  return parseExposition(response.body);
}

const value = (samples: Samples, key: string): number | undefined => samples.get(key);

test('metrics: after jobs of every outcome, the counters and gauges say exactly what happened', async (t) => {
  // A tiny ring, so that a job writing a MiB fills it again and again.
  const server = await startTestServer(t, { metricsListen: '127.0.0.1:0', ringCapacity: 4096 });
  const client = server.client('admin');
  const create = async (command: string, args: string[] = [], limits = {}) => (await unary(client, 'createJob', { command, args, limits })).job!;

  const completed = await create('sh', ['-c', 'head -c 1048576 /dev/zero']);
  const failed = await create('false');
  const oom = await create('sh', ['-c', 'x=$(head -c 67108864 /dev/zero | tr "\\0" a); echo ${#x}'], { maxMemoryMb: 16 });
  const stopped = await create('sleep', ['600']);
  const refused = await rejects(unary(client, 'createJob', { command: 'no-such-command-anywhere' }));
  t.is(refused.code, 9); // FAILED_PRECONDITION
  t.is((await rejects(unary(client, 'getJob', { id: '123e4567-e89b-12d3-a456-426614174000' }))).code, 5); // NOT_FOUND

  const outputs = await Promise.all([completed, failed, oom].map(async (job) => (await waitForEnd(client, job.id)).output));
  // One stream open, on the one job still running.
  const follower = client.getJobsStream(GetJobsStreamReq.fromPartial({ id: stopped.id, follow: true }));
  follower.on('data', () => {});
  const followerEnded = once(follower, 'end');
  const whileOpen = await waitForStream(server);
  t.is(value(whileOpen, 'jobworker_jobs{state="running"}'), 1);
  t.is((await unary(client, 'stopJob', { id: stopped.id })).job!.status, JobStatus.JOB_STATUS_STOPPED);
  await followerEnded;
  const sent = outputs.reduce((sum, output) => sum + output.stdout.length + output.stderr.length, 0);
  t.true(sent >= 1_048_576);

  const samples = await scrape(server);
  t.is(value(samples, 'jobworker_job_starts_total{result="started"}'), 4);
  t.is(value(samples, 'jobworker_job_starts_total{result="exec_failed"}'), 1);
  t.is(value(samples, 'jobworker_job_ends_total{outcome="completed"}'), 1);
  t.is(value(samples, 'jobworker_job_ends_total{outcome="failed"}'), 1);
  t.is(value(samples, 'jobworker_job_ends_total{outcome="oom"}'), 1);
  t.is(value(samples, 'jobworker_job_ends_total{outcome="stopped"}'), 1);
  t.is(value(samples, 'jobworker_jobs{state="running"}'), 0);
  t.is(value(samples, 'jobworker_jobs{state="completed"}'), 1);
  t.is(value(samples, 'jobworker_jobs{state="failed"}'), 2);
  t.is(value(samples, 'jobworker_jobs{state="stopped"}'), 1);
  t.is(value(samples, 'jobworker_job_start_duration_seconds_count'), 4);
  t.true(value(samples, 'jobworker_job_start_duration_seconds_sum')! > 0);
  t.is(value(samples, 'jobworker_job_start_duration_seconds_bucket{le="+Inf"}'), 4);

  t.is(value(samples, 'jobworker_rpcs_total{method="CreateJob",code="OK"}'), 4);
  t.is(value(samples, 'jobworker_rpcs_total{method="CreateJob",code="FAILED_PRECONDITION"}'), 1);
  t.is(value(samples, 'jobworker_rpcs_total{method="GetJob",code="NOT_FOUND"}'), 1);
  t.is(value(samples, 'jobworker_rpcs_total{method="StopJob",code="OK"}'), 1);
  // The follower and the three streams of waitForEnd.
  t.is(value(samples, 'jobworker_rpcs_total{method="GetJobsStream",code="OK"}'), 4);
  t.is(value(samples, 'jobworker_rpc_duration_seconds_count{method="CreateJob"}'), 5);
  t.is(value(samples, 'jobworker_rpc_duration_seconds_count{method="GetJobsStream"}'), undefined, 'streams last as long as their jobs: no latency');
  t.is(value(samples, 'jobworker_output_streams_open'), 0);

  // Every byte the jobs wrote was captured, and sent once to the one reader of each job.
  t.is(value(samples, 'jobworker_output_captured_bytes_total'), sent);
  t.is(value(samples, 'jobworker_output_sent_bytes_total'), sent);
  t.true(value(samples, 'jobworker_ring_full_total')! > 0, 'a 4 KiB ring fills under 1 MiB of output');
  t.true(value(samples, 'jobworker_ring_blocked_seconds_total')! > 0);
  for (const op of ['create', 'kill', 'remove', 'read']) t.is(value(samples, `jobworker_cgroup_failures_total{op="${op}"}`), 0, op);

  // The main thread and each of the two supervisor threads.
  const threads = [...samples.keys()].filter((key) => key.startsWith('jobworker_event_loop_utilization_ratio{')).map((key) => /thread="([^"]+)"/.exec(key)![1]);
  t.is(threads.length, 3, threads.join(' '));
  t.true(threads.includes('main'));
  t.is(threads.filter((thread) => /^supervisor-\d+$/.test(thread!)).length, 2);
  for (const thread of threads) {
    const utilization = value(samples, `jobworker_event_loop_utilization_ratio{thread="${thread}"}`)!;
    t.true(utilization >= 0 && utilization <= 1, `${thread}: ${utilization}`);
    t.true(value(samples, `jobworker_event_loop_lag_p99_seconds{thread="${thread}"}`)! >= 0);
    t.true(value(samples, `jobworker_event_loop_lag_max_seconds{thread="${thread}"}`)! >= 0);
  }
  // prom-client's own process and runtime metrics come along.
  t.true(value(samples, 'process_cpu_user_seconds_total')! > 0);
});

// Serial: it blocks this process's main thread most of the time for seconds,
// and a TLS test beside it (its server in this process too) saw its
// handshake cut off by the endpoint's 5 s limit in the slow v2 VM.
test.serial('metrics: event-loop lag and utilisation, per window, of the main thread and each supervisor thread', async (t) => {
  const server = await startTestServer(t, { metricsListen: '127.0.0.1:0', loopWindowMs: 250 });
  const client = server.client('admin');
  // Output keeps the job's supervisor thread busy; a busy loop here blocks the
  // main thread (the server runs in this process).
  const { job } = await unary(client, 'createJob', { command: 'sh', args: ['-c', 'while :; do head -c 1048576 /dev/zero; done'] });
  const ended = waitForEnd(client, job!.id);
  ended.catch(() => undefined); // awaited below; a failure before then must not be an unhandled rejection too
  const blockMainThread = (): void => {
    const until = Date.now() + 300;
    while (Date.now() < until);
  };
  // Blocked again before every scrape: whichever window a scrape reads, one lately held a 300 ms block.
  const seen = await scrapeUntil(
    server,
    (samples) => {
      const supervisors = [...samples].filter(([key, v]) => key.startsWith('jobworker_event_loop_utilization_ratio{thread="supervisor-') && v > 0);
      return value(samples, 'jobworker_event_loop_lag_max_seconds{thread="main"}')! >= 0.2 && supervisors.length > 0;
    },
    blockMainThread,
  );
  t.true(value(seen, 'jobworker_event_loop_lag_max_seconds{thread="main"}')! < 10);
  t.true(value(seen, 'jobworker_event_loop_lag_p99_seconds{thread="main"}')! <= value(seen, 'jobworker_event_loop_lag_max_seconds{thread="main"}')!);
  t.true(value(seen, 'jobworker_event_loop_utilization_ratio{thread="main"}')! > 0);
  await unary(client, 'stopJob', { id: job!.id });
  await ended;
});

/** Scrapes until the samples satisfy `done` (the loop figures come once per window), doing `before` before each scrape. */
async function scrapeUntil(server: TestServer, done: (samples: Samples) => boolean, before = (): void => {}): Promise<Samples> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    before();
    const samples = await scrape(server);
    if (done(samples)) return samples;
    if (Date.now() > deadline) throw new Error(`never seen; last scrape:\n${[...samples].filter(([key]) => key.startsWith('jobworker_event_loop')).join('\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The follower's call reaches the server asynchronously: scrape until it is counted. */
async function waitForStream(server: TestServer): Promise<Samples> {
  return scrapeUntil(server, (samples) => value(samples, 'jobworker_output_streams_open') === 1);
}

test('metrics: on loopback, plain HTTP; only GET /metrics', async (t) => {
  const server = await startTestServer(t, { metricsListen: '127.0.0.1:0' });
  const base = `http://127.0.0.1:${server.server.metricsPort}`;
  const ok = await get(`${base}/metrics`);
  t.is(ok.status, 200);
  t.regex(ok.type, /^text\/plain; version=0\.0\.4/);
  t.regex(ok.body, /^# HELP jobworker_job_starts_total /m);
  t.is((await get(`${base}/`)).status, 404);
  t.is((await get(`${base}/metrics`, {}, 'POST')).status, 405);
});

test('metrics: anywhere but loopback, mutual TLS with a certificate from the CA', async (t) => {
  const server = await startTestServer(t, { metricsListen: '0.0.0.0:0' });
  const url = `https://localhost:${server.server.metricsPort}/metrics`;
  const pem = (name: string) => readFile(path.join(server.pki, name));
  const ca = await pem('ca-cert.pem');
  const viewer = await get(url, { ca, cert: await pem('client-viewer-cert.pem'), key: await pem('client-viewer-key.pem') });
  t.is(viewer.status, 200);
  t.regex(viewer.body, /^jobworker_output_streams_open 0$/m);
  // A certificate of the CA without a role is refused, as on the gRPC port.
  const roleless = await issueCert({ certPem: ca.toString(), keyPem: (await pem('ca-key.pem')).toString() }, { cn: 'scraper', kind: 'client' });
  const refused = await get(url, { ca, cert: roleless.certPem, key: roleless.keyPem });
  t.is(refused.status, 403);
  t.is(refused.body, 'permission denied: the client certificate has no OU (role)\n');
  // Without a client certificate the handshake fails; plain HTTP gets nothing either.
  await t.throwsAsync(get(url, { ca }));
  await t.throwsAsync(get(`http://127.0.0.1:${server.server.metricsPort}/metrics`));
});

test('jobworkerd: a --metrics-listen that is not host:port is refused by name, exit 2', async (t) => {
  const result = await execa('node', [path.join(repoRoot, 'bin/jobworkerd.js'), '--metrics-listen', '9464'], { reject: false });
  t.is(result.exitCode, 2, result.stderr);
  t.is(result.stderr, 'jobworkerd: invalid value for --metrics-listen: expected host:port such as 127.0.0.1:9464 (got "9464") (see "jobworkerd --help")');
});

test('metrics: an address in use fails the start with a clear error', async (t) => {
  const first = await startTestServer(t, { metricsListen: '127.0.0.1:0' });
  const error = await t.throwsAsync(startTestServer(t, { metricsListen: `127.0.0.1:${first.server.metricsPort}` }));
  t.is(error?.message, `--metrics-listen 127.0.0.1:${first.server.metricsPort}: address already in use`);
  // The first server is unaffected.
  t.is((await collectStream(first.client('admin'), { id: (await unary(first.client('admin'), 'createJob', { command: 'true' })).job!.id, follow: true })).chunks.length, 0);
});
