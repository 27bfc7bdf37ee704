// GetJobs answers a page at a time, newest first. A page ends at page_size
// jobs or before its encoded size would pass MAX_PAGE_BYTES, whichever comes
// first: what users send (a job's request may take 256 KiB) can never make
// an answer too big for a client to receive. A page token is the position
// of the page's last job (its start time and id, which order the list), so
// the next page goes on exactly after it even when that job has been pruned.
import { Job, JobStatus, type GetJobsReq } from '../../gen/jobworker/v1/jobworker.js';
import { MAX_PAGE_SIZE } from '../../common/api-limits.js';
import { Errors } from '../errors.js';
import type { JobRecord } from '../jobs/record.js';
import type { JobStore, ListPosition } from '../jobs/store.js';
import { STATUS, toJob } from './job-view.js';

/** About this much per answer: a quarter of the 4 MiB a gRPC client takes by default. */
export const MAX_PAGE_BYTES = 1024 * 1024;
/** A repeated message field: its tag, and the varint of its length (a Job is under 2 MiB: 3 bytes). */
const FIELD_OVERHEAD = 1 + 3;
/** A ResourceUsage at its largest: six uint64 fields and a timestamp, with their tags and lengths. */
const USAGE_RESERVE = 2 + 6 * 11 + 2 + 2 * 11;

export interface PageQuery {
  request: GetJobsReq;
  /** Called with the page's records before they are encoded (GetJobs fresh_usage reads their usage). */
  refresh?: (records: JobRecord[]) => Promise<void>;
}

export async function readPage(store: JobStore, { request, refresh }: PageQuery): Promise<{ jobs: Job[]; nextPageToken: string }> {
  if (request.pageSize > MAX_PAGE_SIZE) throw Errors.invalidArgument(`page_size must be at most ${MAX_PAGE_SIZE}, got ${request.pageSize}`);
  if (request.status === JobStatus.UNRECOGNIZED || request.status === JobStatus.JOB_STATUS_INITIALIZING) {
    throw Errors.invalidArgument('status must be one of RUNNING, COMPLETED, FAILED, STOPPED');
  }
  const after = request.pageToken === '' ? undefined : parsePageToken(request.pageToken);
  const limit = request.pageSize === 0 ? MAX_PAGE_SIZE : request.pageSize;
  // One match past the page says there is a next page. Taken in one
  // synchronous walk: the store's order cannot change under it.
  const candidates: JobRecord[] = [];
  for (const job of store.newestFirst(after)) {
    if (!matches(job, request)) continue;
    candidates.push(job);
    if (candidates.length > limit) break;
  }
  const more = candidates.length > limit;
  if (more) candidates.pop();
  // The page is cut first, then only its running jobs' usage is read afresh
  // (each a round trip to a supervisor thread): room is kept for figures a
  // job did not carry yet.
  const reserve = refresh ? USAGE_RESERVE : 0;
  let bytes = 0;
  let count = 0;
  for (const record of candidates) {
    const size = encodedSize(record) + (record.state === 'RUNNING' ? reserve : 0);
    // Never an empty page: one job always fits (its request is capped far below this).
    if (count > 0 && bytes + size > MAX_PAGE_BYTES) break;
    bytes += size;
    count += 1;
  }
  const page = candidates.slice(0, count);
  await refresh?.(page);
  const last = page[page.length - 1];
  return { jobs: page.map(toJob), nextPageToken: (count < candidates.length || more) && last ? pageToken(last) : '' };
}

function encodedSize(record: JobRecord): number {
  return Job.encode(toJob(record)).finish().length + FIELD_OVERHEAD;
}

function matches(job: JobRecord, request: GetJobsReq): boolean {
  return (request.status === JobStatus.JOB_STATUS_UNSPECIFIED || STATUS[job.state] === request.status) && (request.owner === '' || job.owner === request.owner);
}

function pageToken(job: JobRecord): string {
  return Buffer.from(`${job.startedAt.getTime()}:${job.id}`).toString('base64url');
}

function parsePageToken(token: string): ListPosition {
  const match = /^(\d{1,15}):([0-9a-f-]{36})$/.exec(Buffer.from(token, 'base64url').toString());
  if (!match) throw Errors.invalidArgument(`page_token is not one this server gave out: ${JSON.stringify(token.length > 64 ? `${token.slice(0, 64)}…` : token)}`);
  return { startedAt: Number(match[1]), id: match[2]! };
}
