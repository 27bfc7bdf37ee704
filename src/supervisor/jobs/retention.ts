// Pruning of ended jobs: past --retain-jobs of them, or ended longer ago
// than --retain-for, a job's record and output files go, oldest first.
// Running jobs are never touched.
import type { Logger } from 'pino';
import { messageOf } from '../../common/error-message.js';
import { isLive, type JobRecord } from './record.js';
import type { JobStore } from './store.js';

export interface RetentionOptions {
  /** Ended jobs kept at most. */
  jobs: number;
  /** Ended jobs are kept this long after their end. */
  forMs: number;
}

/** How often jobs are checked for age when nothing else prompts it. */
const AGE_CHECK_MS = 60_000;

export class Retention {
  readonly #store: JobStore;
  readonly #options: RetentionOptions;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | undefined;

  /** Told of every job pruned, after the store has forgotten it (a fleet then forgets it too). */
  onPruned: ((job: JobRecord) => void) | undefined;
  /** Jobs kept whatever the limits say: a waiting job names them in its after (WaitingJobs.isPinned). */
  isPinned: ((id: string) => boolean) | undefined;

  constructor(store: JobStore, options: RetentionOptions, logger: Logger) {
    this.#store = store;
    this.#options = options;
    this.#logger = logger;
  }

  /** Prunes now and then every minute, until stop(). */
  start(): void {
    this.prune();
    this.#timer = setInterval(() => this.prune(), AGE_CHECK_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Removes what is past either limit; returns how many jobs went. */
  prune(now = Date.now()): number {
    const cutoff = now - this.#options.forMs;
    const ended = this.#store.endedCount;
    const doomed: JobRecord[] = [];
    // Oldest first. Once a job is kept, the count keeps every later one too
    // (what is doomed only lowers it), and a job created after the cutoff
    // cannot have ended before it: from such a job on, nothing more goes.
    for (const job of this.#store.values()) {
      if (isLive(job.state) || this.isPinned?.(job.id)) continue;
      const tooMany = ended - doomed.length > this.#options.jobs;
      const tooOld = job.endedAt !== null && job.endedAt.getTime() < cutoff;
      if (!tooMany && !tooOld) {
        if (job.createdAt.getTime() >= cutoff) break;
        continue;
      }
      doomed.push(job);
    }
    for (const job of doomed) this.#remove(job);
    if (doomed.length > 0) this.#logger.info({ jobs: doomed.length }, 'pruned ended jobs (--retain-jobs, --retain-for)');
    return doomed.length;
  }

  #remove(job: JobRecord): void {
    try {
      this.#store.remove(job);
    } catch (err) {
      // Forgotten here, still on disk: the next start reads it back and prunes it again.
      this.#logger.error({ jobId: job.id, err: messageOf(err) }, 'could not delete a pruned job from the history');
    }
    job.log.remove().catch((err: unknown) => this.#logger.error({ jobId: job.id, err: messageOf(err) }, 'could not delete the output of a pruned job'));
    this.onPruned?.(job);
  }
}
