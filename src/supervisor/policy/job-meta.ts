// What a CreateJob asks for besides what runs: a name, labels, a deadline
// and an open stdin, checked against the API's rules and this server's
// deadline policy (jobworkerd --default-timeout, --max-timeout).
import { MAX_JOB_LABELS, MAX_TIMEOUT_MS } from '../../common/api-limits.js';
import { jobNameProblem } from '../../common/job-refs.js';
import { labelProblem } from '../../common/labels.js';
import { formatDuration } from '../../common/units.js';
import type { CreateJobReq } from '../../gen/jobworker/v1/jobworker.js';
import { Errors } from '../errors.js';

export interface DeadlinePolicy {
  /** A job's deadline when its request sets none; null: none. */
  defaultMs: number | null;
  /** The longest deadline a request may set; null: MAX_TIMEOUT_MS. */
  maxMs: number | null;
}

export interface JobMeta {
  name: string | null;
  labels: Record<string, string>;
  timeoutMs: number | null;
  stdin: boolean;
}

/** INVALID_ARGUMENT naming the first problem. */
export function resolveMeta(request: Pick<CreateJobReq, 'name' | 'labels' | 'timeoutMs' | 'stdin'>, deadlines: DeadlinePolicy): JobMeta {
  if (request.name !== '') {
    const problem = jobNameProblem(request.name);
    if (problem) throw Errors.invalidArgument(problem);
  }
  const entries = Object.entries(request.labels);
  if (entries.length > MAX_JOB_LABELS) throw Errors.invalidArgument(`a job takes at most ${MAX_JOB_LABELS} labels, got ${entries.length}`);
  for (const [key, value] of entries) {
    const problem = labelProblem(key, value);
    if (problem) throw Errors.invalidArgument(problem);
  }
  return { name: request.name === '' ? null : request.name, labels: { ...request.labels }, timeoutMs: resolveTimeout(request.timeoutMs, deadlines), stdin: request.stdin };
}

function resolveTimeout(requested: number | undefined, { defaultMs, maxMs }: DeadlinePolicy): number | null {
  if (requested === undefined) return defaultMs;
  if (!Number.isSafeInteger(requested) || requested < 1) throw Errors.invalidArgument(`timeout_ms must be at least 1 (leave it unset for the server's default), got ${requested}`);
  const max = maxMs ?? MAX_TIMEOUT_MS;
  if (requested > max) {
    const which = maxMs === null ? 'the most a deadline may be' : "the server's --max-timeout";
    throw Errors.invalidArgument(`timeout_ms ${requested} (${formatDuration(requested)}) is past ${which}, ${formatDuration(max)}`);
  }
  return requested;
}
