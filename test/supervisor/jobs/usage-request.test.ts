// Asking a job's supervisor thread for the job's usage: a thread that never
// answers (wedged) must not collect a listener per GetJob.
import { MessageChannel } from 'node:worker_threads';
import test from 'ava';
import { askUsage } from '../../../src/supervisor/jobs/usage-request.js';
import type { MainToTask, UsageReport } from '../../../src/workers/protocol.js';

test('usage: a thread that never answers leaves no listener behind, however often it is asked', async (t) => {
  const { port1: main, port2: wedged } = new MessageChannel();
  t.teardown(() => main.close());
  const before = main.listenerCount('message');
  for (let i = 0; i < 20; i++) t.is(await askUsage(main, new Promise(() => undefined), 5), null);
  t.is(main.listenerCount('message'), before);
  wedged.close();
});

test('usage: the answer is what the thread read, and the listener goes with it', async (t) => {
  const { port1: main, port2: thread } = new MessageChannel();
  t.teardown(() => {
    main.close();
    thread.close();
  });
  const usage = { cpuUsec: 1, cpuThrottledUsec: 2, memoryBytes: 3, memoryPeakBytes: 4, ioReadBytes: 5, ioWriteBytes: 6, sampledAt: 7 };
  thread.on('message', (message: MainToTask) => {
    if (message.type === 'usage') thread.postMessage({ type: 'usage', usage } satisfies UsageReport);
  });
  const before = main.listenerCount('message');
  t.deepEqual(await askUsage(main, new Promise(() => undefined), 10_000), usage);
  t.is(main.listenerCount('message'), before);
});
