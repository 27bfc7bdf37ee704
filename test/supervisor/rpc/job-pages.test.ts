// GetJobs pages over a real store and job history: bounded in bytes as well
// as in count, and a token that goes on exactly where its page ended,
// whatever was pruned meanwhile.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { pino } from 'pino';
import { GetJobsReq, JobStatus, Jobs, type Job } from '../../../src/gen/jobworker/v1/jobworker.js';
import { JobHistory } from '../../../src/supervisor/jobs/history.js';
import { JobStore } from '../../../src/supervisor/jobs/store.js';
import { OutputLog } from '../../../src/supervisor/output/log.js';
import { MAX_REQUEST_BYTES } from '../../../src/supervisor/policy/command.js';
import { MAX_PAGE_BYTES, encodeJobsPage, readPage } from '../../../src/supervisor/rpc/job-pages.js';
import { storedJob } from '../../helpers/history.js';

const logger = pino({ level: 'silent' });

/** A store holding ended jobs as a restart reads them back; `jobs` are [start ms, id, args]. */
function storeOf(t: ExecutionContext, jobs: [number, string, string[]?][]): JobStore {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-pages-'));
  const history = JobHistory.open(dir, []);
  t.teardown(() => {
    history.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const store = new JobStore(history);
  const earlier = jobs.map(([startedAt, id, args = []]) => {
    const job = storedJob(id, { args, startedAt: new Date(startedAt), owner: 'alice', limits: { cpuPercent: 100, memoryBytes: 512 * 1024 * 1024, ioBps: 0, pids: 0 } });
    history.put(job);
    return { job, log: new OutputLog({ dir: path.join(dir, 'output', id), maxBytes: 1024 * 1024, logger }) };
  });
  store.restore(earlier, new Date());
  return store;
}

const id = (n: number): string => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const ids = (jobs: Job[]): string[] => jobs.map((job) => job.id);
const page = (store: JobStore, request: Partial<GetJobsReq>) => readPage(store, { request: GetJobsReq.fromPartial(request) });

test('pages: newest first, by start time then id; the token goes on right after the last job of the page', async (t) => {
  const store = storeOf(t, [
    [1000, id(1)],
    [2000, id(4)],
    [2000, id(2)],
    [2000, id(3)],
    [3000, id(5)],
  ]);
  const first = await page(store, { pageSize: 2 });
  t.deepEqual(ids(first.jobs), [id(5), id(4)]);
  const second = await page(store, { pageSize: 2, pageToken: first.nextPageToken });
  t.deepEqual(ids(second.jobs), [id(3), id(2)]);
  const third = await page(store, { pageSize: 2, pageToken: second.nextPageToken });
  t.deepEqual(ids(third.jobs), [id(1)]);
  t.is(third.nextPageToken, '');
});

test('pages: when the job a token names is pruned, the next page still starts with the job after it, even one started in the same millisecond', async (t) => {
  const store = storeOf(t, [
    [1000, id(1)],
    [2000, id(2)],
    [2000, id(3)],
    [2000, id(4)],
    [3000, id(5)],
  ]);
  const first = await page(store, { pageSize: 2 });
  t.deepEqual(ids(first.jobs), [id(5), id(4)]);
  store.remove(store.get(id(4))!);
  const second = await page(store, { pageSize: 2, pageToken: first.nextPageToken });
  t.deepEqual(ids(second.jobs), [id(3), id(2)], 'jobs 3 and 2 started in the same millisecond as the pruned job 4');
});

test('pages: an answer ends before it would pass ~1 MiB, whatever page_size says, and the pages together hold every job once', async (t) => {
  // Ten jobs at the request cap: 2.5 MiB of arguments in all.
  const big = ['x'.repeat(MAX_REQUEST_BYTES / 2 - 16), 'y'.repeat(MAX_REQUEST_BYTES / 2 - 16)];
  const store = storeOf(t, Array.from({ length: 10 }, (_, i): [number, string, string[]] => [1000 + i, id(i), big]));
  const seen: string[] = [];
  let token = '';
  let pages = 0;
  do {
    const answer = await page(store, { pageToken: token });
    // What goes out: the jobs as encoded for the size check, byte for byte the generated encoding.
    const sent = encodeJobsPage(answer);
    t.deepEqual(sent, Buffer.from(Jobs.encode({ jobs: answer.jobs, nextPageToken: answer.nextPageToken }).finish()));
    t.true(sent.length <= MAX_PAGE_BYTES, `page ${pages + 1} holds ${sent.length} bytes`);
    t.true(answer.jobs.length > 0);
    seen.push(...ids(answer.jobs));
    token = answer.nextPageToken;
    pages += 1;
  } while (token !== '');
  t.deepEqual(seen, Array.from({ length: 10 }, (_, i) => id(9 - i)));
  t.true(pages >= 3, `${pages} pages`);
});

test('pages: filters apply before the page is cut, and a bad token or status is INVALID_ARGUMENT', async (t) => {
  const store = storeOf(t, [
    [1000, id(1)],
    [2000, id(2)],
  ]);
  t.deepEqual(ids((await page(store, { status: JobStatus.JOB_STATUS_COMPLETED, owner: 'alice' })).jobs), [id(2), id(1)]);
  t.deepEqual((await page(store, { owner: 'bob' })).jobs, []);
  await t.throwsAsync(page(store, { pageToken: 'not-a-token' }), { message: /^page_token is not one this server gave out/ });
  await t.throwsAsync(page(store, { status: JobStatus.JOB_STATUS_INITIALIZING }), { message: /^status must be one of/ });
  await t.throwsAsync(page(store, { pageSize: 10_001 }), { message: 'page_size must be at most 10000, got 10001' });
});
