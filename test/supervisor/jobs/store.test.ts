// How a job's record takes the usage read from its cgroup.
import test from 'ava';
import type { JobRecord } from '../../../src/supervisor/jobs/record.js';
import { endJob, setUsage } from '../../../src/supervisor/jobs/store.js';
import type { ResourceUsage } from '../../../src/workers/protocol.js';

let clock = Date.now();
/** Figures read now: each later than the one before. */
const usage = (memoryBytes: number, memoryPeakBytes: number, cpuUsec: number, sampledAt = ++clock): ResourceUsage => ({
  cpuUsec,
  cpuThrottledUsec: 0,
  memoryBytes,
  memoryPeakBytes,
  ioReadBytes: 0,
  ioWriteBytes: 0,
  sampledAt,
});

test('usage: a memory peak once reported never goes down, neither while the job runs nor in its final figures', (t) => {
  // Where the kernel keeps no peak (cgroup v2 before Linux 5.19), each thread that reads a job's usage knows only the peaks it saw.
  const record = { state: 'RUNNING', usage: null, limits: { memoryBytes: 512 * 1024 * 1024 }, timeoutMs: null } as unknown as JobRecord;
  setUsage(record, usage(100, 100, 1));
  setUsage(record, usage(40, 60, 2));
  t.like(record.usage, { memoryBytes: 40, memoryPeakBytes: 100, cpuUsec: 2 });
  setUsage(record, usage(150, 150, 3));
  t.like(record.usage, { memoryBytes: 150, memoryPeakBytes: 150 });
  endJob(record, { started: true, startFailure: null, exitCode: 0, signal: null, oomKilled: false, stopReason: null, usage: usage(0, 120, 4), supervisorError: null }, new Date());
  t.like(record.usage, { memoryBytes: 0, memoryPeakBytes: 150, cpuUsec: 4 });
  t.is(record.state, 'COMPLETED');
});

test('usage: figures read before the ones the record holds do not replace them (two threads read, answers may cross)', (t) => {
  const record = { state: 'RUNNING', usage: null } as unknown as JobRecord;
  const later = usage(100, 100, 50);
  const earlier = usage(90, 90, 40, later.sampledAt - 10);
  setUsage(record, later);
  setUsage(record, earlier);
  t.is(record.usage, later);
  setUsage(record, usage(80, 80, 60));
  t.like(record.usage, { cpuUsec: 60, memoryBytes: 80, memoryPeakBytes: 100 });
});
