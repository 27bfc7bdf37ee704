// A follower's stream ends once the job's log is closed; the job's end is
// recorded only after its output is on disk. What a follower is told must
// already hold for GetJob and GetJobs, however slow the disk.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { JobStatus } from '../../../src/gen/jobworker/v1/jobworker.js';
import { scratchDir, waitUntil } from '../../helpers/host.js';
import { collectStream, firstOutput, HOST_VIEW, startTestServer, unary } from '../../helpers/server.js';

/** libuv's thread pool, which runs every asynchronous file operation of this process (the server's included). */
const POOL_THREADS = Number(process.env.UV_THREADPOOL_SIZE ?? 4);

/**
 * Holds every pool thread in open(2) of a FIFO with no writer, so the
 * server's writes and closes of output files wait: a disk that has stalled.
 */
function stallFileOperations(dir: string): () => Promise<void> {
  const fifos = Array.from({ length: POOL_THREADS }, (_, i) => path.join(dir, `stall-${i}`));
  for (const fifo of fifos) execFileSync('mkfifo', [fifo]);
  const opened = Promise.all(fifos.map((fifo) => fs.promises.open(fifo, 'r')));
  return async () => {
    // Opening a FIFO read-write never blocks and lets its readers' opens return.
    const writers = fifos.map((fifo) => fs.openSync(fifo, 'r+'));
    for (const handle of await opened) await handle.close();
    for (const fd of writers) fs.closeSync(fd);
  };
}

test('a follower that has seen the end finds the job ended in the job list, even while its output is still being written', async (t) => {
  const ts = await startTestServer(t, { isolation: HOST_VIEW, metricsListen: '127.0.0.1:0' }); // the job waits for a file of the test's
  const client = ts.client('admin');
  const dir = scratchDir(t, '/tmp');
  const go = path.join(dir, 'go');
  const { job } = await unary(client, 'createJob', { command: 'sh', args: ['-c', `echo started; while [ ! -e ${go} ]; do sleep 0.01; done; echo done`] });
  const id = job!.id;
  // GetJobs, as it answers from the record at once (GetJob of a running job first asks its thread for usage).
  const statusAtEnd = collectStream(client, { id, follow: true }).then(async () => (await unary(client, 'getJobs', {})).jobs.find((j) => j.id === id)?.status);
  await firstOutput(client, id);

  const release = stallFileOperations(dir);
  try {
    fs.writeFileSync(go, '');
    // The job has ended and its log is closed, but its last bytes wait for the disk, and so does its record.
    await waitUntil(() => ts.server.store.get(id)!.log.closed, "the job's log to close");
    t.is(ts.server.store.get(id)!.state, 'RUNNING');
    // A stream ended on the log's close alone has already gone by now (it takes no disk); this one is held.
    const metrics = await (await fetch(`http://127.0.0.1:${ts.server.metricsPort}/metrics`)).text();
    t.regex(metrics, /^jobworker_output_streams_open 1$/m);
  } finally {
    await release();
  }
  t.is(await statusAtEnd, JobStatus.JOB_STATUS_COMPLETED);
});
