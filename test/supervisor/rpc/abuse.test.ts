// One client flooding the server must not take it down or starve another.
import test from 'ava';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { GetJobsStreamReq } from '../../../src/gen/jobworker/v1/jobworker.js';
import { MAX_STREAMS_PER_CONNECTION } from '../../../src/supervisor/rpc/grpc-server.js';
import { waitUntil } from '../../helpers/host.js';
import { startTestServer, unary, type TestServer } from '../../helpers/server.js';

let ts: TestServer;
test.before(async () => {
  ts = await startTestServer();
});
test.after.always(() => ts?.stop());

function summary(ms: number[]): string {
  const sorted = [...ms].sort((a, b) => a - b);
  return `median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms (n=${ms.length})`;
}

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
  const idle = await bystander(20);
  const flooder = ts.client('admin');
  const id = '00000000-0000-4000-8000-000000000000';
  const burst = Array.from({ length: 10_000 }, () => unary(flooder, 'getJob', { id }).then(() => Status.OK, (err: ServiceError) => err.code));
  const latencies = await bystander(20);
  const codes = await Promise.all(burst);
  t.log(`bystander GetJobs idle: ${summary(idle)}; during the burst: ${summary(latencies)}`);
  t.true(codes.every((code) => code === Status.NOT_FOUND), `every call got its answer: ${[...new Set(codes)].join(', ')}`);
  // Generous: the point is "answered while the flood runs", not a latency target. (5 s was
  // once exceeded, at 5.03 s, while other test files started jobs on this 2-core machine.)
  t.true(Math.max(...latencies) < 15_000, `bystander latencies ${latencies.map(Math.round).join(' ')} ms`);
});

test.serial('abuse: 1,000 streams from one connection: at most the per-connection cap are open at the server, the rest wait, and all finish', async (t) => {
  const job = (await unary(ts.client('admin'), 'createJob', { command: 'sh', args: ['-c', 'echo hi; exec sleep 600'], limits: undefined })).job!;
  t.teardown(() => unary(ts.client('admin'), 'stopJob', { id: job.id, graceMs: 0 }).catch(() => undefined));
  const log = ts.server.store.get(job.id)!.log;
  const flooder = ts.client('viewer');
  const streams = Array.from({ length: 1_000 }, () => flooder.getJobsStream(GetJobsStreamReq.fromPartial({ id: job.id, follow: true })));
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
  t.log(`bystander GetJobs with 1,000 streams open or queued: ${summary(latencies)}`);
  t.is(log.waiting, MAX_STREAMS_PER_CONNECTION, 'no more than the cap at once');
  t.true(Math.max(...latencies) < 15_000, `bystander latencies ${latencies.map(Math.round).join(' ')} ms`);
  await unary(ts.client('admin'), 'stopJob', { id: job.id, graceMs: 0 });
  const texts = await Promise.all(ended);
  t.deepEqual([...new Set(texts)], ['hi\n'], 'every stream, queued or not, got the whole output and its end');
});

test.serial('abuse: a connection flooding the server with HTTP/2 PINGs is cut off, and another client is answered', async (t) => {
  const pki = (name: string) => fs.readFileSync(path.join(ts.pki, name));
  const socket = tls.connect({
    host: '127.0.0.1',
    port: ts.server.port,
    servername: 'localhost',
    ca: pki('ca-cert.pem'),
    cert: pki('client-admin-cert.pem'),
    key: pki('client-admin-key.pem'),
    ALPNProtocols: ['h2'],
  });
  // EPIPE / ECONNRESET once the server hangs up: that is the outcome wanted.
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await once(socket, 'secureConnect');
  // The client preface, an empty SETTINGS frame, then PING frames without
  // ever reading the ACKs: the server's replies pile up until it gives up.
  const frame = (type: number, payload: Buffer) => {
    const header = Buffer.alloc(9);
    header.writeUIntBE(payload.length, 0, 3);
    header[3] = type;
    return Buffer.concat([header, payload]);
  };
  socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, Buffer.alloc(0))]));
  socket.pause();
  const ping = frame(6, Buffer.alloc(8));
  const burst = Buffer.concat(Array.from({ length: 1_000 }, () => ping));
  let sent = 0;
  while (!socket.destroyed && sent < 200_000) {
    if (!socket.write(burst)) await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), closed]);
    sent += 1_000;
  }
  const cutOff = await Promise.race([closed.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 30_000))]);
  t.true(cutOff, `the flooding connection was closed after ${sent} PINGs`);
  t.log(`cut off after ${sent} PINGs`);
  const latencies = await bystander(5);
  t.true(Math.max(...latencies) < 15_000, `bystander latencies ${latencies.map(Math.round).join(' ')} ms`);
});
