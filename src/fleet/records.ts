// The fleet's job records and the claims that decide them, in etcd. Every
// decision that must be exclusive — who starts a job, who records its end —
// is one transaction that creates the claim only if it does not exist yet
// and writes the record with it, so the record always says what the claim
// decided. The etcd3 client retries a transaction by itself (on a lost
// answer too), so a claim that won can come back as "compare failed": each
// claim carries its writer's attempt id, and any failure is followed by a
// read of the claim before deciding.
import { randomUUID } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { Job, JobStatus, WaitingJob, type StartJobReq } from '../gen/jobworker/v1/jobworker.js';
import type { ResolvedJob } from '../supervisor/rpc/job-service.js';
import { FleetKeys } from './keys.js';
import type { Reservation } from './quota-use.js';

export interface StartClaim {
  /** The node that started the job, or that cancelled its start. */
  node: string;
  attempt: string;
  cancelled?: true;
}

export interface EndClaim {
  node: string;
  attempt: string;
  /** The job's node was lost; `node` declared it. */
  lost?: true;
}

/** Won; or lost to the claim that was there first; or (claim null) not made, because a condition did not hold. */
export type ClaimOutcome<C> = { won: true } | { won: false; claim: C | null };

/** A key that must exist (true) or must not (false), or must be as last read (its mod revision), for a claim to be made. */
export type Condition = [key: string, exists: boolean] | [key: string, 'unchanged', modRevision: string];

/** What a transaction writes when its conditions hold. */
export type Writes = Parameters<ReturnType<Etcd3['if']>['then']>;

/** Who holds a job name in the fleet as last read: the key's mod revision ('0' when absent) and the job it names. */
export interface NameHolder {
  revision: string;
  id: string | null;
}

/** A job that waited in the fleet (waiting.ts): its keeper, and the mod revision of its entry there that its start must find unchanged. */
export interface Waited {
  keeper: string;
  revision: string;
}

/** A waiting job's entry under its keeper as last read. */
export interface WaitingEntry {
  id: string;
  revision: string;
  job: WaitingJob;
}

/** The statuses of a job that has ended, as the fleet's records say them. */
export const ENDED: ReadonlySet<JobStatus> = new Set([JobStatus.JOB_STATUS_COMPLETED, JobStatus.JOB_STATUS_FAILED, JobStatus.JOB_STATUS_STOPPED, JobStatus.JOB_STATUS_TIMED_OUT]);

/** COMPLETED, FAILED…: a status as a job's state is said in messages. */
export function statusName(status: JobStatus): string {
  return JobStatus[status].replace('JOB_STATUS_', '');
}

export const newAttempt = (): string => randomUUID();

const MIB = 1024 * 1024;

/**
 * The first record of a job as the fleet keeps it: INITIALIZING on `node`,
 * written by its start claim; or, `node` empty, WAITING on none, written as
 * a job that waits for others is accepted (waiting.ts). A job that waited
 * keeps when it was accepted, and what it waited for (by id).
 */
export function firstRecord(start: StartJobReq, resolved: Pick<ResolvedJob, 'limits' | 'timeoutMs'>, node: string): Job {
  const req = start.request!;
  const { limits } = resolved;
  const now = new Date();
  return {
    id: start.id,
    command: req.command,
    args: req.args,
    limits: { maxCpuPercent: limits.cpuPercent, maxMemoryMb: limits.memoryBytes / MIB, maxIoBps: limits.ioBps, maxPids: limits.pids },
    status: node === '' ? JobStatus.JOB_STATUS_WAITING : JobStatus.JOB_STATUS_INITIALIZING,
    pid: 0,
    cgroup: '',
    startedAt: node === '' ? undefined : now,
    createdAt: start.createdAt ?? now,
    after: req.after,
    endedAt: undefined,
    exitCode: undefined,
    signal: '',
    oomKilled: false,
    owner: start.owner,
    message: '',
    outputBytes: 0,
    usage: undefined,
    outputStart: 0,
    outputProblem: '',
    isolation: undefined,
    workdir: req.workdir,
    node,
    name: req.name,
    labels: req.labels,
    timeoutMs: resolved.timeoutMs ?? 0,
    stdin: req.stdin,
  };
}

export function encodeJob(job: Job): Buffer {
  return Buffer.from(Job.encode(job).finish());
}

export function decodeJob(bytes: Buffer): Job {
  return Job.decode(bytes);
}

export class FleetRecords {
  constructor(
    readonly client: Etcd3,
    readonly keys: FleetKeys,
  ) {}

  async job(id: string): Promise<Job | null> {
    const bytes = await this.client.get(this.keys.job(id)).buffer();
    return bytes ? decodeJob(bytes) : null;
  }

