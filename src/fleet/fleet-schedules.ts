// The jobs a fleet's schedules make (supervisor/schedules/scheduled-jobs.ts):
// created through the fleet, so placed on any node (a schedule's job may
// name a node or constraints), and judged from the fleet's records.
import { JobStatus } from '../gen/jobworker/v1/jobworker.js';
import type { ScheduledJobs } from '../supervisor/schedules/scheduled-jobs.js';
import { checkCreate, type FleetNode } from './fleet-node.js';
import { ENDED } from './records.js';
import { uuidv7 } from './job-id.js';
import type { EtcdScheduleStore } from './schedule-store.js';

export function fleetJobs(node: FleetNode, store: EtcdScheduleStore): ScheduledJobs {
  return {
    placed: true,
    newId: () => uuidv7(),
    check(request) {
      checkCreate(request);
      node.local.service.resolve(request);
    },
    async create(owner, request, id) {
      return (await node.createJob(owner, request, id)).id;
    },
    async stop(owner, id) {
      await node.stopJob(owner, { id, graceMs: undefined });
    },
    // Under forbid and replace at most the newest job of a schedule runs: the one the schedule keeps.
    async running(schedule) {
      const newestJob = await store.lastJobId(schedule.id);
      if (newestJob === null) return { id: null, newestJob };
      const job = await node.records.job(newestJob);
      return { id: job && !ENDED.has(job.status) ? newestJob : null, newestJob };
    },
    async status(jobId) {
      return (await node.records.job(jobId))?.status ?? JobStatus.JOB_STATUS_UNSPECIFIED;
    },
    // A firing left STARTING by a node still alive may be in flight there: its node records it.
    // Otherwise its job is the one holding its name, if any (a fleet's ids are per node tried).
    async madeBy(firing, name) {
      if (firing.node !== undefined && firing.node !== node.self && (await node.nodeAlive(firing.node))) return undefined;
      return (await node.records.nameHolder(name)).id;
    },
  };
}
