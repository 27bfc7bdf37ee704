// The pool size must not cap the number of running jobs: two supervisor
// threads run a thousand jobs at once.
import test from 'ava';
import { JobStatus, type Job } from '../../src/gen/jobworker/v1/jobworker.js';
import { listAll, startTestServer, unary } from '../helpers/server.js';

const JOBS = 1000;

test.serial(`scale: ${JOBS} concurrent sleep jobs run on two supervisor threads, and all stop`, async (t) => {
  t.timeout(240_000);
  const ts = await startTestServer(t, { workers: 2 });
  const clients = Array.from({ length: 8 }, () => ts.client('admin'));
  const created: Job[] = [];
  // 32 calls in flight at a time, as a load-test harness would drive it.
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async (_, lane) => {
      while (next < JOBS) {
        next += 1;
        const res = await unary(clients[lane % clients.length]!, 'createJob', {
          command: 'sleep',
          args: ['600'],
          limits: { maxCpuPercent: 10, maxMemoryMb: 16, maxIoBps: 0 },
        });
        created.push(res.job!);
      }
    }),
  );
  t.is(created.length, JOBS);
  const listed = await listAll(clients[0]!, {});
  t.is(listed.filter((job) => job.status === JobStatus.JOB_STATUS_RUNNING).length, JOBS, 'all running at once');
  // A grace period no SIGTERM'd sleep needs, however loaded the machine: its end is its own.
  const stopped = await Promise.all(created.map((job, i) => unary(clients[i % clients.length]!, 'stopJob', { id: job.id, graceMs: 60_000 })));
  t.true(stopped.every((res) => res.job!.status === JobStatus.JOB_STATUS_STOPPED));
  t.true(stopped.every((res) => res.job!.signal === 'SIGTERM'), 'each sleep ended on SIGTERM');
});
