// A node of the fleet: the API of the whole fleet, answered on this node.
// Jobs of this node go to the local JobService; others are forwarded to
// their node, which answers them (for the caller, whose identity travels
// with the call) through its own local service. CreateJob places the job,
// hands it to the chosen node, and makes sure it started there exactly once
// or not at all (records.ts). Listing reads the fleet's records in etcd.
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { CallOptions, Metadata, ServiceError } from '@grpc/grpc-js';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { unlessAborted } from '../common/abortable.js';
import { atMost } from '../common/at-most.js';
import { settlesWithin } from '../common/settle-within.js';
import { messageOf } from '../common/error-message.js';
import { labelProblem } from '../common/labels.js';
import {
  JobStatus,
  type CreateJobReq,
  type CreateJobRes,
  type DrainNodeReq,
  type DrainNodeRes,
  type GetJobReq,
  type GetJobsReq,
  type Job,
  type Nodes,
  type StartJobReq,
  type StopJobReq,
  type WaitJobReq,
  type GetQuotaReq,
  type Quota,
  type WaitJobRes,
  type WriteInputRes,
} from '../gen/jobworker/v1/jobworker.js';
import { MAX_GRACE_MS } from '../common/api-limits.js';
import { Errors, JobworkerError, quoted } from '../supervisor/errors.js';
import type { JobRecord } from '../supervisor/jobs/record.js';
import { checkRequestSize, validateCommand } from '../supervisor/policy/command.js';
import { parseEnv } from '../supervisor/policy/job-environment.js';
import type { Caller } from '../supervisor/rpc/authz.js';
import { openInput, type InputStream } from '../supervisor/rpc/input-call.js';
import type { FleetApi, InputCall, JobApi, NodeApi, OutputCall } from '../supervisor/rpc/job-api.js';
import type { JobsPage } from '../supervisor/rpc/job-pages.js';
import { checkJobId, checkJobRef, checkQuotaOwner, type ResolvedJob } from '../supervisor/rpc/job-service.js';
import type { QuotaCaller } from '../supervisor/policy/quotas.js';
import { fromDependencies, toJob } from '../supervisor/rpc/job-view.js';
import { WriteWindow } from '../supervisor/rpc/write-window.js';
import type { LocalParts } from '../supervisor/server.js';
import { NODE_NAME, type FleetConfig } from './config.js';
import { uuidv7 } from './job-id.js';
import { readFleetPage } from './job-list.js';
import { FleetKeys } from './keys.js';
import { Membership } from './membership.js';
import { readNodes, toNode, type NodeInfo, type NodeView } from './nodes.js';
import { Peers, forwardedMetadata, fromPeer, nodeUnavailable } from './peers.js';
import { crashAt } from './faults.js';
import { capacityRefusal, describeRefusals, needsOf, place } from './placement.js';
import { FleetQuotas, shareOf } from './quota-use.js';
import { ENDED, FleetRecords, firstRecord, newAttempt, statusName, type ClaimOutcome, type NameHolder, type StartClaim, type Waited } from './records.js';
import { FleetWaiting } from './waiting.js';
import { untilUncontended } from './contention.js';

/** From the hand-off to the other node's answer: its start (job-init's own time-out is 30 s) and a few etcd writes. */
const HAND_OFF_TIMEOUT_MS = 60_000;
/** A forwarded GetJob: the other node answers from memory. */
const FORWARD_TIMEOUT_MS = 10_000;
/** How long an answer about this node's own ended job waits for etcd to have its end (milliseconds when etcd answers). */
const END_WRITE_WAIT_MS = 2_000;
/** Jobs of a lost node declared lost at once, each a few etcd round trips. */
const DECLARATIONS_AT_ONCE = 16;
/** GetJobs fresh_usage: reads of other nodes' running jobs in flight at once, and how long each may take. */
const FRESH_READS_AT_ONCE = 32;
const FRESH_TIMEOUT_MS = 2_000;
/** How often a hand-off whose answer was lost looks at the job's record. */
const SETTLE_POLL_MS = 100;
/**
 * What a chosen node may answer having started nothing, for the entry node
 * to try the next candidate: its own figures, its shutdown, its lease.
 */
const NEXT_CANDIDATE: ReadonlySet<string> = new Set(['NO_NODE_FITS', 'SHUTTING_DOWN', 'FLEET_UNAVAILABLE']);
/** How long a closing node waits for the fleet to hear of its jobs' ends. */
const END_WRITES_TIMEOUT_MS = 5_000;
const MIB = 1024 * 1024;

export class FleetNode implements JobApi, FleetApi, NodeApi {
  readonly keys: FleetKeys;
  readonly records: FleetRecords;
  readonly quotas: FleetQuotas;
  readonly peers: Peers;
  readonly membership: Membership;
  /** Jobs that wait for others in the fleet, those this node keeps (waiting.ts). */
  readonly waiting: FleetWaiting;
  readonly self: string;
  /** The node table as last read: addresses for forwarding, lost nodes for relays. */
  #table = new Map<string, NodeView>();
  /** Starts admitted here and not yet in the local store: counted against capacity. */
  readonly #admitting = new Map<string, { cpuPercent: number; memoryMb: number }>();
  /** Ends not yet written to etcd, by job id. */
  readonly #endWrites = new Map<string, Promise<void>>();
  /** Relays from nodes, told when their node is lost. */
  readonly #relays = new Map<string, Set<(why: string) => void>>();
  #closing = false;
  /** Closing, and past waiting for end writes. */
  #gaveUpEnds = false;

