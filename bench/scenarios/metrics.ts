// 8. What the Prometheus endpoint costs: one scrape against an HTTP round
// trip to the same endpoint that builds nothing, and GetJob latency while a
// scraper reads /metrics ten times a second against the same calls unscraped.
import { setTimeout as sleep } from 'node:timers/promises';
import { unary } from '../../src/client/channel.js';
import { row, type Row } from '../report.js';
import type { BenchServer } from '../server.js';
import { median, percentile, spread, timeEach } from '../stats.js';

const SCRAPE_EVERY_MS = 100;
/** Ended jobs made first, so that a scrape has a store to count whatever ran before. */
const JOBS = 500;

export async function metrics(server: BenchServer, quick: boolean): Promise<Row[]> {
  const samples = quick ? 30 : 200;
  const url = (path: string): string => `http://127.0.0.1:${server.metricsPort}${path}`;
  const get = async (path: string): Promise<string> => (await fetch(url(path))).text();
  const client = server.client();
  let made = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (made++ < (quick ? JOBS / 10 : JOBS)) await unary(client, 'createJob', { command: 'true' });
    }),
  );
  const exposition = await get('/metrics');
  const jobs = [...exposition.matchAll(/^jobworker_jobs\{state="\w+"\} (\d+)$/gm)].reduce((sum, [, n]) => sum + Number(n), 0);
  const empty = await timeEach(samples, () => get('/none'));
  const scrapes = await timeEach(samples, () => get('/metrics'));

  const { job } = await unary(client, 'createJob', { command: 'sleep', args: ['600'] });
  const id = job!.id;
  const quiet = await timeEach(samples, () => unary(client, 'getJob', { id }));
  let scraping = true;
  const scraper = (async () => {
    while (scraping) {
      await get('/metrics');
      await sleep(SCRAPE_EVERY_MS);
    }
  })();
  const scraped = await timeEach(samples, () => unary(client, 'getJob', { id }));
  scraping = false;
  await scraper;
  await unary(client, 'stopJob', { id, graceMs: 0 });
  return [
    row({
      name: `GET /metrics, ${jobs} jobs held (${Math.round(exposition.length / 1024)} KiB of text)`,
      figure: median(scrapes),
      unit: 'ms',
      baseline: median(empty),
      baseline_name: 'GET of a 404 on the same endpoint',
      spread: spread(scrapes),
    }),
    row({ name: `GetJob p50 while scraped every ${SCRAPE_EVERY_MS} ms`, figure: median(scraped), unit: 'ms', baseline: median(quiet), baseline_name: 'GetJob p50, not scraped', spread: spread(scraped) }),
    row({ name: `GetJob p99 while scraped every ${SCRAPE_EVERY_MS} ms`, figure: percentile(scraped, 99), unit: 'ms', baseline: percentile(quiet, 99), baseline_name: 'GetJob p99, not scraped', spread: spread(scraped) }),
  ];
}
