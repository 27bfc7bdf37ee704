// Jobs that wait for others (CreateJobReq.after) in a fleet. A waiting job is
// on no node: the fleet keeps its record (WAITING, node empty) and an entry
// under the node that keeps it (waiting/<keeper>/<id>, keys.ts), at first
// the node that accepted it. Every heartbeat the keeper reads the records of
// the jobs each entry waits for, wherever they run; once all have ended as
// asked, it places the job as a CreateJob is placed and hands it to the
// chosen node under its own id. That node's start claim takes the entry away
// in the same transaction, and only while the entry is as the keeper read
// it: the job starts once or not at all. A keeper that hears nothing back
// rewrites the entry first, so a claim that lands late starts nothing; a
// keeper that is lost (its heartbeat key gone) is replaced by whichever node
// moves its entries first. All a keeper knows is in etcd: a restart, or
// another node, takes up where it stopped.
//
// One that cannot start yet — no node fits, its owner's quota has no room —
// waits on, its message saying why, and is tried again every heartbeat. One
// whose dependency ended short of its condition, or that a stop ends, ends
// without running; no node's retention holds it, so etcd removes it after
// --retain-for (records.endUnrun).
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { atMost } from '../common/at-most.js';
import { messageOf } from '../common/error-message.js';
import { settlesWithin } from '../common/settle-within.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { JobStatus, type CreateJobReq, type Job, type StartJobReq } from '../gen/jobworker/v1/jobworker.js';
import { JobworkerError } from '../supervisor/errors.js';
import type { Dependency } from '../supervisor/jobs/record.js';
import { unmet, waitingFor } from '../supervisor/jobs/waiting-jobs.js';
import type { Caller } from '../supervisor/rpc/authz.js';
import { checkAfter, resolveAfter, type ResolvedJob } from '../supervisor/rpc/job-service.js';
import { fromDependencies, toDependencies } from '../supervisor/rpc/job-view.js';
import { untilUncontended } from './contention.js';
import { uuidv7 } from './job-id.js';
import type { NodeInfo, NodeView } from './nodes.js';
import { describeRefusals, needsOf, neverFits, place } from './placement.js';
import type { FleetQuotas } from './quota-use.js';
import { ENDED, firstRecord, newAttempt, statusName, type FleetRecords, type NameHolder, type WaitingEntry } from './records.js';
import { SharedLease } from './shared-lease.js';
import type { RunningUse } from '../supervisor/policy/quota-checks.js';

/** Dependencies' records read at once in one pass, and waiting jobs judged at once. */
const READS_AT_ONCE = 16;
/** How long a closing node waits for the placements it has in flight. */
const PLACEMENTS_TIMEOUT_MS = 10_000;

/** What a keeper needs of its node. */
export interface WaitingPorts {
  readonly self: string;
  readonly records: FleetRecords;
  readonly quotas: FleetQuotas;
  readonly logger: Logger;
  /** How often a keeper judges its jobs (the heartbeat): also how often a follower of a waiting job looks again. */
  readonly everyMs: number;
  /** --retain-for: how long a job that never ran stays in etcd. */
  readonly retainForMs: number;
  /** The node table, read now. */
  nodes(): Promise<Map<string, NodeView>>;
  /** Whether `name` has a heartbeat in etcd now. */
  nodeAlive(name: string): Promise<boolean>;
  /** The fleet's record of a job by id or name (NOT_FOUND when it has none). */
  job(ref: string): Promise<Job>;
  /** `name` as the fleet has it, free for job `id` (NAME_TAKEN while another job that has not ended holds it). */
  freeName(name: string, id: string): Promise<NameHolder>;
  /** Checks a CreateJob against this node's policy: what a start here would run. */
  resolve(request: CreateJobReq): ResolvedJob;
  /** Hands a start to `node` (this one too): the started job, or that node's refusal (NODE_UNAVAILABLE: no answer). */
  handTo(node: NodeInfo, start: StartJobReq): Promise<Job>;
}

