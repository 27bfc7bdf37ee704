// 1. CreateJob → RUNNING for /bin/true with limits, against spawning it from
// Node and against doing the same cgroup work with cgroup-tools.
import { spawn } from 'node:child_process';
import { execa } from 'execa';
import { unary } from '../../cli/connect.js';
import type { Limits } from '../../src/gen/jobworker/v1/jobworker.js';
import { row, type Row } from '../report.js';
import type { BenchServer } from '../server.js';
import { median, percentile, spread, timeEach } from '../stats.js';

const LIMITS: Limits = { maxCpuPercent: 50, maxMemoryMb: 64, maxIoBps: 0, maxPids: 64 };
const CONCURRENCY = 32;

/** Resolves once the child has exec'd (Node emits 'spawn' after a successful execve), as CreateJob does. */
function spawnTrue(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/true', { stdio: 'ignore' });
    child.once('spawn', resolve);
    child.once('error', reject);
  });
}

/** cgcreate, cgset (the same limits), cgexec /bin/true, cgdelete: what a shell script would run. */
async function cgroupTools(driver: string, i: number): Promise<void> {
  const group = `jobworker-bench-cgtools-${process.pid}-${i}`;
  const controllers = `cpu,memory,pids:${group}`;
  const limits =
    driver === 'v2'
      ? ['-r', 'cpu.max=50000 100000', '-r', `memory.max=${64 * 2 ** 20}`, '-r', 'pids.max=64']
      : ['-r', 'cpu.cfs_quota_us=50000', '-r', `memory.limit_in_bytes=${64 * 2 ** 20}`, '-r', 'pids.max=64'];
  await execa('cgcreate', ['-g', controllers]);
  try {
    await execa('cgset', [...limits, group]);
    await execa('cgexec', ['-g', controllers, '/bin/true']);
  } finally {
    // One call per controller: cgroup-tools 2.0.2 given several removes only
    // the first one's group (and exits 0), leaking the rest.
    for (const controller of ['cpu', 'memory', 'pids']) await execa('cgdelete', ['-g', `${controller}:${group}`]);
  }
}

async function ensureCgroupTools(): Promise<void> {
  if ((await execa('sh', ['-c', 'command -v cgcreate'], { reject: false })).exitCode === 0) return;
  await execa('apt-get', ['install', '-y', '-qq', 'cgroup-tools'], { env: { DEBIAN_FRONTEND: 'noninteractive' } });
}

export async function jobStart(server: BenchServer, quick: boolean): Promise<Row[]> {
  const samples = quick ? 30 : 200;
  const client = server.client();
  const create = () => unary(client, 'createJob', { command: '/bin/true', args: [], limits: LIMITS });
  await timeEach(5, create); // warm the connection and the pool
  const ours = await timeEach(samples, create);
  const bare = await timeEach(samples, spawnTrue);
  await ensureCgroupTools();
  const tools = await timeEach(Math.min(samples, 50), (i) => cgroupTools(server.cgroupDriver, i));

  // Throughput: 32 clients, each on a connection of its own, creating jobs back to back.
  const total = quick ? 128 : 640;
  const clients = Array.from({ length: CONCURRENCY }, () => server.client());
  const throughput = async (start: (client: number) => Promise<unknown>): Promise<number> => {
    let left = total;
    const began = performance.now();
    await Promise.all(
      clients.map(async (_, n) => {
        while (left-- > 0) await start(n);
      }),
    );
    return total / ((performance.now() - began) / 1000);
  };
  const oursPerSecond = await throughput((n) => unary(clients[n]!, 'createJob', { command: '/bin/true', args: [], limits: LIMITS }));
  const barePerSecond = await throughput(() => spawnTrue());

  const p50 = median(ours);
  return [
    row({
      name: 'job start p50 (CreateJob → RUNNING, /bin/true with limits)',
      figure: p50,
      unit: 'ms',
      baseline: median(bare),
      baseline_name: 'Node spawn /bin/true',
      goal: { text: 'ratio ≤ 3', maxRatio: 3 },
      spread: spread(ours),
    }),
    row({ name: 'job start p99', figure: percentile(ours, 99), unit: 'ms', baseline: percentile(bare, 99), baseline_name: 'Node spawn p99', spread: spread(ours) }),
    row({
      name: 'job start p50 vs cgroup-tools',
      figure: p50,
      unit: 'ms',
      baseline: median(tools),
      baseline_name: 'cgcreate+cgset+cgexec+3×cgdelete',
      spread: `${spread(tools)} (cgroup-tools)`,
    }),
    row({
      name: `job starts/s, ${CONCURRENCY} concurrent clients`,
      figure: oursPerSecond,
      unit: 'jobs/s',
      baseline: barePerSecond,
      baseline_name: `Node spawn, ${CONCURRENCY} at once`,
      spread: `${total} jobs`,
    }),
  ];
}
