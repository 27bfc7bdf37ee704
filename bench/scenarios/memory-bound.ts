// 7. Server memory while one job writes a lot of output and nobody reads it.
import { unary } from '../../cli/connect.js';
import { row, type Row } from '../report.js';
import type { BenchServer } from '../server.js';

export async function memoryBound(server: BenchServer, quick: boolean): Promise<Row[]> {
  const mib = quick ? 256 : 2048;
  const client = server.client();
  const idle = server.memory().rss;
  const job = (await unary(client, 'createJob', { command: 'head', args: ['-c', `${mib}M`, '/dev/zero'], limits: undefined })).job!;
  // Ended means every byte went through the ring into the log.
  let peak = 0;
  for (;;) {
    peak = Math.max(peak, server.memory().rss);
    const { job: now } = await unary(client, 'getJob', { id: job.id });
    if (now!.endedAt) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  peak = Math.max(peak, server.memory().rss);
  return [
    row({
      name: `server peak RSS, one job writing ${mib} MiB, no reader`,
      figure: peak / 2 ** 20,
      unit: 'MiB',
      baseline: idle / 2 ** 20,
      baseline_name: 'RSS before',
      spread: '-',
      note: 'output is kept in memory until disk-backed logs land (issue 6)',
    }),
  ];
}
