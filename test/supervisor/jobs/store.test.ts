// How a job's record takes the usage read from its cgroup.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { pino } from 'pino';
import { JobHistory } from '../../../src/supervisor/jobs/history.js';
import type { JobRecord } from '../../../src/supervisor/jobs/record.js';
import { endJob, JobStore, setUsage } from '../../../src/supervisor/jobs/store.js';
import { OutputLog, jobLogOptions } from '../../../src/supervisor/output/log.js';
import { storedJob } from '../../helpers/history.js';
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

test('a waiting job whose start was recorded as begun, but not as done, is FAILED at the next start, never waiting to start again', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-store-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const logger = pino({ level: 'silent' });
  const stored = storedJob('waiter', { state: 'WAITING', pid: 0, cgroup: '', startedAt: null, endedAt: null, exitCode: null, after: [{ id: 'first', condition: 'ok' }], env: { A: 'b' } });
  const history = JobHistory.open(dir, []);
  t.teardown(() => history.close());
  history.put(stored);
  const { waiting } = new JobStore(history).restore([{ job: stored, log: new OutputLog(jobLogOptions(dir, 'waiter', 1024, logger)) }], new Date());
  t.is(waiting.length, 1);
  new JobStore(history).recordStarting(waiting[0]!.record);
  // The server dies here. Its next start:
  const [row] = history.load([]);
  const after = new JobStore(history).restore([{ job: row!, log: new OutputLog(jobLogOptions(dir, 'waiter', 1024, logger)) }], new Date());
  t.deepEqual(after.waiting, []);
  t.deepEqual(after.interrupted, ['waiter']);
  t.is(history.load([])[0]!.state, 'FAILED');
  t.is(history.load([])[0]!.env, null);
});
