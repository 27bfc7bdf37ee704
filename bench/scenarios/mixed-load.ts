// 10. Server memory under sustained mixed load, as a harness drives it: 16
// clients, each creating jobs in a loop for minutes, every job writing up
// to 2 MB; some followed live by two readers, some stopped mid-run, some
// followed by a reader that cancels early, some read back once they have
// ended. Every byte a reader of a whole job expected is checked to have
// come. On a fresh server of its own (as scenario 7), its RSS read every
// 50 ms and its V8 heap and external memory every second from its metrics,
// to say where the peak went.
import { status } from '@grpc/grpc-js';
import { unary } from '../../src/client/channel.js';
import { GetJobsStreamReq, type DataChunk, type JobServiceClient } from '../../src/gen/jobworker/v1/jobworker.js';
import { row, type Row } from '../report.js';
import { startBenchServer, type BenchServer } from '../server.js';
import { median } from '../stats.js';

const CLIENTS = 16;
const MAX_JOB_BYTES = 2 * 1000 * 1000;
const GOAL_MB = 300;
const MB = 1e6;

type Kind = 'unread' | 'two followers' | 'stopped mid-run' | 'follower cancels';
const KINDS: readonly Kind[] = ['unread', 'two followers', 'stopped mid-run', 'follower cancels'];

/** Reads the job's output (following it, or what there is), cancelling after `upTo` bytes; the bytes that came. */
function read(client: JobServiceClient, id: string, follow: boolean, upTo = Number.POSITIVE_INFINITY): Promise<number> {
  const stream = client.getJobsStream(GetJobsStreamReq.fromPartial({ id, follow }));
  let got = 0;
  return new Promise<number>((resolve, reject) => {
    stream.on('data', (chunk: DataChunk) => {
      got += chunk.data.length;
      if (got < upTo) return;
      stream.cancel();
      resolve(got);
    });
    stream.on('end', () => resolve(got));
    stream.on('error', (err: Error & { code?: number }) => (err.code === status.CANCELLED ? resolve(got) : reject(err)));
  });
}

/** One job of the given kind, start to end; throws if a reader of the whole job got fewer bytes than it wrote. */
async function oneJob(admin: JobServiceClient, viewer: JobServiceClient, kind: Kind, bytes: number): Promise<void> {
  const command = kind === 'stopped mid-run' ? ['sh', '-c', `head -c ${bytes} /dev/zero; sleep 600`] : ['head', '-c', String(bytes), '/dev/zero'];
  const { job } = await unary(admin, 'createJob', { command: command[0]!, args: command.slice(1), limits: undefined });
  const id = job!.id;
  const whole = (got: number): void => {
    if (got !== bytes) throw new Error(`job ${id} (${kind}): a reader got ${got} of ${bytes} bytes`);
  };
  switch (kind) {
    case 'unread':
      await unary(admin, 'waitJob', { id });
      whole(await read(viewer, id, false));
      return;
    case 'two followers':
      for (const got of await Promise.all([read(viewer, id, true), read(admin, id, true)])) whole(got);
      return;
    case 'stopped mid-run': {
      const following = read(viewer, id, true);
      await read(admin, id, true, Math.max(1, bytes / 2));
      await unary(admin, 'stopJob', { id, graceMs: 0 });
      // It wrote all its bytes before it slept, or was stopped while writing: never more than that.
      if ((await following) > bytes) throw new Error(`job ${id}: a follower got more bytes than it wrote`);
      return;
    }
    case 'follower cancels':
      await read(viewer, id, true, 64 * 1024);
      await unary(admin, 'waitJob', { id });
      return;
  }
}

/** The server's V8 heap and external memory now, from its metrics (prom-client's default collectors). */
async function heapOf(server: BenchServer): Promise<{ heapUsed: number; heapTotal: number; external: number }> {
  const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
  return { heapUsed: value('nodejs_heap_size_used_bytes'), heapTotal: value('nodejs_heap_size_total_bytes'), external: value('nodejs_external_memory_bytes') };
}

export async function mixedLoad(_shared: BenchServer, quick: boolean): Promise<Row[]> {
  const server = await startBenchServer({ name: 'mixed' });
  try {
    return await measure(server, quick);
  } finally {
    await server.stop();
  }
}

async function measure(server: BenchServer, quick: boolean): Promise<Row[]> {
  const seconds = quick ? 60 : 300;
  const idle = server.memory().rss;
  const rss: number[] = [];
  const heaps: { at: number; heapUsed: number; heapTotal: number; external: number }[] = [];
  const rssTimer = setInterval(() => rss.push(server.memory().rss), 50);
  const heapTimer = setInterval(() => void heapOf(server).then((heap) => heaps.push({ at: rss.length, ...heap }), () => undefined), 1_000);
  const until = performance.now() + seconds * 1000;
  const counts = new Map<Kind, number>(KINDS.map((kind) => [kind, 0]));
  let written = 0;
  try {
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        const admin = server.client('admin');
        const viewer = server.client('viewer');
        // Each client's sizes from a fixed sequence of its own: a run's jobs are the same whatever the timing.
        let seed = c + 1;
        for (let i = c; performance.now() < until; i += CLIENTS) {
          const kind = KINDS[i % KINDS.length]!;
          seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
          const bytes = 1 + (seed % MAX_JOB_BYTES);
          await oneJob(admin, viewer, kind, bytes);
          counts.set(kind, counts.get(kind)! + 1);
          written += bytes;
        }
      }),
    );
  } finally {
    clearInterval(rssTimer);
    clearInterval(heapTimer);
  }
  const peak = Math.max(...rss);
  const peakAt = rss.indexOf(peak);
  // The heap reading nearest the peak: how much of it V8's heaps and external (Buffer) memory held.
  const near = heaps.reduce((best, heap) => (Math.abs(heap.at - peakAt) < Math.abs(best.at - peakAt) ? heap : best), heaps[0]!);
  const jobs = [...counts.values()].reduce((a, b) => a + b, 0);
  const mix = [...counts].map(([kind, count]) => `${count} ${kind}`).join(', ');
  const where = near
    ? `near the peak: V8 heap ${(near.heapUsed / MB).toFixed(0)} MB used of ${(near.heapTotal / MB).toFixed(0)}, external ${(near.external / MB).toFixed(0)} MB`
    : 'no heap reading';
  return [
    row({
      name: `server peak RSS, ${CLIENTS} clients for ${seconds} s of mixed jobs of up to 2 MB`,
      figure: peak / MB,
      unit: 'MB',
      baseline: GOAL_MB,
      baseline_name: 'goal',
      baseline_kind: 'goal',
      goal: { text: `≤ ${GOAL_MB} MB`, maxRatio: 1 },
      spread: `RSS idle ${(idle / MB).toFixed(0)} MB, median under load ${(median(rss) / MB).toFixed(0)} MB; ${where}; ${jobs} jobs (${mix}), ${(written / MB).toFixed(0)} MB written, every whole read complete`,
    }),
  ];
}
