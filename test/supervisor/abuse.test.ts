// One client flooding the server must not take it down or starve another.
import test from 'ava';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import type { MemoryOutputLog } from '../../src/supervisor/output-log.js';
import { MAX_STREAMS_PER_CONNECTION } from '../../src/supervisor/server.js';
import { waitUntil } from '../helpers/host.js';
import { startTestServer, unary, type TestServer } from '../helpers/server.js';

let ts: TestServer;
test.before(async () => {
  ts = await startTestServer();
});
test.after.always(() => ts?.stop());

/** Latencies of `count` sequential GetJobs from a client of its own. */
async function bystander(count: number): Promise<number[]> {
  const client = ts.client('viewer');
  const latencies: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await unary(client, 'getJobs', {});
    latencies.push(performance.now() - started);
  }
  return latencies;
}

test.serial('abuse: 10,000 unary calls in one burst are all answered, and another client is answered meanwhile', async (t) => {
  const flooder = ts.client('admin');
  const id = '00000000-0000-4000-8000-000000000000';
  const burst = Array.from({ length: 10_000 }, () => unary(flooder, 'getJob', { id }).then(() => Status.OK, (err: ServiceError) => err.code));
  const latencies = await bystander(20);
  const codes = await Promise.all(burst);
  t.true(codes.every((code) => code === Status.NOT_FOUND), `every call got its answer: ${[...new Set(codes)].join(', ')}`);
  // Generous: the point is "answered while the flood runs", not a latency target.
  t.true(Math.max(...latencies) < 5_000, `bystander latencies ${latencies.map(Math.round).join(' ')} ms`);
});

test.serial('abuse: 1,000 streams from one connection: at most the per-connection cap are open at the server, the rest wait, and all finish', async (t) => {
  const job = (await unary(ts.client('admin'), 'createJob', { command: 'sh', args: ['-c', 'echo hi; exec sleep 600'], limits: undefined })).job!;
  t.teardown(() => unary(ts.client('admin'), 'stopJob', { id: job.id, graceMs: 0 }).catch(() => undefined));
  const log = ts.server.store.get(job.id)!.log as MemoryOutputLog;
  const flooder = ts.client('viewer');
  const streams = Array.from({ length: 1_000 }, () => flooder.getJobsStream({ id: job.id, follow: true }));
  const ended = streams.map(
    (stream) =>
      new Promise<string>((resolve) => {
        let text = '';
        stream.on('data', (chunk: { data: Buffer }) => (text += chunk.data.toString()));
        stream.on('end', () => resolve(text));
        stream.on('error', (err: ServiceError) => resolve(`error ${err.code}`));
      }),
  );
  await waitUntil(() => log.waiting === MAX_STREAMS_PER_CONNECTION, `${MAX_STREAMS_PER_CONNECTION} followers to park`);
  const latencies = await bystander(10);
  t.is(log.waiting, MAX_STREAMS_PER_CONNECTION, 'no more than the cap at once');
  t.true(Math.max(...latencies) < 5_000, `bystander latencies ${latencies.map(Math.round).join(' ')} ms`);
  await unary(ts.client('admin'), 'stopJob', { id: job.id, graceMs: 0 });
  const texts = await Promise.all(ended);
  t.deepEqual([...new Set(texts)], ['hi\n'], 'every stream, queued or not, got the whole output and its end');
});
