// GetJobs answers a page at a time, newest first. A page ends at page_size
// jobs or before its encoded size would pass MAX_PAGE_BYTES, whichever comes
// first: what users send (a job's request may take 256 KiB) can never make
// an answer too big for a client to receive. A page token is the position
// of the page's last job (its creation time and id, which order the list), so
// the next page goes on exactly after it even when that job has been pruned.
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { Job, JobStatus, Jobs, type GetJobsReq } from '../../gen/jobworker/v1/jobworker.js';
import { MAX_PAGE_SIZE } from '../../common/api-limits.js';
import { labelProblem } from '../../common/labels.js';
import { Errors, quoted } from '../errors.js';
import type { JobRecord } from '../jobs/record.js';
import type { JobStore, ListPosition } from '../jobs/store.js';
import { STATUS, toJob } from './job-view.js';

/** About this much per answer: a quarter of the 4 MiB a gRPC client takes by default. */
export const MAX_PAGE_BYTES = 1024 * 1024;
/** A repeated message field: its tag, and the varint of its length (a Job is under 2 MiB: 3 bytes). */
const FIELD_OVERHEAD = 1 + 3;
/** A ResourceUsage at its largest: six uint64 fields and a timestamp, with their tags and lengths. */
const USAGE_RESERVE = 2 + 6 * 11 + 2 + 2 * 11;
const JOBS_TAG = (1 << 3) | 2; // Jobs.jobs: field 1, length-delimited
const TOKEN_TAG = (2 << 3) | 2; // Jobs.next_page_token: field 2, length-delimited

/** A GetJobs answer, and each of its jobs as encoded for the size check: encodeJobsPage sends those bytes. */
export interface JobsPage extends Jobs {
  encoded: Uint8Array[];
}

export interface PageQuery {
  request: GetJobsReq;
  /** Called with the page's records before they are encoded (GetJobs fresh_usage reads their usage). */
  refresh?: (records: JobRecord[]) => Promise<void>;
}

export async function readPage(store: JobStore, { request, refresh }: PageQuery): Promise<JobsPage> {
  if (request.pageSize > MAX_PAGE_SIZE) throw Errors.invalidArgument(`page_size must be at most ${MAX_PAGE_SIZE}, got ${request.pageSize}`);
  if (request.status === JobStatus.UNRECOGNIZED || request.status === JobStatus.JOB_STATUS_INITIALIZING) {
    throw Errors.invalidArgument('status must be one of WAITING, RUNNING, COMPLETED, FAILED, STOPPED, TIMED_OUT');
  }
  checkLabelFilter(request.labels);
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
  // Each job is encoded once, for its size and to be sent. With fresh
  // usage the page is cut first, room kept for figures a job did not carry
  // yet, and only its running jobs are read afresh (each a round trip to a
  // supervisor thread) and encoded again.
  const reserve = refresh ? USAGE_RESERVE : 0;
  const jobs: Job[] = [];
  const encoded: Uint8Array[] = [];
  let bytes = 0;
  for (const record of candidates) {
    const job = toJob(record);
    const bytesOfJob = Job.encode(job).finish();
    const size = bytesOfJob.length + FIELD_OVERHEAD + (record.state === 'RUNNING' ? reserve : 0);
    // Never an empty page: one job always fits (its request is capped far below this).
    if (jobs.length > 0 && bytes + size > MAX_PAGE_BYTES) break;
    jobs.push(job);
    encoded.push(bytesOfJob);
    bytes += size;
  }
  const page = candidates.slice(0, jobs.length);
  if (refresh) {
    await refresh(page);
    // Those that were running have new figures now (or have ended meanwhile).
    page.forEach((record, i) => {
      if (jobs[i]!.status !== JobStatus.JOB_STATUS_RUNNING) return;
      jobs[i] = toJob(record);
      encoded[i] = Job.encode(jobs[i]).finish();
    });
  }
  const last = page[page.length - 1];
  return { jobs, encoded, nextPageToken: (page.length < candidates.length || more) && last ? pageToken(last) : '' };
}

/** GetJobs' response encoder: the jobs as readPage encoded them, not encoded again (the bytes Jobs.encode writes). */
export function encodeJobsPage(page: Jobs | JobsPage): Buffer {
  if (!('encoded' in page)) return Buffer.from(Jobs.encode(page).finish());
  const writer = new BinaryWriter();
  for (const job of page.encoded) writer.uint32(JOBS_TAG).bytes(job);
  if (page.nextPageToken !== '') writer.uint32(TOKEN_TAG).string(page.nextPageToken);
  return Buffer.from(writer.finish());
}

function matches(job: JobRecord, request: GetJobsReq): boolean {
  return (
    (request.status === JobStatus.JOB_STATUS_UNSPECIFIED || STATUS[job.state] === request.status) &&
    (request.owner === '' || job.owner === request.owner) &&
    hasLabels(job.labels, request.labels)
  );
}

/** Every one of `wanted` is among `labels`. */
export function hasLabels(labels: Readonly<Record<string, string>>, wanted: Readonly<Record<string, string>>): boolean {
  for (const key in wanted) if (labels[key] !== wanted[key]) return false;
  return true;
}

/** A GetJobs label filter: labels as jobs take them (INVALID_ARGUMENT otherwise), so a typo is not an empty page. */
export function checkLabelFilter(labels: Readonly<Record<string, string>>): void {
  for (const [key, value] of Object.entries(labels)) {
    const problem = labelProblem(key, value);
    if (problem) throw Errors.invalidArgument(`labels: ${problem}`);
  }
}

function pageToken(job: JobRecord): string {
  return Buffer.from(`${job.createdAt.getTime()}:${job.id}`).toString('base64url');
}

function parsePageToken(token: string): ListPosition {
  const match = /^(\d{1,15}):([0-9a-f-]{36})$/.exec(Buffer.from(token, 'base64url').toString());
  if (!match) throw Errors.invalidArgument(`page_token is not one this server gave out: ${quoted(token)}`);
  return { createdAt: Number(match[1]), id: match[2]! };
}