/**
 * The codes a chosen node answers having started nothing because of itself:
 * the next node may take the job. A quota's refusal is one: the keeper has
 * seen room in the fleet's running use, so what is left is the node's own
 * (output kept), or another start that took the room first.
 */
const OTHER_NODE: ReadonlySet<string> = new Set(['NO_NODE_FITS', 'SHUTTING_DOWN', 'QUOTA_EXCEEDED', 'START_CONTENDED']);
/** The codes that mean the job is no longer this keeper's to start (stopped, started, moved): the next pass looks again. */
const NOT_OURS: ReadonlySet<string> = new Set(['START_NOT_WAITING', 'START_CLAIMED', 'START_CANCELLED']);

export class FleetWaiting {
  readonly #ports: WaitingPorts;
  readonly #lease: SharedLease;
  /** Jobs whose placement is in flight here: not judged again meanwhile. */
  readonly #placing = new Map<string, Promise<void>>();
  #keeping: Promise<void> | undefined;
  #again = false;
  /** A heartbeat asked for a pass that looks for gone keepers too. */
  #adoptAsked = false;
  /** Entries found here by the last pass (or accepted since): a job's end looks again only if there are some. */
  #kept = 0;
  #closed = false;

  constructor(ports: WaitingPorts, client: Etcd3) {
    this.#ports = ports;
    const ttlS = Math.max(1, Math.ceil(ports.retainForMs / 1000));
    this.#lease = new SharedLease(client, ttlS, Math.min(3_600_000, Math.max(1_000, ports.retainForMs / 10)));
  }