  /** Who holds `name` now, with the revision a claim of it must find unchanged. */
  async nameHolder(name: string): Promise<NameHolder> {
    const response = await this.client.get(this.keys.name(name)).exec();
    const kv = response.kvs[0];
    return kv ? { revision: kv.mod_revision, id: kv.value.toString() } : { revision: '0', id: null };
  }

  /**
   * Claims the start of job `id` for `claim.node` and writes its first record
   * (and its entry in running/, its name, its owner's quota use): won, or
   * the claim that was there first. A job with a name takes it over only if
   * nobody took it since `name` was read (its holder then had ended), and
   * its quota reservation holds only if its owner's use is as read
   * (quota-use.ts): otherwise the claim is not made (claim null). A job
   * that waited (`waited`) starts only while its entry under its keeper is
   * as read and nobody has ended it (a stop): the claim takes the entry.
   */
  claimStart(id: string, claim: StartClaim, record: Job, name?: NameHolder, quota?: Reservation, waited?: Waited): Promise<ClaimOutcome<StartClaim>> {
    const conditions: Condition[] = name && record.name !== '' ? [[this.keys.name(record.name), 'unchanged', name.revision]] : [];
    const writes = [
      this.client.put(this.keys.startClaim(id)).value(JSON.stringify(claim)),
      this.client.put(this.keys.job(id)).value(encodeJob(record)),
      this.client.put(this.keys.running(record.node, id)).value(''),
      ...(conditions.length > 0 ? [this.client.put(this.keys.name(record.name)).value(id)] : []),
      ...(quota?.writes ?? []),
      ...(waited ? [this.client.delete().key(this.keys.waiting(waited.keeper, id))] : []),
    ];
    if (quota?.condition) conditions.push(quota.condition);
    // The record too: an end that never ran goes with its record on a lease, and the entry, left for its keeper to drop, must not outlive both.
    if (waited) conditions.push([this.keys.waiting(waited.keeper, id), 'unchanged', waited.revision], [this.keys.endClaim(id), false], [this.keys.job(id), true]);
    return this.#claim<StartClaim>(this.keys.startClaim(id), claim.attempt, conditions, writes);
  }