  constructor(
    readonly config: FleetConfig,
    readonly client: Etcd3,
    readonly local: LocalParts,
    readonly logger: Logger,
  ) {
    this.self = config.nodeName;
    this.keys = new FleetKeys(config.prefix);
    this.records = new FleetRecords(client, this.keys);
    this.quotas = new FleetQuotas(client, this.keys, () => local.service.options.quotas.rules, (cn) => local.service.options.quotas.outputOf(cn));
    this.peers = new Peers(config.nodeTls);
    this.waiting = new FleetWaiting(
      {
        self: this.self,
        records: this.records,
        quotas: this.quotas,
        logger,
        everyMs: config.heartbeatMs,
        retainForMs: local.retainForMs,
        nodes: () => this.#readNodes(),
        nodeAlive: (name) => this.nodeAlive(name),
        job: (ref) => this.#fleetJob(ref),
        freeName: (name, id) => this.#freeName(name, id),
        resolve: (request) => local.service.resolve(request),
        handTo: (node, start) => this.#handTo(node, start),
      },
      client,
    );
    this.membership = new Membership(client, this.keys, config, {
      stats: () => this.#stats(),
      stopJobs: () => void this.#stopAll('this node was cut off from etcd past --stop-jobs-after'),
      rejoined: () => this.#reconcile(),
      tick: () => this.#tick(),
    }, logger);
  }

  // ---------------------------------------------------------------------------
  // Joining and leaving

  async join(port: number): Promise<void> {
    const address = `${this.config.advertise.host}:${this.config.advertise.port ?? port}`;
    await this.#reconcile();
    await this.membership.join(address);
    this.#table = await readNodes(this.client, this.keys);
    this.logger.info({ node: this.self, address, labels: this.config.labels, capacity: this.config.capacity }, 'joined the fleet');
  }

  /** Shutdown has begun: no new jobs here, and placement is told so. */
  async leaving(): Promise<void> {
    this.#closing = true;
    await this.membership.markLeaving();
    // Its waiting jobs stay in etcd, kept by this node when it is back, or by another once its heartbeat is gone.
    await this.waiting.close();
  }

