// 3. GetJob latency while 4 jobs write output flat out, with no reader and
// then with one follower each, against the same server idle.
import path from 'node:path';
import { execa } from 'execa';
import { unary } from '../../src/client/channel.js';
import type { JobServiceClient } from '../../src/gen/jobworker/v1/jobworker.js';
import { row, type Row } from '../report.js';
import { REPO, startBenchServer, type BenchServer } from '../server.js';
import { median, percentile, spread } from '../stats.js';

const FLOODERS = 4;

/** Milliseconds of each of `count` GetJob calls of job `id`, one after another. */
export async function latencies(client: JobServiceClient, id: string, count: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const began = performance.now();
    await unary(client, 'getJob', { id });
    samples.push(performance.now() - began);
  }
  return samples;
}

/**
 * A follower that keeps up: jobctl in a process of its own, so that
 * decoding its stream does not slow the probe's own calls down.
 */
function follow(server: BenchServer, id: string): Promise<unknown> {
  return execa('node', [path.join(REPO, 'bin/jobctl.js'), 'stream', '--follow', id], { env: server.env(), stdout: 'ignore', reject: false });
}

interface FloodLatencies {
  idle: number[];
  noReaders: number[];
  withFollowers: number[];
}

/** GetJob latencies on one server: idle (half before the floods, half after), while FLOODERS jobs write flat out with no reader, and with one follower each. */
async function underFlood(server: BenchServer, count: number): Promise<FloodLatencies> {
  // Long enough to outlast the sampling; stopped once it is done.
  const flood = { command: 'sh', args: ['-c', 'exec cat /dev/zero'], limits: undefined };
  const admin = server.client();
  const probe = server.client('viewer');
  const target = (await unary(admin, 'createJob', { command: 'sleep', args: ['600'], limits: undefined })).job!.id;
  await latencies(probe, target, 20); // warm
  // Half before the floods and half after: the machine's own drift then
  // weighs on the baseline as on the figures.
  const idleBefore = await latencies(probe, target, Math.ceil(count / 2));

  const measure = async (followers: boolean): Promise<number[]> => {
    const ids = await Promise.all(Array.from({ length: FLOODERS }, async () => (await unary(admin, 'createJob', flood)).job!.id));
    const readers = followers ? ids.map((id) => follow(server, id)) : [];
    try {
      return await latencies(probe, target, count);
    } finally {
      await Promise.all(ids.map((id) => unary(admin, 'stopJob', { id, graceMs: 0 })));
      await Promise.all(readers);
    }
  };
  const noReaders = await measure(false);
  const withFollowers = await measure(true);
  const idle = [...idleBefore, ...(await latencies(probe, target, Math.floor(count / 2)))];
  await unary(admin, 'stopJob', { id: target, graceMs: 0 });
  return { idle, noReaders, withFollowers };
}

export async function rpcUnderFlood(server: BenchServer, quick: boolean): Promise<Row[]> {
  const count = quick ? 100 : 300;
  const ring = await underFlood(server, count);
  // The same flood on a server whose main thread reads the job pipes itself:
  // what the rings and the supervisor threads buy.
  const inlineServer = await startBenchServer({ name: 'inline', args: ['--output-path', 'inline'] });
  let inline: FloodLatencies;
  try {
    inline = await underFlood(inlineServer, count);
  } finally {
    await inlineServer.stop();
  }
  const p99Goal = { text: 'p99 ratio ≤ 2', maxRatio: 2 };
  const p99 = (samples: number[]) => percentile(samples, 99);
  return [
    row({ name: `GetJob p50, ${FLOODERS} jobs flooding output, no readers`, figure: median(ring.noReaders), unit: 'ms', baseline: median(ring.idle), baseline_name: 'idle p50', spread: spread(ring.noReaders) }),
    row({ name: `GetJob p99, ${FLOODERS} jobs flooding output, no readers`, figure: p99(ring.noReaders), unit: 'ms', baseline: p99(ring.idle), baseline_name: 'idle p99', goal: p99Goal, spread: spread(ring.noReaders) }),
    row({ name: `GetJob p50, ${FLOODERS} jobs flooding, one follower each`, figure: median(ring.withFollowers), unit: 'ms', baseline: median(ring.idle), baseline_name: 'idle p50', spread: spread(ring.withFollowers) }),
    row({ name: `GetJob p99, ${FLOODERS} jobs flooding, one follower each`, figure: p99(ring.withFollowers), unit: 'ms', baseline: p99(ring.idle), baseline_name: 'idle p99', goal: p99Goal, spread: spread(ring.withFollowers) }),
    row({ name: 'inline output path: GetJob p99, idle', figure: p99(inline.idle), unit: 'ms', baseline: p99(ring.idle), baseline_name: 'rings, idle p99', spread: spread(inline.idle) }),
    row({ name: 'inline output path: GetJob p99, flooding, no readers', figure: p99(inline.noReaders), unit: 'ms', baseline: p99(ring.noReaders), baseline_name: 'rings, same flood', spread: spread(inline.noReaders) }),
    row({ name: 'inline output path: GetJob p99, flooding, one follower each', figure: p99(inline.withFollowers), unit: 'ms', baseline: p99(ring.withFollowers), baseline_name: 'rings, same flood', spread: spread(inline.withFollowers) }),
  ];
}