  /**
   * Records a job that waits for others (WAITING, on no node) with its
   * entry under `keeper`, taking its name only if nobody took it since
   * `name` was read and writing its creation's quota use only if its
   * owner's use is as read: true, or false when a condition did not hold
   * (nothing written).
   */
  async acceptWaiting(record: Job, keeper: string, entry: WaitingJob, name?: NameHolder, quota?: Reservation): Promise<boolean> {
    const conditions: Condition[] = [[this.keys.job(record.id), false]];
    if (name && record.name !== '') conditions.push([this.keys.name(record.name), 'unchanged', name.revision]);
    if (quota?.condition) conditions.push(quota.condition);
    let failure: unknown;
    try {
      const result = await this.#txn(conditions, [
        this.client.put(this.keys.job(record.id)).value(encodeJob(record)),
        this.client.put(this.keys.waiting(keeper, record.id)).value(encodeWaiting(entry)),
        ...(record.name !== '' ? [this.client.put(this.keys.name(record.name)).value(record.id)] : []),
        ...(quota?.writes ?? []),
      ]);
      if (result.succeeded) return true;
    } catch (err) {
      failure = err;
    }
    // The id is new: a record under it is this write's, its answer lost.
    if ((await this.client.get(this.keys.job(record.id)).exec()).kvs.length > 0) return true;
    if (failure) throw failure;
    return false;
  }

  /** Whether a waiting job's entry is still as `waited` read it, and nobody has ended the job. */
  async stillWaiting(id: string, waited: Waited): Promise<boolean> {
    const [entry, end] = await Promise.all([this.client.get(this.keys.waiting(waited.keeper, id)).exec(), this.client.get(this.keys.endClaim(id)).exec()]);
    return entry.kvs[0]?.mod_revision === waited.revision && end.kvs.length === 0;
  }

  /** The waiting jobs `keeper` keeps, with the revisions a change of each must find. */
  async waitingOn(keeper: string): Promise<WaitingEntry[]> {
    const response = await this.client.getAll().prefix(this.keys.waitingOn(keeper)).exec();
    return response.kvs.map((kv) => ({ id: FleetKeys.last(kv.key.toString()), revision: kv.mod_revision, job: WaitingJob.decode(kv.value) }));
  }

  /** Every keeper with waiting jobs, and their ids (keys only). */
  async keepers(): Promise<Map<string, string[]>> {
    const keys = await this.client.getAll().prefix(this.keys.waitingAll()).keys();
    const keepers = new Map<string, string[]>();
    for (const key of keys) {
      const [keeper, id] = key.slice(this.keys.waitingAll().length).split('/') as [string, string];
      keepers.set(keeper, [...(keepers.get(keeper) ?? []), id]);
    }
    return keepers;
  }

  /**
   * Rewrites a waiting job's entry (and its record, while nobody has
   * started or ended it) if the entry is as read: its new revision, or null
   * when it was not (started, ended, moved, or changed meanwhile).
   */
  async rewriteWaiting(record: Job, keeper: string, entry: WaitingEntry): Promise<string | null> {
    const key = this.keys.waiting(keeper, record.id);
    const result = await this.#txn(
      [
        [key, 'unchanged', entry.revision],
        [this.keys.job(record.id), true],
        [this.keys.startClaim(record.id), false],
        [this.keys.endClaim(record.id), false],
      ],
      [this.client.put(key).value(encodeWaiting(entry.job)), this.client.put(this.keys.job(record.id)).value(encodeJob(record))],
    );
    return result.succeeded ? result.header.revision : null;
  }

  /** A waiting job's entry goes, if it is as read (its job has ended, or is gone). */
  async dropWaiting(keeper: string, entry: WaitingEntry): Promise<void> {
    await this.#txn([[this.keys.waiting(keeper, entry.id), 'unchanged', entry.revision]], [this.client.delete().key(this.keys.waiting(keeper, entry.id))]);
  }

  /** Takes over a waiting job of `from`, a keeper with no heartbeat, if its entry is as read: true if this call moved it. */
  async adoptWaiting(from: string, to: string, entry: WaitingEntry): Promise<boolean> {
    const key = this.keys.waiting(from, entry.id);
    const result = await this.#txn(
      [
        [key, 'unchanged', entry.revision],
        [this.keys.nodeAlive(from), false],
      ],
      [this.client.delete().key(key), this.client.put(this.keys.waiting(to, entry.id)).value(encodeWaiting(entry.job))],
    );
    return result.succeeded;
  }

  /**
   * Claims the end of a job that never ran: one still waiting (no start
   * claim: a stop, or a dependency that failed it), or one whose start was
   * claimed on node `startedOn` but never ran there (it failed, or the node
   * restarted). No node's retention holds such a job: its record, claims
   * and name go with `lease` (--retain-for).
   */
  async endUnrun(record: Job, claim: EndClaim, lease: string, startedOn?: string): Promise<ClaimOutcome<EndClaim>> {
    for (let tries = 1; ; tries += 1) {
      const start = startedOn === undefined ? undefined : (await this.client.get(this.keys.startClaim(record.id)).exec()).kvs[0];
      if (startedOn !== undefined && !start) return { won: false, claim: null };
      const conditions: Condition[] = [start ? [this.keys.startClaim(record.id), 'unchanged', start.mod_revision] : [this.keys.startClaim(record.id), false]];
      const writes: Writes = [
        this.client.put(this.keys.endClaim(record.id)).value(JSON.stringify(claim)).lease(lease),
        this.client.put(this.keys.job(record.id)).value(encodeJob(record)).lease(lease),
      ];
      if (start) {
        writes.push(
          this.client.put(this.keys.startClaim(record.id)).value(start.value).lease(lease),
          this.client.delete().key(this.keys.running(startedOn!, record.id)),
          this.client.delete().key(this.keys.quotaRunning(record.owner, record.id)),
        );
      }
      // Its name goes with it if it still holds it (a later job of that name keeps its own).
      const name = record.name === '' ? undefined : (await this.client.get(this.keys.name(record.name)).exec()).kvs[0];
      const holdsName = name !== undefined && name.value.toString() === record.id;
      if (holdsName) {
        conditions.push([this.keys.name(record.name), 'unchanged', name.mod_revision]);
        writes.push(this.client.put(this.keys.name(record.name)).value(record.id).lease(lease));
      }
      const outcome = await this.#claim<EndClaim>(this.keys.endClaim(record.id), claim.attempt, conditions, writes);
      // Not made: its start was claimed meanwhile; or its name changed hands between the read and the claim, which is read again.
      if (outcome.won || outcome.claim !== null || !holdsName || tries === 3) return outcome;
    }
  }

  /** The start of `id` may never happen: won, or the start claim that was there first. */
  cancelStart(id: string, node: string): Promise<ClaimOutcome<StartClaim>> {
    const claim: StartClaim = { node, attempt: newAttempt(), cancelled: true };
    return this.#claim<StartClaim>(this.keys.startClaim(id), claim.attempt, [], [this.client.put(this.keys.startClaim(id)).value(JSON.stringify(claim))]);
  }

  /**
   * A job whose start failed: its record, running/ entry and quota use go
   * (it was not created, for rate= either), and its name if it still holds
   * it (the claim stays: the id is spent).
   */
  async forgetFailedStart(id: string, node: string, owner: string, name: string | null): Promise<void> {
    await this.client
      .if(this.keys.startClaim(id), 'Create', '>', 0)
      .then(
        this.client.delete().key(this.keys.job(id)),
        this.client.delete().key(this.keys.running(node, id)),
        this.client.delete().key(this.keys.quotaRunning(owner, id)),
        this.client.delete().key(this.keys.quotaCreated(owner, id)),
      )
      .commit();
    if (name !== null) await this.#release(name, id);
  }

  /** An ended job's record and claims go (pruning), and its name if no later job took it; a job whose end is not claimed stays. */
  async forget(id: string, name: string | null): Promise<void> {
    const result = await this.client
      .if(this.keys.endClaim(id), 'Create', '>', 0)
      .then(this.client.delete().key(this.keys.job(id)), this.client.delete().prefix(this.keys.claims(id)))
      .commit();
    if (result.succeeded && name !== null) await this.#release(name, id);
  }

  async #release(name: string, id: string): Promise<void> {
    await this.client.if(this.keys.name(name), 'Value', '==', id).then(this.client.delete().key(this.keys.name(name))).commit();
  }

  /** Updates the record of a job whose end nobody has claimed yet (its start, once it runs). */
  async update(record: Job): Promise<void> {
    await this.client
      .if(this.keys.endClaim(record.id), 'Create', '==', 0)
      .and(this.keys.startClaim(record.id), 'Create', '>', 0)
      .then(this.client.put(this.keys.job(record.id)).value(encodeJob(record)))
      .commit();
  }

  /**
   * Claims the end of a job and writes its final record, leaving running/
   * and its owner's running quota use: won, or the claim that was there
   * first. Only for a job whose start was claimed (a pruned job's claims
   * are gone: nothing comes back). A node
   * declaring another's job lost passes that node's name: the claim is made
   * only while that node has no heartbeat, so a node that has registered
   * again keeps its jobs; the job's quota share is then kept on `linger`
   * (a lease) rather than removed: the node may be cut off, not dead, and
   * run the job until it stops its jobs itself.
   */
  claimEnd(record: Job, claim: EndClaim, lostNode?: string, linger?: { lease: string; share: string }): Promise<ClaimOutcome<EndClaim>> {
    const conditions: Condition[] = [[this.keys.startClaim(record.id), true]];
    if (lostNode !== undefined) conditions.push([this.keys.nodeAlive(lostNode), false]);
    return this.#claim<EndClaim>(this.keys.endClaim(record.id), claim.attempt, conditions, [
      this.client.put(this.keys.endClaim(record.id)).value(JSON.stringify(claim)),
      this.client.put(this.keys.job(record.id)).value(encodeJob(record)),
      this.client.delete().key(this.keys.running(record.node, record.id)),
      linger === undefined
        ? this.client.delete().key(this.keys.quotaRunning(record.owner, record.id))
        : this.client.put(this.keys.quotaRunning(record.owner, record.id)).value(linger.share).lease(linger.lease),
    ]);
  }

  /** Ids of the node's unfinished jobs (running/<node>/). */
  async runningOn(node: string): Promise<string[]> {
    const keys = await this.client.getAll().prefix(this.keys.runningOn(node)).keys();
    return keys.map(FleetKeys.last);
  }

  async #claim<C extends { attempt: string }>(key: string, attempt: string, conditions: Condition[], writes: Writes): Promise<ClaimOutcome<C>> {
    let failure: unknown;
    try {
      const result = await this.#txn([[key, false], ...conditions], writes);
      if (result.succeeded) return { won: true };
    } catch (err) {
      failure = err;
    }
    // Lost, or no answer: the claim says who won (perhaps this very attempt, its answer lost).
    const bytes = await this.client.get(key).string();
    if (bytes !== null) {
      const claim = JSON.parse(bytes) as C;
      return claim.attempt === attempt ? { won: true } : { won: false, claim };
    }
    // No claim: an answer lost with nothing done, or a condition that did not hold.
    if (failure) throw failure;
    return { won: false, claim: null };
  }

  /** One transaction: `writes` if every condition holds. */
  #txn(conditions: Condition[], writes: Writes): ReturnType<ReturnType<ReturnType<Etcd3['if']>['then']>['commit']> {
    const [first, ...rest] = conditions;
    let txn = condition(this.client.if.bind(this.client), first!);
    for (const other of rest) txn = condition(txn.and.bind(txn), other);
    return txn.then(...writes).commit();
  }
}

function condition<T>(add: (key: string, target: 'Create' | 'Mod', op: '==' | '>', value: number | string) => T, [key, exists, revision]: Condition): T {
  return exists === 'unchanged' ? add(key, 'Mod', '==', revision!) : add(key, 'Create', exists ? '>' : '==', 0);
}

export function encodeWaiting(entry: WaitingJob): Buffer {
  return Buffer.from(WaitingJob.encode(entry).finish());
}