  /** After every job here has ended: their ends written (for a while), then out of the fleet. */
  async close(): Promise<void> {
    this.#closing = true;
    await this.waiting.close();
    const writes = Promise.all(this.#endWrites.values());
    if (!(await settlesWithin(writes, END_WRITES_TIMEOUT_MS))) {
      this.logger.warn({ pending: this.#endWrites.size }, 'the fleet has not heard of every job end yet; leaving anyway');
      this.#gaveUpEnds = true;
    }
    // Ends it could not write: the fleet must find this node lost and end those jobs itself.
    const unended = await this.records.runningOn(this.self).then((ids) => ids.length > 0, () => true);
    await this.membership.leave(unended);
    this.peers.close();
    this.client.close();
  }

  #stats() {
    let reservedCpuPercent = 0;
    let reservedMemoryMb = 0;
    const running = this.local.store.running();
    for (const job of running) {
      reservedCpuPercent += job.limits.cpuPercent;
      reservedMemoryMb += job.limits.memoryBytes / MIB;
    }
    let admitting = 0;
    for (const [id, admitted] of this.#admitting) {
      // Once started, a job is in the store and counted there: not twice.
      if (this.local.store.get(id)) continue;
      admitting += 1;
      reservedCpuPercent += admitted.cpuPercent;
      reservedMemoryMb += admitted.memoryMb;
    }
    return { reservedCpuPercent, reservedMemoryMb, runningJobs: running.length + admitting };
  }

  /**
   * What the fleet says of this node's jobs against what runs here, at
   * start, after registering again, and at every upkeep:
   * - a job it lists as running (running/<self>/) that does not run here —
   *   this node restarted, died between claiming and starting it, or its
   *   claim landed after its start gave up — gets its end recorded;
   * - a job that runs here but is no longer listed was ended by the fleet
   *   (declared lost while this node was cut off): it is stopped here.
   * Starts in flight are left alone: what runs is read before the list, and
   * a job being admitted is skipped.
   */
  async #reconcile(): Promise<void> {
    const runningHere = this.local.store.running();
    const listed = new Set(await this.records.runningOn(this.self));
    for (const id of listed) {
      if (this.#admitting.has(id) || this.#endWrites.has(id)) continue;
      const record = this.local.store.get(id);
      if (record?.state === 'RUNNING') continue;
      if (record) {
        this.jobEnded(record);
        continue;
      }
      const job = await this.records.job(id);
      if (!job) {
        await this.client.delete().key(this.keys.running(this.self, id)).exec();
        continue;
      }
      // In no node's history: its record leaves etcd on a lease, as any job that never ran.
      await this.waiting.endNeverRan(job, `node ${this.self} never started the job (it restarted, or its start failed after the claim)`).catch((err: unknown) => {
        this.logger.warn({ jobId: id, err: messageOf(err) }, 'could not end in etcd a job this node never started; trying again at the next upkeep');
      });
    }
    for (const record of runningHere) {
      if (listed.has(record.id) || record.state !== 'RUNNING') continue;
      this.logger.warn({ jobId: record.id }, 'the fleet ended this job as lost while this node was cut off: stopping it');
      void this.local.service.options.runner.stop(record, 0);
    }
  }

  async #stopAll(why: string): Promise<void> {
    const running = this.local.store.running();
    this.logger.error({ jobs: running.length, why }, 'stopping every job of this node');
    await Promise.all(running.map((record) => this.local.service.options.runner.stop(record, this.local.service.options.defaultGraceMs)));
  }

  /**
   * The upkeep every node shares, after each heartbeat but never holding
   * the next one up: read the node table, end the jobs of lost nodes (any
   * node may; the claim makes it once), and reconcile this node's own.
   */
  async #tick(): Promise<void> {
    try {
      this.#table = await readNodes(this.client, this.keys);
      for (const view of this.#table.values()) {
        if (view.state !== 'lost' || view.info.name === this.self) continue;
        const why = `node ${view.info.name} was lost (no heartbeat within ${this.config.nodeLostAfterMs / 1000}s)`;
        for (const relay of this.#relays.get(view.info.name) ?? []) relay(why);
        const ids = await this.records.runningOn(view.info.name);
        await atMost(DECLARATIONS_AT_ONCE, ids, (id) => this.#declareLost(id, view.info.name, why));
      }
      await this.#reconcile();
    } finally {
      // Whatever the rest did: while this node has a heartbeat, nobody else judges the jobs it keeps.
      await this.waiting.keep();
    }
  }

  /** Whether node `name` has a heartbeat in etcd now (a lost node's lease has taken it away; a node that left deleted it). */
  async nodeAlive(name: string): Promise<boolean> {
    if (name === this.self) return true;
    return (await this.client.get(this.keys.nodeAlive(name)).exec()).kvs.length > 0;
  }

  async #declareLost(id: string, node: string, why: string): Promise<void> {
    const job = await this.records.job(id);
    if (!job) {
      await this.client.delete().key(this.keys.running(node, id)).exec();
      return;
    }
    const usage = job.usage ? { ...job.usage, memoryBytes: 0 } : undefined;
    const lost: Job = { ...job, status: JobStatus.JOB_STATUS_FAILED, endedAt: new Date(), usage, message: `${why}: the job was ended as lost; its output stays on that node` };
    // Its share of the owner's quota lingers until a node cut off (not dead) has stopped its jobs.
    const linger = { lease: await this.quotas.lingerLease(this.config.stopJobsAfterMs), share: shareOf(job) };
    const outcome = await this.records.claimEnd(lost, { node: this.self, attempt: newAttempt(), lost: true }, node, linger);
    if (outcome.won) this.logger.warn({ jobId: id, node }, 'ended a job of a lost node');
  }

  // ---------------------------------------------------------------------------
  // Job ends: written to the fleet until it has them

  jobEnded(record: JobRecord): void {
    this.#writeEnd(toJob(record, this.self));
  }

  #writeEnd(job: Job): void {
    const write = this.#claimEnd(job);
    this.#endWrites.set(job.id, write);
    void write.finally(() => {
      if (this.#endWrites.get(job.id) === write) this.#endWrites.delete(job.id);
      // A job waiting here for this one starts now rather than at the next heartbeat.
      this.waiting.keepSoon();
    });
  }

  /** A job this node pruned leaves the fleet's records too, once its end is written there (one transaction: only an ended job goes). */
  jobPruned({ id, name }: Pick<JobRecord, 'id' | 'name'>): void {
    void (this.#endWrites.get(id) ?? Promise.resolve())
      .then(() => this.records.forget(id, name))
      .catch((err: unknown) => this.logger.warn({ jobId: id, err: messageOf(err) }, 'could not remove a pruned job from etcd'));
  }

  /** Tries until etcd has the end (or this node is closing and gave up waiting). */
  async #claimEnd(job: Job): Promise<void> {
    const attempt = newAttempt();
    for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, 5_000)) {
      try {
        const outcome = await this.records.claimEnd(job, { node: this.self, attempt });
        if (!outcome.won) this.logger.warn({ jobId: job.id, by: outcome.claim?.node ?? null }, 'the fleet had already ended this job, or pruned it');
        return;
      } catch (err) {
        this.logger.warn({ jobId: job.id, err: messageOf(err) }, 'could not record a job end in etcd; trying again');
        if (this.#gaveUpEnds) return;
        await sleep(delayMs);
      }
    }
  }

  // ---------------------------------------------------------------------------
  // JobApi

  /** `id`: the job's on the first node tried, when the caller chose it (a schedule's firing); a UUIDv7. */
  async createJob(caller: Caller, request: CreateJobReq, id?: string): Promise<Job> {
    checkCreate(request);
    const nodes = await this.#readNodes();
    if (request.node !== '' && !nodes.has(request.node)) throw new JobworkerError('NODE_NOT_FOUND', `node ${request.node} is not part of the fleet`);
    // Placed once what it waits for has ended, by the node that keeps it (waiting.ts).
    if (request.after.length > 0) return this.waiting.accept(caller, request).catch((err: unknown) => {
      if (err instanceof JobworkerError) throw err;
      throw etcdUnavailable(err);
    });
    const { candidates, refused } = place(nodes.values(), needsOf(request));
    for (const [at, candidate] of candidates.entries()) {
      try {
        // An id per node tried: a claim that reached etcd late cannot stand in the way of the next.
        return await this.#handOff(candidate.info, at === 0 && id !== undefined ? id : uuidv7(), caller, request);
      } catch (err) {
        // That node said no before starting anything (its own figures, its
        // shutdown, its lease): the next one may say yes.
        if (!(err instanceof JobworkerError && NEXT_CANDIDATE.has(err.code))) throw err;
        refused.set(candidate.info.name, err.message);
      }
    }
    throw new JobworkerError('NO_NODE_FITS', `no node can take the job: ${describeRefusals(refused) || 'the fleet has no nodes'}`);
  }

