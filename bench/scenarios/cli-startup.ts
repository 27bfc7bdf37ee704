// 6. jobctl get / list against a warm server, beside `node -e 0` (the floor
// for any Node program's start), beside the same CLI run unbundled, from
// the modules tsc wrote (what bin/jobctl.js ran before the bundle), and
// beside the bundle run without its code cache.
import path from 'node:path';
import { execa } from 'execa';
import { unary } from '../../src/client/channel.js';
import { row, type Row } from '../report.js';
import { REPO, type BenchServer } from '../server.js';
import { median, spread } from '../stats.js';

export async function cliStartup(server: BenchServer, quick: boolean): Promise<Row[]> {
  const runs = quick ? 8 : 30;
  const client = server.client();
  const job = (await unary(client, 'createJob', { command: '/bin/true', args: [], limits: undefined })).job!;
  const jobs = (await unary(client, 'getJobs', {})).jobs.length;
  const node = (...args: string[]) => execa('node', args, { env: server.env() });
  const variants = {
    floor: () => node('-e', '0'),
    get: () => node(path.join(REPO, 'bin/jobctl.js'), 'get', job.id),
    unbundled: () => node(path.join(REPO, 'dist/cli/main.js'), 'get', job.id),
    uncached: () => execa('node', [path.join(REPO, 'bin/jobctl.js'), 'get', job.id], { env: { ...server.env(), JOBCTL_CODE_CACHE: 'off' } }),
    list: () => node(path.join(REPO, 'bin/jobctl.js'), 'list'),
  };
  // Round-robin, so that the machine's drift weighs on every variant alike.
  const samples: Record<keyof typeof variants, number[]> = { floor: [], get: [], unbundled: [], uncached: [], list: [] };
  for (let i = 0; i < runs; i++) {
    for (const [name, run] of Object.entries(variants) as [keyof typeof variants, () => Promise<unknown>][]) {
      const began = performance.now();
      await run();
      samples[name].push(performance.now() - began);
    }
  }
  const { floor, get, unbundled, uncached, list } = samples;
  return [
    row({ name: 'jobctl get (wall)', figure: median(get), unit: 'ms', baseline: median(floor), baseline_name: 'node -e 0', spread: spread(get) }),
    row({ name: 'jobctl get, bundled (bin/jobctl.js)', figure: median(get), unit: 'ms', baseline: median(unbundled), baseline_name: 'unbundled, dist/cli/main.js', spread: spread(unbundled) + ' (unbundled)' }),
    row({ name: 'jobctl get, with the code cache', figure: median(get), unit: 'ms', baseline: median(uncached), baseline_name: 'the same bundle without it (JOBCTL_CODE_CACHE=off)', spread: spread(uncached) + ' (without)' }),
    row({ name: `jobctl list of ${jobs} jobs (wall)`, figure: median(list), unit: 'ms', baseline: median(floor), baseline_name: 'node -e 0', spread: spread(list) }),
  ];
}
