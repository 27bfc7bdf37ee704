// 6. jobctl get / list against a warm server, beside `node -e 0`: the floor
// for any Node program's start.
import path from 'node:path';
import { execa } from 'execa';
import { unary } from '../../cli/connect.js';
import { row, type Row } from '../report.js';
import { REPO, type BenchServer } from '../server.js';
import { median, spread, timeEach } from '../stats.js';

export async function cliStartup(server: BenchServer, quick: boolean): Promise<Row[]> {
  const runs = quick ? 8 : 30;
  const job = (await unary(server.client(), 'createJob', { command: '/bin/true', args: [], limits: undefined })).job!;
  const jobctl = (...args: string[]) => execa('node', [path.join(REPO, 'bin/jobctl.js'), ...args], { env: server.env() });
  const floor = await timeEach(runs, () => execa('node', ['-e', '0']));
  const get = await timeEach(runs, () => jobctl('get', job.id));
  const list = await timeEach(runs, () => jobctl('list'));
  return [
    row({ name: 'jobctl get (wall)', figure: median(get), unit: 'ms', baseline: median(floor), baseline_name: 'node -e 0', spread: spread(get) }),
    row({ name: 'jobctl list (wall)', figure: median(list), unit: 'ms', baseline: median(floor), baseline_name: 'node -e 0', spread: spread(list) }),
  ];
}
