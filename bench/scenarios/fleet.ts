// 9. The fleet: three nodes and a 3-member etcd cluster on this machine
// (test/helpers/fleet.ts), each figure beside a baseline from the same run.
// All of it shares this machine's cores: three nodes here cannot start jobs
// faster than one, so the first figure is what the fleet's bookkeeping
// costs, not what more hosts would buy.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { unary } from '../../src/client/channel.js';
import { JobStatus, type JobServiceClient } from '../../src/gen/jobworker/v1/jobworker.js';
import { startFleet, type FleetNode } from '../../test/helpers/fleet.js';
import { row, type Row } from '../report.js';
import { REPO, type BenchServer } from '../server.js';
import { median, percentile, spread } from '../stats.js';
import { latencies } from './rpc-under-flood.js';

const CLIENTS = 16;
const LOST_AFTER_MS = 2_000;
const ELECTION_MS = 500;

/** Jobs per second for `count` creates of `true` by CLIENTS concurrent callers, each create answered once the job runs. */
async function startsPerSecond(client: JobServiceClient, count: number, extra: object = {}): Promise<number> {
  let next = 0;
  const began = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next++ < count) await unary(client, 'createJob', { command: 'true', limits: { maxCpuPercent: 1, maxMemoryMb: 16 }, ...extra });
    }),
  );
  return count / ((performance.now() - began) / 1000);
}

/** `jobctl stream --follow` through `node` into `wc -c`: seconds, and it must get every byte. */
async function streamSeconds(node: FleetNode, id: string, bytes: number): Promise<number> {
  const began = performance.now();
  const env = { JOBWORKER_SERVER: `127.0.0.1:${node.port}`, JOBWORKER_CA: `${node.dir}/ca-cert.pem`, JOBWORKER_CERT: `${node.dir}/client-admin-cert.pem`, JOBWORKER_KEY: `${node.dir}/client-admin-key.pem` };
  const streamed = await execa('sh', ['-c', `node "$0" stream --follow "$1" | wc -c`, path.join(REPO, 'bin/jobctl.js'), id], { env });
  if (Number(streamed.stdout.trim()) !== bytes) throw new Error(`jobctl received ${streamed.stdout.trim()} bytes of ${bytes} through ${node.name}`);
  return (performance.now() - began) / 1000;
}

/** User and system CPU seconds of a process so far (all its threads). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
/** USER_HZ: 100 on every Linux this runs on. */
const CLOCK_TICKS = 100;

