// The jobs a scheduler makes, as it sees them: on a single host this
// server's JobService and store (localJobs below); in a fleet the fleet's
// (src/fleet/fleet-schedules.ts), placed on any node.
import { randomUUID } from 'node:crypto';
import { JobStatus, type CreateJobReq } from '../../gen/jobworker/v1/jobworker.js';
import { isLive } from '../jobs/record.js';
import type { JobStore } from '../jobs/store.js';
import type { Caller } from '../rpc/authz.js';
import type { JobService } from '../rpc/job-service.js';
import { STATUS } from '../rpc/job-view.js';
import type { StoredFiring, StoredSchedule } from './schedule-book.js';

type MaybePromise<T> = T | Promise<T>;

export interface ScheduledJobs {
  /** Whether a firing's job may name a node and constraints (a fleet places it). */
  readonly placed: boolean;
  /** CreateJob's checks of a firing's request, before the schedule is kept: a JobworkerError when it would be refused. */
  check(request: CreateJobReq): void;
  /** An id for a firing's job, as this server's jobs have them. */
  newId(): string;
  /** Creates a firing's job as `owner`; its id (`id`, or the one a fleet gave it). */
  create(owner: Caller, request: CreateJobReq, id: string): Promise<string>;
  stop(owner: Caller, id: string): Promise<void>;
  /**
   * A job of the schedule that has not ended, the newest (null: none), and
   * what that was read from (a fleet: the schedule's newest job, for the
   * claim to check it is still the newest).
   */
  running(schedule: StoredSchedule): MaybePromise<{ id: string | null; newestJob: string | null }>;
  /** A job's status now; UNSPECIFIED when it is not known (pruned). */
  status(jobId: string): MaybePromise<JobStatus>;
  /**
   * A firing left STARTING by a scheduler that stopped: the id of the job
   * it made (its job is named `name`), or null when it made none; undefined
   * while its scheduler may still be making it (a fleet's other node, alive).
   */
  madeBy(firing: StoredFiring, name: string): MaybePromise<string | null | undefined>;
}

/** This host's jobs. A firing found STARTING here is judged at start, when nothing is in flight. */
export function localJobs(service: JobService, store: JobStore): ScheduledJobs {
  return {
    placed: false,
    newId: randomUUID,
    check(request) {
      service.resolve(request);
    },
    async create(owner, request, id) {
      await service.createJob(owner, request, id);
      return id;
    },
    async stop(owner, id) {
      await service.stopJob(owner, { id, graceMs: undefined });
    },
    // From the store by label, not from the firings: they are trimmed to the last 20, and a job may outlive many skipped ones.
    running(schedule) {
      let newest: string | null = null;
      for (const job of store.values()) if (isLive(job.state) && job.labels.schedule === schedule.id) newest = job.id;
      return { id: newest, newestJob: newest };
    },
    status(jobId) {
      const job = store.get(jobId);
      return job ? STATUS[job.state] : JobStatus.JOB_STATUS_UNSPECIFIED;
    },
    madeBy(firing) {
      return firing.jobId !== null && store.get(firing.jobId) !== undefined ? firing.jobId : null;
    },
  };
}
