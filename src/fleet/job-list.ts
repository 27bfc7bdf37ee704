// GetJobs for the whole fleet: the jobs/ records, newest first by key (ids
// are UUIDv7: time-ordered), a page at a time under the same bounds as a
// single host's (page_size, about 1 MiB). A page token is the last id sent:
// the next page is one range read below it, whatever was added or pruned.
import type { Etcd3 } from 'etcd3';
import { Job, JobStatus, type GetJobsReq } from '../gen/jobworker/v1/jobworker.js';
import { MAX_PAGE_SIZE } from '../common/api-limits.js';
import { Errors, quoted } from '../supervisor/errors.js';
import { MAX_PAGE_BYTES, checkLabelFilter, hasLabels, type JobsPage } from '../supervisor/rpc/job-pages.js';
import { decodeJob } from './records.js';
import { FleetKeys } from './keys.js';

/** Records read per range request while filling a page (each at most ~256 KiB). */
const BATCH = 64;
/**
 * Records looked at per call, at most: a filter that matches few jobs answers
 * a short (even empty) page with a token to go on, rather than reading the
 * whole history in one call.
 */
export const MAX_SCANNED = 4_096;
const FIELD_OVERHEAD = 1 + 3;

/** Running jobs get a fresher copy here (their node's own figures) before they are encoded. */
export type Refresh = (jobs: Job[]) => Promise<Job[]>;

export async function readFleetPage(client: Etcd3, keys: FleetKeys, request: GetJobsReq, refresh: Refresh): Promise<JobsPage> {
  if (request.pageSize > MAX_PAGE_SIZE) throw Errors.invalidArgument(`page_size must be at most ${MAX_PAGE_SIZE}, got ${request.pageSize}`);
  if (request.status === JobStatus.UNRECOGNIZED) throw Errors.invalidArgument('status must be one of INITIALIZING, WAITING, RUNNING, COMPLETED, FAILED, STOPPED, TIMED_OUT');
  checkLabelFilter(request.labels);
  const limit = request.pageSize === 0 ? MAX_PAGE_SIZE : request.pageSize;
  let below = request.pageToken === '' ? null : keys.job(parseToken(request.pageToken));
  const picked: Job[] = [];
  /** Where the next page starts: after the last job sent, or after the last one looked at. */
  let resumeAfter: string | null = null;
  let bytes = 0;
  let scanned = 0;
  scan: for (;;) {
    const range = client.getAll().inRange({ start: keys.jobs(), end: below ?? `${keys.jobs().slice(0, -1)}0` }).sort('Key', 'Descend').limit(BATCH);
    const values = await range.buffers();
    const entries = Object.entries(values).sort(([a], [b]) => (a < b ? 1 : a > b ? -1 : 0));
    for (const [key, value] of entries) {
      const job = decodeJob(value);
      if (matches(job, request)) {
        const size = Job.encode(job).finish().length + FIELD_OVERHEAD;
        if (picked.length >= limit || (picked.length > 0 && bytes + size > MAX_PAGE_BYTES)) {
          resumeAfter = picked[picked.length - 1]!.id;
          break scan;
        }
        picked.push(job);
        bytes += size;
      }
      below = key;
      if (++scanned >= MAX_SCANNED) {
        resumeAfter = FleetKeys.last(key);
        break scan;
      }
    }
    if (entries.length < BATCH) break;
  }
  const jobs = await refresh(picked);
  return { jobs, encoded: jobs.map((job) => Job.encode(job).finish()), nextPageToken: resumeAfter ? Buffer.from(`fleet:${resumeAfter}`).toString('base64url') : '' };
}

function matches(job: Job, request: GetJobsReq): boolean {
  return (
    (request.status === JobStatus.JOB_STATUS_UNSPECIFIED || job.status === request.status) &&
    (request.owner === '' || job.owner === request.owner) &&
    (request.node === '' || job.node === request.node) &&
    hasLabels(job.labels, request.labels)
  );
}

function parseToken(token: string): string {
  const match = /^fleet:([0-9a-f-]{36})$/.exec(Buffer.from(token, 'base64url').toString());
  if (!match) throw Errors.invalidArgument(`page_token is not one this fleet gave out: ${quoted(token)}`);
  return match[1]!;
}
