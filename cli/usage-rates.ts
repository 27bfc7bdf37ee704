// Rates from two readings of a job's usage, as `jobctl top` shows them. Each
// reading carries the time the server took it, so the rate is over the
// server's interval, not over however long the two calls took to answer.
import type { Job } from '../src/gen/jobworker/v1/jobworker.js';

export interface JobRates {
  /** Percent of one CPU core (100 = one core busy), as --max-cpu counts it; null without an earlier reading. */
  cpuPercent: number | null;
  /** Block-device reads and writes together, bytes per second; null without an earlier reading. */
  ioBytesPerSecond: number | null;
}

export function ratesBetween(earlier: Job | undefined, later: Job): JobRates {
  const before = earlier?.usage;
  const after = later.usage;
  const seconds = before?.sampledAt && after?.sampledAt ? (after.sampledAt.getTime() - before.sampledAt.getTime()) / 1000 : 0;
  if (!before || !after || seconds <= 0) return { cpuPercent: null, ioBytesPerSecond: null };
  const io = (usage: typeof after): number => usage.ioReadBytes + usage.ioWriteBytes;
  return {
    cpuPercent: Math.max(0, (after.cpuUsec - before.cpuUsec) / 1e6 / seconds) * 100,
    ioBytesPerSecond: Math.max(0, io(after) - io(before)) / seconds,
  };
}
