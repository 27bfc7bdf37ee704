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
  await refresh?.(candidates);
  const jobs: Job[] = [];
  let bytes = 0;
  for (const record of candidates) {
    const job = toJob(record);
    const size = Job.encode(job).finish().length + FIELD_OVERHEAD;
    // Never an empty page: one job always fits (its request is capped far below this).
    if (jobs.length > 0 && bytes + size > MAX_PAGE_BYTES) break;
    jobs.push(job);
    bytes += size;
  }
  const last = candidates[jobs.length - 1];
  const cut = jobs.length < candidates.length || more;
  return { jobs, nextPageToken: cut && last ? pageToken(last) : '' };
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