  async #handOff(node: NodeInfo, id: string, caller: Caller, request: CreateJobReq): Promise<Job> {
    const start: StartJobReq = { id, request, owner: caller.cn, ownerRole: caller.role ?? '', attempt: newAttempt(), keeper: '', waitingRevision: '', createdAt: undefined };
    try {
      return await this.#handTo(node, start);
    } catch (failure) {
      // The node's own refusal: it started nothing.
      if (!(failure instanceof JobworkerError) || failure.code !== 'NODE_UNAVAILABLE' || node.name === this.self) throw failure;
      // No answer: it may have started the job. Close the door, then look.
      const why = failure.message.replace(/^node \S+ \(\S+\) is unavailable: /, '');
      let outcome;
      try {
        outcome = await this.records.cancelStart(id, this.self);
      } catch (etcdErr) {
        throw startUnknown(node, id, `${why}; etcd could not say whether it started the job: ${messageOf(etcdErr)}`);
      }
      if (outcome.won) throw nodeUnavailable(node, `${why}; the job was not started`);
      // It claimed the start: the job is recorded. Answer once its start is
      // settled either way (its node answers it, or ends it as lost).
      return this.#settled(node, id, why);
    }
  }

  /** The start, on this node or handed to `node`: the job, or the node's refusal (NODE_UNAVAILABLE: no answer, it may have started it). */
  async #handTo(node: NodeInfo, start: StartJobReq): Promise<Job> {
    if (node.name === this.self) return this.#start(start);
    crashAt('entry-before-hand-off');
    try {
      const answer = await callPeer<StartJobReq, CreateJobRes>(this.peers.nodes(node), 'startJob', start, undefined, HAND_OFF_TIMEOUT_MS);
      crashAt('entry-after-hand-off');
      return answer.job!;
    } catch (err) {
      throw fromPeer(err, node);
    }
  }

  /** The record of a job whose start `node` claimed, once it is past INITIALIZING; an error if its start failed. */
  async #settled(node: NodeInfo, id: string, why: string): Promise<Job> {
    const until = performance.now() + HAND_OFF_TIMEOUT_MS + this.config.nodeLostAfterMs;
    for (;;) {
      const job = await this.records.job(id).catch(() => undefined);
      // A start that failed after its claim takes its record with it: nothing runs.
      if (job === null) throw nodeUnavailable(node, `${why}; its start of the job failed, the job was not started`);
      if (job && job.status !== JobStatus.JOB_STATUS_INITIALIZING) return job;
      if (performance.now() > until) throw startUnknown(node, id, `${why}; it claimed the job's start but has not settled it`);
      await sleep(SETTLE_POLL_MS);
    }
  }

  /** The job, started on this node: admitted against this node's own figures, claimed, started. */
  async #start(request: StartJobReq): Promise<Job> {
    if (this.#closing) throw Errors.shuttingDown();
    if (this.membership.fenced) throw new JobworkerError('FLEET_UNAVAILABLE', `node ${this.self} is cut off from etcd and takes no jobs`);
    checkJobId(request.id);
    if (!request.request) throw Errors.invalidArgument('request is required');
    const resolved = this.local.service.resolve(request.request);
    const needs = { cpuPercent: resolved.limits.cpuPercent, memoryMb: resolved.limits.memoryBytes / MIB };
    const stats = this.#stats();
    const { capacity } = this.config;
    const free = { cpuPercent: capacity.cpuPercent - stats.reservedCpuPercent, memoryMb: capacity.memoryMb - stats.reservedMemoryMb };
    const refused = capacityRefusal(capacity, free, needs);
    if (refused) throw new JobworkerError('NO_NODE_FITS', refused);
    // The same start twice at once (a keeper that restarted, or was replaced, handing a waiting job on again): one claim decides, but the second must not touch the first's admission.
    if (this.#admitting.has(request.id)) throw new JobworkerError('START_CLAIMED', `job ${request.id} is being started by node ${this.self} already`);
    this.#admitting.set(request.id, needs);
    // A job that waited in the fleet (waiting.ts): started only while it still waits as its keeper read it.
    const waited: Waited | undefined = request.keeper === '' ? undefined : { keeper: request.keeper, revision: request.waitingRevision };
    try {
      const pending = firstRecord(request, resolved, this.self);
      const notStarted = (err: unknown): never => {
        this.quotas.claimFailed(err);
        // Not started here, whatever becomes of the claim: one that reaches
        // etcd late is ended by this node's next upkeep (#reconcile).
        throw new JobworkerError('FLEET_UNAVAILABLE', `etcd did not answer; job ${request.id} was not started: ${messageOf(err)}`);
      };
      const owner = { cn: request.owner, role: request.ownerRole === '' ? null : request.ownerRole };
      const ours = (err: unknown): Promise<never> => (err instanceof JobworkerError ? Promise.reject(err) : notStarted(err));
      const outcome = await this.#claimStart(request.id, pending, resolved, owner, ours, notStarted, waited);
      if (!outcome.won) {
        const claim = outcome.claim!;
        if (claim.cancelled) throw new JobworkerError('START_CANCELLED', `job ${request.id}: its start was cancelled by node ${claim.node}`);
        throw new JobworkerError('START_CLAIMED', `job ${request.id} was already started by node ${claim.node}`);
      }
      crashAt('owner-after-claim');
      let record: JobRecord;
      try {
        const job = waited ? { ...resolved, waited: { createdAt: pending.createdAt!, after: fromDependencies(pending.after) } } : resolved;
        record = await this.local.service.start(job, request.owner, request.id);
      } catch (err) {
        // A new job was never created (its caller hears why); one that waited was, and ends without running.
        const undone = waited
          ? this.waiting.endNeverRan(pending, `its dependencies ended as asked, but it could not start: ${messageOf(err)}`)
          : this.records.forgetFailedStart(request.id, this.self, request.owner, resolved.name);
        await undone.catch((undoErr: unknown) => {
          this.logger.warn({ jobId: request.id, err: messageOf(undoErr) }, 'could not record the failed start of a job in etcd');
        });
        throw err;
      }
      crashAt('owner-after-start');
      const job = toJob(record, this.self);
      // RUNNING in the fleet's view; if etcd is away, the job's end will say how it went.
      await this.records.update(job).catch((err: unknown) => this.logger.warn({ jobId: job.id, err: messageOf(err) }, 'could not record a job start in etcd'));
      return job;
    } finally {
      if (this.#admitting.get(request.id) === needs) this.#admitting.delete(request.id);
    }
  }

  /**
   * The start claim, made only while the job's name is free and its owner's
   * quota has room as read: NAME_TAKEN or QUOTA_EXCEEDED when not. When
   * another start changed either between the read and the claim, both are
   * read again for a while (creates of one owner at its edge from several
   * nodes at once: contention.ts). A job that waited claims only while it
   * still waits as its keeper read it: START_NOT_WAITING when not; its
   * creation was counted against its owner's rate as it was accepted.
   */
  async #claimStart(
    id: string,
    pending: Job,
    resolved: ResolvedJob,
    owner: QuotaCaller,
    ours: (err: unknown) => Promise<never>,
    notStarted: (err: unknown) => never,
    waited?: Waited,
  ): Promise<ClaimOutcome<StartClaim>> {
    return untilUncontended(id, 'started', async () => {
      const name = resolved.name === null ? undefined : await this.#freeName(resolved.name, id).catch(ours);
      const quota = await this.quotas.reserve(owner, id, resolved.limits, { counted: !waited }).catch(ours);
      const outcome = await this.records.claimStart(id, { node: this.self, attempt: newAttempt() }, pending, name, quota, waited).catch(notStarted);
      if (outcome.won || outcome.claim !== null) return outcome;
      if (waited && !(await this.records.stillWaiting(id, waited).catch(notStarted))) {
        throw new JobworkerError('START_NOT_WAITING', `job ${id} no longer waits as node ${waited.keeper} saw it (stopped, or handed on again): not started here`);
      }
      return null;
    });
  }

  /** The name as the fleet has it, free to take for job `id`: NAME_TAKEN while another job that has not ended holds it. */
  async #freeName(name: string, id: string): Promise<NameHolder> {
    const holder = await this.records.nameHolder(name);
    // Held by the job itself: one that waited took its name as it was accepted.
    if (holder.id === null || holder.id === id) return holder;
    const held = await this.records.job(holder.id);
    // Pruned, or its start failed after its claim: nothing holds the name.
    if (held && !ENDED.has(held.status)) throw Errors.nameTaken(name, holder.id);
    return holder;
  }

  async getJob(caller: Caller, request: GetJobReq): Promise<Job> {
    // Undecided, the asking node answers with the fleet's record (its node's answer failed).
    if (caller.via) return this.#keptOrRefused(this.#localJob(await this.local.service.getJob(caller, request)), 'FLEET_UNAVAILABLE');
    const job = await this.#fleetJob(request.id);
    // Ended, waiting (on no node), or starting (its node may not have it yet): as the fleet has it.
    if (ENDED.has(job.status) || job.status === JobStatus.JOB_STATUS_INITIALIZING) return job;
    if (job.node === this.self) return (await this.#asFleetKeepsIt(this.#localJob(await this.local.service.getJob(caller, { id: job.id })))) ?? job;
    return this.#fromItsNode(caller, job, FORWARD_TIMEOUT_MS);
  }

  /**
   * This node's own job as the fleet keeps it, for this node's callers and
   * other nodes' forwarded calls alike. Ended here, its end not yet in etcd,
   * the fleet may still end it otherwise (as lost, while this node was cut
   * off): the answer waits for the end write, which in a healthy fleet takes
   * milliseconds (a follower told of the end, or `jobctl run`, asks at once),
   * and is then the ending etcd has. null when etcd has not decided within
   * END_WRITE_WAIT_MS: no node may tell of an ending the fleet did not keep.
   */
  async #asFleetKeepsIt(local: Job): Promise<Job | null> {
    const write = this.#endWrites.get(local.id);
    if (!ENDED.has(local.status) || !write) return local;
    if (!(await settlesWithin(write, END_WRITE_WAIT_MS)) || this.#endWrites.has(local.id)) return null;
    const kept = await this.#fleetJob(local.id).catch(() => null);
    return kept && ENDED.has(kept.status) ? kept : null;
  }

  /**
   * A job of this node that a stop has ended, answered once the fleet has
   * its end (milliseconds while etcd answers, END_WRITE_WAIT_MS at most): a
   * create right after the answer finds its share of the owner's quota given
   * back, as on a single host.
   */
  async #endWritten(local: Job): Promise<Job> {
    const write = this.#endWrites.get(local.id);
    if (write) await settlesWithin(write, END_WRITE_WAIT_MS);
    return local;
  }

  /** A forwarded call's answer about this node's own job: as the fleet keeps it, or refused with `code` while etcd has not decided. */
  async #keptOrRefused(local: Job, code: 'FLEET_UNAVAILABLE' | 'NODE_UNAVAILABLE'): Promise<Job> {
    const answer = await this.#asFleetKeepsIt(local);
    if (!answer) throw new JobworkerError(code, `job ${local.id} ended on node ${this.self}, which has not recorded its end in etcd yet`);
    return answer;
  }

  /** A running job of another node as that node has it now; the fleet's record when it cannot say. */
  async #fromItsNode(caller: Caller, job: Job, timeoutMs: number): Promise<Job> {
    const node = this.#table.get(job.node);
    if (!node || node.state === 'lost') return job;
    try {
      const answer = await callPeer<GetJobReq, { job?: Job }>(this.peers.jobs(node.info), 'getJob', { id: job.id }, forwardedMetadata(caller), timeoutMs);
      return answer.job ?? job;
    } catch {
      return job;
    }
  }

  async stopJob(caller: Caller, request: StopJobReq): Promise<Job> {
    if (caller.via) return this.#endWritten(this.#localJob(await this.local.service.stopJob(caller, request)));
    const graceMs = request.graceMs ?? this.local.service.options.defaultGraceMs;
    if (graceMs > MAX_GRACE_MS) throw Errors.invalidArgument(`grace_ms must be at most ${MAX_GRACE_MS}, got ${graceMs}`);
    let job = await this.#fleetJob(request.id);
    if (job.status === JobStatus.JOB_STATUS_WAITING) {
      const stop = await this.waiting.stop(job).catch((err: unknown) => {
        if (err instanceof JobworkerError) throw err;
        throw etcdUnavailable(err);
      });
      if ('stopped' in stop) return stop.stopped;
      // It started meanwhile: stopped where it runs.
      job = stop.started;
    }
    job = await this.#pastStart(job);
    if (ENDED.has(job.status)) return job;
    if (job.node === this.self) return this.#endWritten(this.#localJob(await this.local.service.stopJob(caller, { ...request, id: job.id })));
    const node = await this.#nodeOf(job, 'its jobs are being ended as lost');
    try {
      const answer = await callPeer<StopJobReq, { job?: Job }>(this.peers.jobs(node.info), 'stopJob', { ...request, id: job.id }, forwardedMetadata(caller), graceMs + FORWARD_TIMEOUT_MS * 3);
      return answer.job ?? job;
    } catch (err) {
      throw fromPeer(err, node.info);
    }
  }

  async getJobs(caller: Caller, request: GetJobsReq): Promise<JobsPage> {
    try {
      return await readFleetPage(this.client, this.keys, request, (jobs) => this.#fresher(caller, jobs, request.freshUsage));
    } catch (err) {
      if (err instanceof JobworkerError) throw err;
      throw etcdUnavailable(err);
    }
  }

  /**
   * Running jobs of this node from its store (always fresher than etcd);
   * others from their node when asked to, FRESH_READS_AT_ONCE at a time.
   */
  async #fresher(caller: Caller, jobs: Job[], freshUsage: boolean): Promise<Job[]> {
    const fresh = [...jobs];
    await atMost(FRESH_READS_AT_ONCE, jobs, async (job, at) => {
      if (job.status !== JobStatus.JOB_STATUS_RUNNING) return;
      if (job.node === this.self) {
        const record = this.local.store.get(job.id);
        // Ended here, its end not yet in etcd: listed as the fleet has it, as GetJob answers it.
        if (!record || (record.state !== 'RUNNING' && this.#endWrites.has(job.id))) return;
        if (freshUsage) await this.local.service.options.runner.refreshUsage(record, { batch: true });
        fresh[at] = toJob(record, this.self);
      } else if (freshUsage) {
        fresh[at] = await this.#fromItsNode(caller, job, FRESH_TIMEOUT_MS);
      }
    });
    return fresh;
  }

  /** The rule of this node's --quota-file, with the use of the whole fleet (quota-use.ts); calls in flight are this node's. */
  async getQuota(caller: Caller, request: GetQuotaReq): Promise<Quota> {
    const owner = checkQuotaOwner(caller, request);
    try {
      const role = owner === caller.cn ? caller.role : ((await this.quotas.roleOf(owner)) ?? this.local.service.options.quotas.roleOf(owner));
      const whose = { cn: owner, role };
      return this.local.service.quotaOf(whose, await this.quotas.useOf(whose));
    } catch (err) {
      if (err instanceof JobworkerError) throw err;
      throw etcdUnavailable(err);
    }
  }

  /**
   * Forwarded to the job's node; while that node cannot answer, the job's
   * record is read again every heartbeat until the fleet has ended the job
   * (a lost node's jobs are ended as lost).
   */

  async waitJob(caller: Caller, request: WaitJobReq, signal: AbortSignal): Promise<Job> {
    // Undecided (this node is cut off from etcd), the asking node reads the fleet's record until it has decided.
    if (caller.via) return this.#keptOrRefused(this.#localJob(await this.local.service.waitJob(caller, request, signal)), 'NODE_UNAVAILABLE');
    let job = await this.#pastStart(await this.#fleetJob(request.id));
    if (job.node === this.self && !ENDED.has(job.status)) {
      const answer = await this.#asFleetKeepsIt(this.#localJob(await this.local.service.waitJob(caller, { id: job.id }, signal)));
      if (answer) return answer;
      job = await this.#fleetJob(job.id);
    }
    while (!ENDED.has(job.status) && !signal.aborted) {
      const node = this.#table.get(job.node);
      // Waiting (on no node), or starting (its node may not have it yet): read again.
      if (job.node !== this.self && node && node.state !== 'lost' && job.status !== JobStatus.JOB_STATUS_INITIALIZING) {
        try {
          const answer = await callPeer<WaitJobReq, WaitJobRes>(this.peers.jobs(node.info), 'waitJob', { id: job.id }, forwardedMetadata(caller), Number.POSITIVE_INFINITY, signal);
          return answer.job ?? job;
        } catch (err) {
          const failure = fromPeer(err, node.info);
          if (failure.code !== 'NODE_UNAVAILABLE') throw failure;
        }
      }
      await sleep(this.config.heartbeatMs, undefined, { signal }).catch(() => undefined);
      job = await this.#fleetJob(job.id);
    }
    return job;
  }

  /** Relayed to the job's node, which writes it (JobService.writeTo); held back as that node holds this one back. */
  async writeInput(caller: Caller, call: InputCall): Promise<WriteInputRes> {
    if (caller.via) return this.local.service.writeInput(caller, call);
    const input = await openInput(call);
    try {
      let job = await this.#fleetJob(input.first.id);
      if (job.status === JobStatus.JOB_STATUS_WAITING) {
        if (!job.stdin) throw Errors.noStdin(job.id);
        // Its input goes to it once it runs: the writer waits with it (gRPC flow control holds what it sends).
        const placed = await this.waiting.untilPlaced(job.id, input.gone);
        if (!placed) throw Errors.inputRefused(`the writer went away while job ${job.id} waited`);
        job = placed;
      }
      job = await this.#pastStart(job);
      if (neverRan(job)) throw Errors.inputAfterEnd(job.id, statusName(job.status));
      if (job.node === this.self) return await this.local.service.writeTo(this.local.service.find(job.id), input);
      if (ENDED.has(job.status)) throw Errors.inputAfterEnd(job.id, statusName(job.status));
      const node = await this.#nodeOf(job, 'its jobs are being ended as lost');
      return await this.#relayInput(node.info, caller, job.id, input);
    } finally {
      input.close();
    }
  }

  async #relayInput(node: NodeInfo, caller: Caller, id: string, input: InputStream): Promise<WriteInputRes> {
    let upstream: ReturnType<ReturnType<Peers['jobs']>['writeInput']> | undefined;
    const answer = new Promise<WriteInputRes>((resolve, reject) => {
      upstream = this.peers.jobs(node).writeInput(forwardedMetadata(caller), {}, (err, res) => (err ? reject(fromPeer(err, node)) : resolve(res)));
    });
    const onGone = (): void => upstream!.cancel();
    input.gone.addEventListener('abort', onGone, { once: true });
    // The other node's answer may come early (a refusal, the job's end): then nothing more is read or sent.
    const answered = new AbortController();
    void answer.then(
      () => answered.abort(),
      () => answered.abort(),
    );
    try {
      const send = async (data: Buffer, first: boolean): Promise<void> => {
        if (upstream!.write({ id: first ? id : '', data })) return;
        await unlessAborted(once(upstream!, 'drain'), answered.signal, undefined);
      };
      await send(input.first.data, true);
      for (let data = await input.next(answered.signal); data !== null; data = await input.next(answered.signal)) await send(data, false);
      upstream!.end();
      return await answer;
    } catch (err) {
      // The client's side failed (a message for another job): the job's node must not wait on for more.
      upstream!.cancel();
      throw err;
    } finally {
      input.gone.removeEventListener('abort', onGone);
    }
  }

  async streamOutput(caller: Caller, call: OutputCall): Promise<void> {
    if (caller.via) return this.local.service.streamOutput(caller, call);
    let job = await this.#fleetJob(call.request.id);
    if (job.status === JobStatus.JOB_STATUS_WAITING) {
      // No output yet, and no node holds it: a follower waits for its start, from its first byte.
      if (!call.request.follow) {
        call.end();
        return;
      }
      const placed = await this.#untilPlaced(call, job.id);
      if (!placed) return;
      job = placed;
    }
    job = await this.#pastStart(job);
    // Ended without running (stopped while waiting, its start failed): no node has output of it.
    if (neverRan(job)) {
      call.end();
      return;
    }
    // By name too: the fleet's newest job of that name is this node's, so it is this node's newest of that name.
    if (job.node === this.self) return this.local.service.streamOutput(caller, call);
    const node = await this.#nodeOf(job, 'the job\'s output lives there', '; the job\'s output lives there');
    await this.#relay(node.info, caller, call);
  }

  /**
   * The job's output from its node to the client, chunk by chunk as encoded
   * there, reading from the node only as fast as the client takes it: what
   * waits here is bounded by the stream window of peers.ts and grpc-js's
   * read-ahead (about 2 MiB), and two chunks on the client's side.
   */
  async #relay(node: NodeInfo, caller: Caller, call: OutputCall): Promise<void> {
    const upstream = this.peers.outputOf(node, caller, call.request, {});
    const gone = new AbortController();
    const onCancel = (): void => {
      gone.abort();
      upstream.cancel();
    };
    call.once('cancelled', onCancel);
    call.once('close', onCancel);
    let lost: string | undefined;
    const onLost = (why: string): void => {
      lost = why;
      upstream.cancel();
    };
    const relays = this.#relays.get(node.name) ?? new Set();
    this.#relays.set(node.name, relays.add(onLost));
    const window = new WriteWindow(call, gone.signal);
    try {
      for await (const bytes of upstream as AsyncIterable<Buffer>) await window.write(bytes);
    } catch (err) {
      if (gone.signal.aborted) return;
      if (lost) throw nodeUnavailable(node, `${lost}; the stream ends here, the rest of the output is on that node`);
      throw fromPeer(err, node);
    } finally {
      relays.delete(onLost);
      call.off('cancelled', onCancel);
      call.off('close', onCancel);
    }
    if (!gone.signal.aborted) call.end();
  }

  /**
   * A job whose start is claimed but not settled on its node (INITIALIZING:
   * its node may not have it yet), once it is: for a call its node must
   * answer. As it is, past the hand-off's time.
   */
  async #pastStart(job: Job): Promise<Job> {
    const until = performance.now() + HAND_OFF_TIMEOUT_MS;
    while (job.status === JobStatus.JOB_STATUS_INITIALIZING && performance.now() < until) {
      await sleep(SETTLE_POLL_MS);
      job = await this.#fleetJob(job.id);
    }
    return job;
  }

  /** A waiting job once it no longer waits, for a follower of its output; null (the call ended) if the follower goes first. */
  async #untilPlaced(call: OutputCall, id: string): Promise<Job | null> {
    const gone = new AbortController();
    const onGone = (): void => gone.abort();
    call.once('cancelled', onGone);
    call.once('close', onGone);
    try {
      return await this.waiting.untilPlaced(id, gone.signal);
    } finally {
      call.off('cancelled', onGone);
      call.off('close', onGone);
    }
  }

  /** The node a job runs on, to forward to: NODE_UNAVAILABLE when it is not in the fleet (saying `missing`) or is lost (saying `lost`). */
  async #nodeOf(job: Job, lost: string, missing = ''): Promise<NodeView> {
    const node = this.#table.get(job.node) ?? (await this.#readNodes()).get(job.node);
    if (!node) throw nodeUnavailable({ name: job.node, address: 'unknown' }, `it is not in the fleet${missing}`);
    if (node.state === 'lost') throw nodeUnavailable(node.info, `it is lost; ${lost}`);
    return node;
  }

  #localJob(job: Job): Job {
    return { ...job, node: this.self };
  }

  /** The fleet's record of a job, by id or by name (names/<name>: the newest job of that name). */
  async #fleetJob(ref: string): Promise<Job> {
    const byName = checkJobRef(ref) === 'name';
    const job = await (async () => {
      const id = byName ? (await this.records.nameHolder(ref)).id : ref;
      return id === null ? null : this.records.job(id);
    })().catch((err: unknown) => {
      throw etcdUnavailable(err);
    });
    if (!job) throw byName ? Errors.noJobNamed(ref) : Errors.jobNotFound(ref);
    return job;
  }

  async #readNodes(): Promise<Map<string, NodeView>> {
    try {
      this.#table = await readNodes(this.client, this.keys);
      return this.#table;
    } catch (err) {
      throw etcdUnavailable(err);
    }
  }

  // ---------------------------------------------------------------------------
  // NodeApi, FleetApi

  async startJob(_caller: Caller, request: StartJobReq): Promise<CreateJobRes> {
    return { job: await this.#start(request) };
  }

  async getNodes(): Promise<Nodes> {
    const nodes = await this.#readNodes();
    return { nodes: [...nodes.values()].sort((a, b) => (a.info.name < b.info.name ? -1 : 1)).map(toNode) };
  }

  async drainNode(_caller: Caller, request: DrainNodeReq): Promise<DrainNodeRes> {
    return this.#mark(request.name, true);
  }

  async undrainNode(_caller: Caller, request: DrainNodeReq): Promise<DrainNodeRes> {
    return this.#mark(request.name, false);
  }

  async #mark(name: string, drained: boolean): Promise<DrainNodeRes> {
    if (!NODE_NAME.test(name)) throw Errors.invalidArgument(`name must be a node's name, got ${quoted(name)}`);
    if (!(await this.#readNodes()).has(name)) throw new JobworkerError('NODE_NOT_FOUND', `node ${name} is not part of the fleet`);
    try {
      if (drained) await this.client.put(this.keys.drain(name)).value('').exec();
      else await this.client.delete().key(this.keys.drain(name)).exec();
    } catch (err) {
      throw etcdUnavailable(err);
    }
    const view = (await this.#readNodes()).get(name);
    if (!view) throw new JobworkerError('NODE_NOT_FOUND', `node ${name} is not part of the fleet`);
    return { node: toNode(view) };
  }
}

/**
 * A job the fleet has ended without it ever running as far as the fleet
 * knows (stopped or failed while waiting, ended as lost while starting): no
 * node holds output of it or takes input for it.
 */
function neverRan(job: Job): boolean {
  return ENDED.has(job.status) && (job.startedAt === undefined || job.pid === 0);
}

/** etcd could not be read or written: nothing was done that depends on it. */
function etcdUnavailable(err: unknown): JobworkerError {
  return new JobworkerError('FLEET_UNAVAILABLE', `etcd did not answer: ${messageOf(err)}`);
}

function startUnknown(node: NodeInfo, id: string, why: string): JobworkerError {
  return new JobworkerError('START_UNKNOWN', `node ${node.name} (${node.address}) did not answer: ${why}; look for job ${id} before creating it again`);
}

/** What a fleet refuses of a CreateJob before anything moves: what does not depend on the node. */
export function checkCreate(request: CreateJobReq): void {
  checkRequestSize(request);
  parseEnv(request.env);
  validateCommand(request.command, request.args);
  for (const [key, value] of Object.entries(request.constraints)) {
    const problem = labelProblem(key, value);
    if (problem) throw Errors.invalidArgument(`constraint: ${problem}`);
  }
  if (request.node !== '' && !NODE_NAME.test(request.node)) throw Errors.invalidArgument(`node must be a node's name, got ${quoted(request.node)}`);
}

/** One unary call to another node, with a deadline (Infinity: none); cancelled when `signal` aborts. */
function callPeer<Req, Res>(client: object, method: string, request: Req, metadata: Metadata | undefined, timeoutMs: number, signal?: AbortSignal): Promise<Res> {
  const options: Partial<CallOptions> = { deadline: Date.now() + timeoutMs };
  const send = (client as Record<string, (...args: unknown[]) => { cancel(): void }>)[method]!;
  return new Promise((resolve, reject) => {
    const callback = (err: ServiceError | null, res: Res): void => {
      signal?.removeEventListener('abort', cancel);
      if (err) reject(err);
      else resolve(res);
    };
    const call = metadata ? send.call(client, request, metadata, options, callback) : send.call(client, request, options, callback);
    const cancel = (): void => call.cancel();
    signal?.addEventListener('abort', cancel, { once: true });
  });
}