export async function fleet(server: BenchServer, quick: boolean): Promise<Row[]> {
  const cleanups: (() => unknown)[] = [];
  try {
    const { nodes, etcd } = await startFleet({ teardown: (fn) => cleanups.push(fn) });
    const [n1, n2, n3] = nodes as [FleetNode, FleetNode, FleetNode];
    const rows: Row[] = [];

    // Starts: through n1, placed across the three nodes, against one single host taking the same load.
    const starts = quick ? 100 : 400;
    await startsPerSecond(n1.jobs, 20);
    const spreadRate = await startsPerSecond(n1.jobs, starts);
    const single = server.client();
    const singleRate = await startsPerSecond(single, starts);
    rows.push(row({ name: `job starts through one node, placed over 3 (${CLIENTS} clients, ${starts} jobs)`, figure: spreadRate, unit: 'jobs/s', baseline: singleRate, baseline_name: 'the same load on a single host (no fleet)', spread: 'one run each; the 3 nodes share the same 2 cores' }));

    // A job's output streamed through another node against through its own,
    // in turns (this machine drifts from one run to the next): medians.
    const mib = quick ? 128 : 256;
    const bytes = mib * 1024 * 1024;
    const job = async () => (await unary(n1.jobs, 'createJob', { command: 'head', args: ['-c', `${mib}M`, '/dev/zero'], node: 'n2', limits: { maxCpuPercent: 100 } })).job!.id;
    const local: number[] = [];
    const forwarded: number[] = [];
    // CPU the relaying node spends per second of a forwarded stream: on this
    // machine it is taken from the job's node and jobctl, which share its two cores.
    const relayCpu: number[] = [];
    for (let turn = 0; turn < (quick ? 2 : 4); turn++) {
      local.push(bytes / 1e6 / (await streamSeconds(n2, await job(), bytes)));
      const id = await job();
      const cpuBefore = cpuSeconds(n1.daemon.process.pid!);
      const took = await streamSeconds(n1, id, bytes);
      relayCpu.push((cpuSeconds(n1.daemon.process.pid!) - cpuBefore) / took);
      forwarded.push(bytes / 1e6 / took);
    }
    rows.push(row({
      name: `output streamed through another node (${mib} MiB, jobctl)`,
      figure: median(forwarded),
      unit: 'MB/s',
      baseline: median(local),
      baseline_name: "the same through the job's own node",
      goal: { text: 'ratio ≥ 0.8', minRatio: 0.8 },
      spread: `medians of ${local.length} turns each; forwarded ${spread(forwarded)}, own ${spread(local)}; the relaying node busy ${median(relayCpu).toFixed(2)} of a core meanwhile`,
    }));

    // GetJob of a running job on n2, through n1 and through n2.
    const running = (await unary(n1.jobs, 'createJob', { command: 'sleep', args: ['600'], node: 'n2', limits: { maxCpuPercent: 1 } })).job!.id;
    const count = quick ? 200 : 1000;
    await latencies(n1.jobs, running, 50);
    await latencies(n2.jobs, running, 50);
    const owner = await latencies(n2.jobs, running, count);
    const other = await latencies(n1.jobs, running, count);
    rows.push(row({ name: 'GetJob through another node, p50', figure: median(other), unit: 'ms', baseline: median(owner), baseline_name: "GetJob through the job's own node, p50", spread: spread(other, 2) }));
    rows.push(row({ name: 'GetJob through another node, p99', figure: percentile(other, 99), unit: 'ms', baseline: percentile(owner, 99), baseline_name: "GetJob through the job's own node, p99", spread: spread(other, 2) }));
    await unary(n1.jobs, 'stopJob', { id: running, graceMs: 0 });

    // SIGKILL of a node with a running job: how long until the fleet shows the job lost.
    const doomed = (await unary(n1.jobs, 'createJob', { command: 'sleep', args: ['600'], node: 'n3', limits: { maxCpuPercent: 1 } })).job!.id;
    n3.daemon.process.kill('SIGKILL');
    const killed = performance.now();
    while ((await unary(n1.jobs, 'getJob', { id: doomed })).job!.status !== JobStatus.JOB_STATUS_FAILED) await new Promise((resolve) => setTimeout(resolve, 10));
    const lostMs = performance.now() - killed;
    rows.push(row({ name: 'SIGKILL of a node to its jobs shown lost', figure: lostMs, unit: 'ms', baseline: LOST_AFTER_MS, baseline_name: '--node-lost-after (a constant: the lease TTL)', baseline_kind: 'goal', spread: 'one run; heartbeat 200 ms' }));

    // kill -9 of the etcd leader while one client creates jobs through n1: time until a create begun after it succeeds.
    let stop = false;
    let killedAt = 0;
    let resumed = 0;
    const creator = (async () => {
      while (!stop) {
        const asked = performance.now();
        const ok = await unary(n1.jobs, 'createJob', { command: 'true', node: 'n1', limits: { maxCpuPercent: 1, maxMemoryMb: 16 } }).then(() => true, () => false);
        if (ok && killedAt && asked >= killedAt && !resumed) resumed = performance.now();
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 500));
    await (await etcd.leader()).kill('SIGKILL');
    killedAt = performance.now();
    while (!resumed && performance.now() - killedAt < 30_000) await new Promise((resolve) => setTimeout(resolve, 20));
    stop = true;
    await creator;
    if (!resumed) throw new Error('creates did not resume within 30 s of the etcd leader kill');
    rows.push(row({ name: 'kill -9 of the etcd leader to creates resuming', figure: resumed - killedAt, unit: 'ms', baseline: ELECTION_MS, baseline_name: "etcd's election timeout (a constant)", baseline_kind: 'goal', spread: 'one run' }));
    return rows;
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
  }
}
