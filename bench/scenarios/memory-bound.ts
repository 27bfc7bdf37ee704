// 7. Server memory with output on disk: while one job writes a lot with
// nobody reading, and while 100 followers each stream the first 20 MiB of a
// 1 GiB log (2 GiB in all: 100 readers at once through the files is what
// this is about; all of it to each would take half an hour). On a fresh
// server of its own: the shared one has been through the other scenarios'
// bursts, and its V8 heaps and malloc arenas stay at their high-water mark
// (~210 MB idle after a full run), which says nothing about output.
import { status } from '@grpc/grpc-js';
import { unary } from '../../src/client/channel.js';
import { GetJobsStreamReq, type DataChunk, type JobServiceClient } from '../../src/gen/jobworker/v1/jobworker.js';
import { row, type Row } from '../report.js';
import { startBenchServer, type BenchServer } from '../server.js';

const GOAL_MB = 300;
const MB = 1e6;
const MiB = 2 ** 20;

/** Polls GetJob (no reader of the output) until the job has ended: every byte is then in its log. */
async function ended(client: JobServiceClient, id: string): Promise<void> {
  while (!(await unary(client, 'getJob', { id })).job!.endedAt) await new Promise((resolve) => setTimeout(resolve, 100));
}

export async function memoryBound(shared: BenchServer, quick: boolean): Promise<Row[]> {
  const sharedIdle = shared.memory().rss;
  const server = await startBenchServer({ name: 'memory' });
  try {
    return await measure(server, quick, sharedIdle);
  } finally {
    await server.stop();
  }
}

async function measure(server: BenchServer, quick: boolean, sharedIdle: number): Promise<Row[]> {
  const writeMiB = quick ? 256 : 2048;
  const logMiB = quick ? 256 : 1024;
  const followers = quick ? 20 : 100;
  const client = server.client();
  const idle = server.memory().rss;
  const writer = (await unary(client, 'createJob', { command: 'head', args: ['-c', `${writeMiB}M`, '/dev/zero'], limits: undefined })).job!;
  const writing = await server.peakRss(() => ended(client, writer.id));

  const log = (await unary(client, 'createJob', { command: 'head', args: ['-c', `${logMiB}M`, '/dev/zero'], limits: undefined })).job!;
  await ended(client, log.id);
  const viewers = Array.from({ length: 2 }, () => server.client('viewer'));
  const share = (2 * logMiB * MiB) / followers;
  let received = 0;
  const began = performance.now();
  const following = await server.peakRss(() =>
    Promise.all(
      Array.from({ length: followers }, (_, i) => {
        const stream = viewers[i % 2]!.getJobsStream(GetJobsStreamReq.fromPartial({ id: log.id, follow: true }));
        let got = 0;
        return new Promise<void>((resolve, reject) => {
          stream.on('data', (chunk: DataChunk) => {
            got += chunk.data.length;
            received += chunk.data.length;
            if (got < share) return;
            stream.cancel();
            resolve();
          });
          stream.on('error', (err: Error & { code?: number }) => (err.code === status.CANCELLED ? undefined : reject(err)));
        });
      }),
    ),
  );
  const seconds = (performance.now() - began) / 1000;
  const goal = { text: `≤ ${GOAL_MB} MB`, maxRatio: 1 };
  return [
    row({
      name: `server peak RSS, one job writing ${writeMiB} MiB, no reader`,
      figure: writing / MB,
      unit: 'MB',
      baseline: GOAL_MB,
      baseline_name: 'goal',
      baseline_kind: 'goal',
      goal,
      spread: `RSS idle ${(idle / MB).toFixed(0)} MB (the shared bench server, after the other scenarios: ${(sharedIdle / MB).toFixed(0)} MB)`,
    }),
    row({
      name: `server peak RSS, ${followers} followers each streaming ${(share / MiB).toFixed(0)} MiB of a ${logMiB} MiB log`,
      figure: following / MB,
      unit: 'MB',
      baseline: GOAL_MB,
      baseline_name: 'goal',
      baseline_kind: 'goal',
      goal,
      spread: `${(received / MB / seconds).toFixed(0)} MB/s to all followers together over ${seconds.toFixed(0)} s`,
    }),
  ];
}
