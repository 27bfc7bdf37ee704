// What a server finds when it starts: the job history of earlier runs and
// each job's output, read back and checked; output the history does not know
// removed. Jobs that were running then are ended only once the cgroups are
// prepared (which kills what they left): see endInterrupted.
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { OutputLog, jobLogOptions, makeOutputRoot } from '../output/log.js';
import { HistoryError, JobHistory, type HistoryProblem, type StoredJob } from './history.js';
import type { JobStore, WaitingRecord } from './store.js';

/** Output directories opened at once when reading back the history. */
const OPEN_CONCURRENCY = 16;

export interface EarlierJob {
  job: StoredJob;
  log: OutputLog;
}

export interface ReadBack {
  history: JobHistory;
  /** <data dir>/output */
  outputRoot: string;
  /** Every job of earlier runs, in the order they started, with its output. */
  earlier: EarlierJob[];
}

/**
 * Opens the history in `dataDir` and each job's output. What could not be
 * read back is logged and left out; a data directory that cannot be used at
 * all is a HistoryError (the operator's to fix: jobworkerd exits 2).
 */
export async function readBack(dataDir: string, maxOutputBytes: number, logger: Logger): Promise<ReadBack> {
  const problems: HistoryProblem[] = [];
  const history = JobHistory.open(dataDir, problems);
  let outputRoot: string;
  let earlier: EarlierJob[];
  try {
    outputRoot = makeOutputRoot(dataDir);
    earlier = await openOutputs(history.load(problems), outputRoot, maxOutputBytes, logger);
    // Rows that did not parse keep their output: the history still has them.
    const known = new Set([...earlier.map(({ job }) => job.id), ...problems.map((p) => p.jobId).filter((id) => id !== null)]);
    await removeOrphanOutputs(outputRoot, known, logger);
  } catch (err) {
    history.close();
    throw new HistoryError((err as Error).message);
  }
  for (const problem of problems) logger.error(problem, 'job history: not everything could be read back');
  for (const { job, log } of earlier) if (log.problem) logger.error({ jobId: job.id, problem: log.problem }, 'job output: not everything could be read back');
  return { history, outputRoot, earlier };
}

/**
 * Takes the earlier jobs into the store. Call once the cgroups are prepared:
 * that has killed whatever the jobs that were running left in their groups,
 * so they are recorded FAILED, saying so. Returns the jobs that were
 * waiting, which wait on (WaitingJobs.resume).
 */
export function endInterrupted(store: JobStore, earlier: readonly EarlierJob[], logger: Logger): WaitingRecord[] {
  const { interrupted, unrecorded, waiting } = store.restore(earlier, new Date());
  for (const err of unrecorded) logger.error({ jobId: err.jobId, err: err.reason }, 'could not record an interrupted job as FAILED');
  if (earlier.length > 0) logger.info({ jobs: earlier.length, interrupted: interrupted.length }, 'job history read back');
  for (const jobId of interrupted) logger.warn({ jobId }, 'a job was running when the server stopped: recorded FAILED');
  return waiting;
}

/** Each job's output, checked; OPEN_CONCURRENCY directories at a time. */
async function openOutputs(jobs: StoredJob[], root: string, maxBytes: number, logger: Logger): Promise<EarlierJob[]> {
  const opened: EarlierJob[] = new Array(jobs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const i = next++;
      const job = jobs[i]!;
      const options = jobLogOptions(root, job.id, maxBytes, logger);
      // A job still waiting has written nothing: its log is new, open for when it starts.
      opened[i] = { job, log: job.state === 'WAITING' ? new OutputLog(options) : await OutputLog.open(options, job.outputBytes) };
    }
  };
  await Promise.all(Array.from({ length: OPEN_CONCURRENCY }, worker));
  return opened;
}

/**
 * Output directories of jobs the history does not have (their row was never
 * written, or pruned while the files could not be deleted): nobody can ask
 * for them, so they go.
 */
async function removeOrphanOutputs(root: string, known: ReadonlySet<string>, logger: Logger): Promise<void> {
  for (const name of await readdir(root)) {
    if (known.has(name)) continue;
    await rm(path.join(root, name), { recursive: true, force: true });
    logger.warn({ dir: path.join(root, name) }, 'removed the output of a job the history does not have');
  }
}