  /**
   * A CreateJob with `after`: checked as this node would start it (its
   * policy, its dependencies in the fleet, a node that could ever take it,
   * its owner's quota), then recorded WAITING with its entry kept here.
   */
  async accept(caller: Caller, request: CreateJobReq): Promise<Job> {
    const { records, quotas, self } = this.#ports;
    const resolved = this.#ports.resolve(request);
    const after = await this.#dependencies(request);
    const never = neverFits((await this.#ports.nodes()).values(), needsOf(request));
    if (never) throw new JobworkerError('NO_NODE_FITS', `no node could ever take the job, so it would wait for ever: ${never}`);
    const id = uuidv7();
    const createdAt = new Date();
    const start: StartJobReq = {
      id,
      request: { ...request, after: toDependencies(after) },
      owner: caller.cn,
      ownerRole: caller.role ?? '',
      attempt: newAttempt(),
      keeper: '',
      waitingRevision: '',
      createdAt,
    };
    const record: Job = { ...firstRecord(start, resolved, ''), message: waitingFor(after.map((dependency) => dependency.id)) };
    const owner = { cn: caller.cn, role: caller.role };
    await untilUncontended(id, 'accepted', async () => {
      const name = resolved.name === null ? undefined : await this.#ports.freeName(resolved.name, id);
      const quota = await quotas.accept(owner, id, resolved.limits);
      return (await records.acceptWaiting(record, self, { start, met: [] }, name, quota).catch((err: unknown) => {
        quotas.claimFailed(err);
        throw err;
      }))
        ? true
        : null;
    });
    this.#ports.logger.info({ jobId: id, owner: caller.cn, after: after.map((d) => d.id) }, 'job accepted, waiting for its dependencies in the fleet');
    this.#kept += 1;
    // Its dependencies may have ended already.
    this.keepSoon();
    return record;
  }

  /** request.after, each job found in the fleet's records (by id or name). */
  async #dependencies(request: CreateJobReq): Promise<Dependency[]> {
    checkAfter(request.after);
    const found = new Map<string, { id: string } | JobworkerError>();
    for (const { job: ref } of request.after) {
      if (found.has(ref)) continue;
      found.set(
        ref,
        await this.#ports.job(ref).catch((err: unknown) => {
          if (err instanceof JobworkerError) return err;
          throw err;
        }),
      );
    }
    return resolveAfter(request.after, (ref) => {
      const job = found.get(ref)!;
      if (job instanceof JobworkerError) throw job;
      return job;
    });
  }

  /**
   * Stops a waiting job: it ends STOPPED without running. If it started
   * (or ended) meanwhile: its record now, for the caller to stop it where
   * it runs once its start has settled.
   */
  async stop(job: Job): Promise<{ stopped: Job } | { started: Job }> {
    const stopped: Job = { ...job, status: JobStatus.JOB_STATUS_STOPPED, endedAt: new Date(), message: 'stopped while waiting: it never ran' };
    const outcome = await this.#endUnrun(stopped);
    if (outcome.won) {
      this.#ports.logger.info({ jobId: job.id }, 'job stopped while waiting');
      return { stopped };
    }
    // Ended by another (a stop, a judgement), or its start claimed (the claim writes its record): as the fleet has it now.
    return { started: await this.#ports.job(job.id) };
  }

  /**
   * The job once it is no longer WAITING (starting on its node, or ended),
   * for a follower of its output or a writer of its input; null if `signal`
   * aborts first. Read every heartbeat.
   */
  async untilPlaced(ref: string, signal: AbortSignal): Promise<Job | null> {
    for (;;) {
      const job = await this.#ports.job(ref);
      if (job.status !== JobStatus.JOB_STATUS_WAITING) return job;
      await sleep(this.#ports.everyMs, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return null;
    }
  }

  /**
   * A job whose start this node claimed but that never ran here (its start
   * failed, or the node restarted in between): it ends FAILED saying
   * `message`, on the lease of jobs that never ran (no node's history has it).
   */
  async endNeverRan(job: Job, message: string): Promise<void> {
    await this.#endUnrun({ ...job, status: JobStatus.JOB_STATUS_FAILED, startedAt: undefined, endedAt: new Date(), message }, job.node);
  }

  /** records.endUnrun, claimed by this node, on the lease of jobs that never ran. */
  async #endUnrun(job: Job, startedOn?: string): Promise<Awaited<ReturnType<FleetRecords['endUnrun']>>> {
    try {
      return await this.#ports.records.endUnrun(job, { node: this.#ports.self, attempt: newAttempt() }, await this.#lease.id(), startedOn);
    } catch (err) {
      this.#lease.failed(err);
      throw err;
    }
  }

  /** Soon, outside the heartbeat: a job ended here, or one was accepted here. Only when this node keeps any. */
  keepSoon(): void {
    if (this.#kept === 0 || this.#closed) return;
    void this.keep(false).catch((err: unknown) => this.#ports.logger.warn({ err: messageOf(err) }, 'could not judge the jobs waiting here'));
  }

  /**
   * A pass (every heartbeat): take over the entries of keepers that have no
   * heartbeat, then judge this node's own. Passes never overlap: one asked
   * for during another runs after it. A caller waits for at most two passes
   * (job ends on a busy node must not hold the heartbeat's upkeep); what is
   * asked for after those runs on its own.
   */
  keep(adopt = true): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (adopt) this.#adoptAsked = true;
    if (this.#keeping) {
      this.#again = true;
      return this.#keeping;
    }
    const keeping = (async () => {
      try {
        for (let passes = 0; passes < 2 && !this.#closed; passes += 1) {
          this.#again = false;
          await this.#pass();
          if (!this.#again) break;
        }
      } finally {
        this.#keeping = undefined;
      }
    })();
    this.#keeping = keeping;
    void keeping.then(
      () => this.#again && this.keepSoon(),
      () => undefined,
    );
    return keeping;
  }

  async #pass(): Promise<void> {
    let mine = true;
    if (this.#adoptAsked) {
      this.#adoptAsked = false;
      // The heartbeat's pass lists every keeper's entries (keys only): this node's own are read only if it has some.
      mine = await this.#adopt().catch((err: unknown) => {
        this.#ports.logger.warn({ err: messageOf(err) }, 'could not look for waiting jobs of nodes that are gone');
        return true;
      });
    }
    if (mine) await this.#judgeAll();
    else this.#kept = 0;
  }

  /** Shutdown: no more passes or placements; resolves once the placements in flight have answered (for a while). */
  async close(): Promise<void> {
    this.#closed = true;
    await settlesWithin(Promise.allSettled([this.#keeping, ...this.#placing.values()]), PLACEMENTS_TIMEOUT_MS);
  }

  /** Moves here the entries of keepers with no heartbeat; whether this node keeps any now. */
  async #adopt(): Promise<boolean> {
    const { records, self, logger } = this.#ports;
    const keepers = await records.keepers();
    let mine = keepers.has(self);
    for (const [keeper] of keepers) {
      if (keeper === self || (await this.#ports.nodeAlive(keeper))) continue;
      for (const entry of await records.waitingOn(keeper)) {
        if (!(await records.adoptWaiting(keeper, self, entry))) continue;
        logger.warn({ jobId: entry.id, keeper }, 'took over a waiting job from a node with no heartbeat');
        mine = true;
      }
    }
    return mine;
  }

  async #judgeAll(): Promise<void> {
    const entries = await this.#ports.records.waitingOn(this.#ports.self);
    this.#kept = entries.length;
    // Each dependency read once a pass, however many wait for it; each owner's quota use too.
    const reads = new Map<string, Promise<Job | null>>();
    const uses = new Map<string, Promise<RunningUse>>();
    const read = (id: string): Promise<Job | null> => {
      let job = reads.get(id);
      if (!job) reads.set(id, (job = this.#ports.records.job(id)));
      return job;
    };
    await atMost(READS_AT_ONCE, entries, async (entry) => {
      if (this.#closed || this.#placing.has(entry.id)) return;
      try {
        await this.#judge(entry, read, uses);
      } catch (err) {
        this.#ports.logger.warn({ jobId: entry.id, err: messageOf(err) }, 'could not judge a waiting job; trying again at the next heartbeat');
      }
    });
  }

  /** Ends it (a dependency failed it), notes what has ended, or places it once every dependency has ended as asked. */
  async #judge(entry: WaitingEntry, read: (id: string) => Promise<Job | null>, uses: Map<string, Promise<RunningUse>>): Promise<void> {
    const { records, self } = this.#ports;
    const record = await records.job(entry.id);
    // Ended (a stop) or gone: the entry is all that is left of it here.
    if (!record || record.status !== JobStatus.JOB_STATUS_WAITING) return records.dropWaiting(self, entry);
    const met = new Set(entry.job.met);
    const left: string[] = [];
    for (const dependency of fromDependencies(entry.job.start!.request!.after)) {
      if (met.has(dependency.id)) continue;
      const job = await read(dependency.id);
      if (job && !ENDED.has(job.status)) {
        left.push(dependency.id);
        continue;
      }
      const failed = unmet(dependency, job ? { id: job.id, name: job.name || null, state: statusName(job.status), message: job.message } : undefined, 'the fleet');
      if (failed) return this.#end(record, `not run: ${failed}`);
      met.add(dependency.id);
    }
    const message = left.length > 0 ? waitingFor(left) : record.message;
    const changed = met.size !== entry.job.met.length || message !== record.message;
    const noted = changed ? await this.#rewrite(record, entry, { met: [...met], message }) : entry;
    if (!noted || left.length > 0) return;
    // No room in its owner's quota: it waits on, without a hand-off each heartbeat.
    const start = noted.job.start!;
    const resolved = await this.#quotaRoom(record, start, uses);
    if (resolved !== null) {
      await this.#hold(record, noted, `its dependencies have ended; waiting for room in its owner's quota: ${resolved}`);
      return;
    }
    const placing = this.#place(record, noted)
      .catch((err: unknown) => this.#ports.logger.warn({ jobId: record.id, err: messageOf(err) }, 'could not place a job whose dependencies have ended; trying again at the next heartbeat'))
      .finally(() => this.#placing.delete(record.id));
    this.#placing.set(record.id, placing);
  }

  /**
   * Hands the job to the best node that takes it. A node that refuses
   * because of itself sends it to the next; one that does not answer has
   * its claim fenced off (the entry rewritten) first. No room for it
   * anywhere, or in its owner's quota: it waits on, saying why.
   */
  async #place(record: Job, entry: WaitingEntry): Promise<void> {
    const { self, logger } = this.#ports;
    const start = entry.job.start!;
    const { candidates, refused } = place((await this.#ports.nodes()).values(), needsOf(start.request!));
    let revision = entry.revision;
    for (const candidate of candidates) {
      if (this.#closed) return;
      try {
        const job = await this.#ports.handTo(candidate.info, { ...start, attempt: newAttempt(), keeper: self, waitingRevision: revision });
        logger.info({ jobId: job.id, node: job.node }, 'dependencies ended as asked: job started');
        return;
      } catch (err) {
        if (!(err instanceof JobworkerError)) throw err;
        if (OTHER_NODE.has(err.code)) {
          refused.set(candidate.info.name, err.message);
          continue;
        }
        if (err.code === 'NODE_UNAVAILABLE' || err.code === 'FLEET_UNAVAILABLE') {
          // It may yet claim the start (no answer; or etcd's answer lost to it): a rewritten entry makes such a claim fail.
          const fenced = await this.#ports.records.rewriteWaiting(record, self, { ...entry, revision });
          // Gone: its claim landed (the record says how the start went), or a stop came first.
          if (fenced === null) return;
          revision = fenced;
          refused.set(candidate.info.name, err.message);
          continue;
        }
        if (NOT_OURS.has(err.code)) return;
        // Refused for good (the node's policy), or its start failed (that node has ended it then).
        logger.warn({ jobId: record.id, node: candidate.info.name, err: err.message }, 'a job whose dependencies ended could not start');
        await this.#end(record, `its dependencies ended as asked, but it could not start: ${err.message}`);
        return;
      }
    }
    await this.#hold(record, { ...entry, revision }, `its dependencies have ended; waiting for a node that fits: ${describeRefusals(refused) || 'the fleet has no nodes'}`);
  }

  /** Why its owner's running quota has no room for it in the fleet now; null when it has. */
  async #quotaRoom(record: Job, start: StartJobReq, uses: Map<string, Promise<RunningUse>>): Promise<string | null> {
    const owner = { cn: start.owner, role: start.ownerRole === '' ? null : start.ownerRole };
    const limits = record.limits!;
    try {
      await this.#ports.quotas.checkRoom(owner, { cpuPercent: limits.maxCpuPercent, memoryBytes: limits.maxMemoryMb * 1024 * 1024 }, uses);
      return null;
    } catch (err) {
      if (err instanceof JobworkerError && err.code === 'QUOTA_EXCEEDED') return err.message;
      throw err;
    }
  }

  /** It waits on, saying why: written only when that changes (a held job must not rewrite etcd every heartbeat). */
  async #hold(record: Job, entry: WaitingEntry, message: string): Promise<void> {
    if (record.message !== message) await this.#rewrite(record, entry, { message });
  }

  /** Ends a job that never ran FAILED (nothing, if it has started or ended meanwhile). */
  async #end(record: Job, message: string): Promise<void> {
    const outcome = await this.#endUnrun({ ...record, status: JobStatus.JOB_STATUS_FAILED, endedAt: new Date(), message });
    if (outcome.won) this.#ports.logger.info({ jobId: record.id, message }, 'job ended without running');
  }

  /** The entry (and the record's message) as changed; null when it is no longer as read. */
  async #rewrite(record: Job, entry: WaitingEntry, change: { met?: string[]; message?: string }): Promise<WaitingEntry | null> {
    const job = { ...entry.job, met: change.met ?? entry.job.met };
    const revision = await this.#ports.records.rewriteWaiting({ ...record, message: change.message ?? record.message }, this.#ports.self, { ...entry, job });
    return revision === null ? null : { ...entry, revision, job };
  }
}

