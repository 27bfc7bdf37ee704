// 1. CreateJob → RUNNING for /bin/true with limits (and the default isolation),
// against spawning it from Node, against the same start without namespaces,
// and against doing the same cgroup work with cgroup-tools.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { unary } from '../../src/client/channel.js';
import { Network, type Limits } from '../../src/gen/jobworker/v1/jobworker.js';
import { driverFor } from '../../src/workers/cgroup/select.js';
import type { CgroupDriverName } from '../../src/workers/protocol.js';
import { row, type Row } from '../report.js';
import type { BenchServer } from '../server.js';
import { median, percentile, spread, timeEach } from '../stats.js';

const LIMITS: Limits = { maxCpuPercent: 50, maxMemoryMb: 64, maxIoBps: 0, maxPids: 64 };
/** No namespace of its own: what a start costs without isolation (the server's default is every namespace). */
const HOST_NAMESPACES = { pidNamespace: false, mountNamespace: false, network: Network.NETWORK_HOST };
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

/**
 * The kernel's share of a start: a running process moved into a fresh job
 * group in every hierarchy job-init joins, by the same cgroup.procs writes
 * job-init makes. Milliseconds for the writes alone, per sample.
 */
async function cgroupMoves(driverName: CgroupDriverName, count: number): Promise<number[]> {
  const parent = `jobworker-bench-${process.pid}-move`;
  const driver = driverFor({ driver: driverName, parent, mountRoot: '/sys/fs/cgroup' });
  driver.prepare();
  const samples: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const group = driver.create(randomUUID(), { cpuPercent: 50, memoryBytes: 64 * 2 ** 20, ioBps: 0, pids: 64 });
      const child = spawn('sleep', ['60'], { stdio: 'ignore' });
      const exited = once(child, 'exit');
      try {
        await once(child, 'spawn');
        const began = performance.now();
        for (const dir of group.joinDirs) fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(child.pid));
        samples.push(performance.now() - began);
      } finally {
        child.kill('SIGKILL');
        await exited;
        await group.remove();
      }
    }
  } finally {
    for (const hierarchy of ['', ...fs.readdirSync('/sys/fs/cgroup')]) {
      try {
        fs.rmdirSync(path.join('/sys/fs/cgroup', hierarchy, parent));
      } catch {
        // not a hierarchy, or no parent there
      }
    }
  }
  return samples;
}

/** The next `count` starts' phases from the server's log, which may trail the calls' answers a little. */
async function startPhases(server: BenchServer, count: number): Promise<Record<string, number>[]> {
  const phases: Record<string, number>[] = [];
  const giveUp = performance.now() + 5_000;
  while (phases.length < count) {
    if (performance.now() > giveUp) throw new Error(`the server logged ${phases.length} of ${count} job starts`);
    phases.push(...server.takeStartPhases());
    if (phases.length < count) await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return phases;
}

/** cgroup-tools, for the baseline: installed before anything is timed (npm run bench does it before starting the server). */
export async function ensureCgroupTools(): Promise<void> {
  if ((await execa('sh', ['-c', 'command -v cgcreate'], { reject: false })).exitCode === 0) return;
  await execa('apt-get', ['install', '-y', '-qq', 'cgroup-tools'], { env: { DEBIAN_FRONTEND: 'noninteractive' } });
}

export async function jobStart(server: BenchServer, quick: boolean): Promise<Row[]> {
  const samples = quick ? 30 : 200;
  const client = server.client();
  const create = () => unary(client, 'createJob', { command: '/bin/true', args: [], limits: LIMITS });
  server.takeStartPhases(); // earlier scenarios' starts
  await timeEach(5, create); // warm the connection and the pool
  await startPhases(server, 5);
  const ours = await timeEach(samples, create);
  const phases = await startPhases(server, samples);
  const phase = (key: string) => phases.map((p) => p[key]!);
  const unisolated = await timeEach(samples, () => unary(client, 'createJob', { command: '/bin/true', args: [], limits: LIMITS, isolation: HOST_NAMESPACES }));
  server.takeStartPhases();
  const bare = await timeEach(samples, spawnTrue);
  const moves = await cgroupMoves(server.cgroupDriver as CgroupDriverName, samples);
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
    ...(
      [
        ['cgroupMs', 'of which: creating the cgroups and writing limits, p50'],
        ['spawnMs', 'of which: starting job-init from the server (posix_spawn + exec), p50'],
        ['execMs', 'of which: job-init joining the cgroups, handing over pipes, namespaces and mounts, exec, p50'],
        ['totalMs', 'of which: all the server-side work (adds pool dispatch, thread hops), p50'],
      ] as const
    ).map(([key, name]) => row({ name, figure: median(phase(key)), unit: 'ms', baseline: p50, baseline_name: 'job start p50', spread: spread(phase(key)) })),
    row({
      name: "the kernel's share: moving a process into its job cgroups, p50",
      figure: median(moves),
      unit: 'ms',
      baseline: p50,
      baseline_name: 'job start p50',
      spread: spread(moves),
    }),
    row({
      name: 'job start p50 in the host namespaces (no isolation)',
      figure: median(unisolated),
      unit: 'ms',
      baseline: p50,
      baseline_name: 'job start p50 (PID, mount, net, UTS, IPC namespaces)',
      spread: spread(unisolated),
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
