// 4. 100 followers of one job writing 100 MB: every one gets identical bytes
// (sha256), how long until the last has all of it, and how much the server's
// memory rose meanwhile. The baseline is one reader of the finished job,
// times the number of followers: extrapolated, not 100 reads measured.
import { createHash } from 'node:crypto';
import { unary } from '../../src/client/channel.js';
import { GetJobsStreamReq, type JobServiceClient } from '../../src/gen/jobworker/v1/jobworker.js';
import { row, type Row } from '../report.js';
import type { BenchServer } from '../server.js';

function follow(client: JobServiceClient, id: string): Promise<{ digest: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    const stream = client.getJobsStream(GetJobsStreamReq.fromPartial({ id, follow: true }));
    stream.on('data', (chunk: { data: Uint8Array }) => {
      hash.update(chunk.data);
      bytes += chunk.data.length;
    });
    stream.on('end', () => resolve({ digest: hash.digest('hex'), bytes }));
    stream.on('error', reject);
  });
}

export async function fanOut(server: BenchServer, quick: boolean): Promise<Row[]> {
  const followers = quick ? 20 : 100;
  const mb = quick ? 20 : 100;
  const admin = server.client();
  // Random bytes, so a follower that got another's chunk or lost one cannot hash the same.
  const job = (await unary(admin, 'createJob', { command: 'sh', args: ['-c', `sleep 1; head -c ${mb}000000 /dev/urandom`], limits: undefined })).job!;
  // Ten connections, as ten clients of a dashboard would be; each carries a tenth of the followers.
  const clients = Array.from({ length: 10 }, () => server.client('viewer'));
  const before = server.memory().rss;
  const began = performance.now();
  let results: { digest: string; bytes: number }[] = [];
  const peak = await server.peakRss(async () => {
    results = await Promise.all(Array.from({ length: followers }, (_, i) => follow(clients[i % clients.length]!, job.id)));
  });
  const seconds = (performance.now() - began) / 1000;
  const digests = new Set(results.map((r) => r.digest));
  if (digests.size !== 1 || results.some((r) => r.bytes !== mb * 1e6)) throw new Error(`followers disagree: ${digests.size} digests, byte counts ${[...new Set(results.map((r) => r.bytes))].join(', ')}`);
  const solo = performance.now();
  await follow(admin, job.id);
  const soloSeconds = (performance.now() - solo) / 1000;
  return [
    row({
      name: `${followers} followers of one ${mb} MB job, all bytes identical (sha256)`,
      figure: seconds,
      unit: 's',
      baseline: soloSeconds * followers,
      baseline_name: `${followers} × one reader of the finished job`,
      baseline_kind: 'extrapolated',
      spread: `server RSS rose by ${((peak - before) / 2 ** 20).toFixed(0)} MiB at the peak (${(before / 2 ** 20).toFixed(0)} → ${(peak / 2 ** 20).toFixed(0)} MiB)`,
    }),
  ];
}
