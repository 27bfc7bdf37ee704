// Quotas counted across the fleet (--quota-file on every node; the rules are
// each node's own file, the use is the fleet's). Use lives in etcd beside
// the job records (keys.ts, quota/<cn>/): a job's share is written in the
// transaction that claims its start and removed in the one that claims its
// end, so it counts exactly while the fleet has the job unended, whichever
// node ran or declared it. A start reads its owner's use, checks it here,
// and makes its claim only if no other start of that owner was claimed since
// the read (quota/<cn>/version unchanged): two nodes admitting at the edge
// at once cannot both pass, so use never overshoots a quota, not even for
// a moment. A job declared lost keeps its share until its node, if only cut
// off, has stopped it. Output kept is the node's own (output lives where the
// job ran), and calls=/rps= are each node's (they guard its RPC threads).
import type { Etcd3 } from 'etcd3';
import type { Job } from '../gen/jobworker/v1/jobworker.js';
import type { QuotaUse } from '../supervisor/jobs/quota-ledger.js';
import { checkOutput, checkRate, checkRunning, type JobShare, type RunningUse } from '../supervisor/policy/quota-checks.js';
import type { QuotaCaller, QuotaRules } from '../supervisor/policy/quotas.js';
import { delayAt } from './faults.js';
import type { FleetKeys } from './keys.js';
import type { Condition, Writes } from './records.js';
import { SharedLease } from './shared-lease.js';

const MIB = 1024 * 1024;
/**
 * Creation keys (for rate=) and quota/<cn>/version ride on a lease that ends
 * by itself: taken for RATE_LEASE_USE_MS and lasting RATE_LEASE_TTL_S, each
 * key outlives the longest window (an hour) and none is left behind, even by
 * a node that never comes back.
 */
const RATE_LEASE_TTL_S = 2 * 60 * 60;
const RATE_LEASE_USE_MS = 30 * 60 * 1000;
/** A lease for lost jobs' shares is taken at most this often (one per upkeep, not one per job). */
const LINGER_LEASE_USE_MS = 1_000;

/** What a start must find unchanged (none when no counted limit applies) and write along with its claim. */
export interface Reservation {
  condition?: Condition;
  writes: Writes;
}

/** A job's share of its owner's running quota, as quota/<cn>/running/<id> holds it. */
interface Share {
  cpuPercent: number;
  memoryMb: number;
}

/** The share of a job the fleet records (its limits as its node resolved them), as quota/<cn>/running/<id> holds it. */
export function shareOf(job: Job): string {
  return encodeShare({ cpuPercent: job.limits?.maxCpuPercent ?? 0, memoryMb: job.limits?.maxMemoryMb ?? 0 });
}

function encodeShare(share: Share): string {
  return JSON.stringify(share);
}

export class FleetQuotas {
  readonly #rateLease: SharedLease;
  #lingerLease: SharedLease | undefined;

  constructor(
    readonly client: Etcd3,
    readonly keys: FleetKeys,
    /** The rules now (a SIGHUP may have reloaded them). */
    readonly rules: () => QuotaRules,
    /** Output kept on this node by the CN's jobs. */
    readonly outputBytes: (cn: string) => number,
  ) {
    this.#rateLease = new SharedLease(client, RATE_LEASE_TTL_S, RATE_LEASE_USE_MS);
  }

  /**
   * Checks a start of job `id` (a UUIDv7: its creation time leads it) for
   * the caller against its rule and the fleet's use (QUOTA_EXCEEDED naming
   * the quota, the limit and the use), and returns what the start claim
   * must hold to and write. Only what the rule limits is read. Every start
   * counts its running share and touches the owner's version, so that
   * GetQuota on any node, and a rule added later, see the running use as it
   * is; creations are counted only under a rate rule (as on a single host,
   * a rule added later starts its window empty). Only a start that a
   * counted limit applies to waits on its owner's other starts (the version
   * condition): an unlimited owner's creates never contend.
   */
  async reserve(caller: QuotaCaller, id: string, job: JobShare, { now = Date.now(), counted = true } = {}): Promise<Reservation> {
    const rule = this.rules().ruleFor(caller);
    const { running, cpuPercent, memoryMb } = rule?.limits ?? {};
    // A job that waited had its creation counted as it was accepted (accept()).
    const rate = counted ? rule?.limits.rate : undefined;
    const limitsRunning = running !== undefined || cpuPercent !== undefined || memoryMb !== undefined;
    let version: string | undefined;
    if (rule && (limitsRunning || rate !== undefined)) {
      // The version first: a start claimed after this read changes it, whatever the reads below saw.
      version = await this.#version(caller.cn);
      const use = limitsRunning ? await this.#running(caller.cn) : undefined;
      const created = rate !== undefined ? await this.#created(caller.cn, now - rate.windowMs) : 0;
      await delayAt('quota-read');
      if (use) checkRunning(rule, caller.cn, use, job, ' in the fleet');
      checkRate(rule, caller.cn, created, ' in the fleet');
    }
    if (rule) checkOutput(rule, caller.cn, this.outputBytes(caller.cn));
    const lease = await this.#rateLease.id();
    return {
      condition: version === undefined ? undefined : [this.keys.quotaVersion(caller.cn), 'unchanged', version],
      writes: [
        this.client.put(this.keys.quotaVersion(caller.cn)).value(JSON.stringify({ role: caller.role })).lease(lease),
        this.client.put(this.keys.quotaRunning(caller.cn, id)).value(encodeShare({ cpuPercent: job.cpuPercent, memoryMb: job.memoryBytes / MIB })),
        ...(rate !== undefined ? [this.client.put(this.keys.quotaCreated(caller.cn, id)).value('').lease(lease)] : []),
      ],
    };
  }

  /**
   * A job that waits for others (waiting.ts), as it is accepted: refused
   * when it could never start under its owner's rule (its limits alone past
   * a cap, or running=0) or past the rule's rate in the fleet, whose
   * creations it counts from now; its running share counts from its start
   * (reserve, not counted again). What the acceptance must hold to and write.
   */
  async accept(caller: QuotaCaller, id: string, job: JobShare, now = Date.now()): Promise<Reservation> {
    const rule = this.rules().ruleFor(caller);
    if (!rule) return { writes: [] };
    checkRunning(rule, caller.cn, { running: 0, cpuPercent: 0, memoryMb: 0 }, job, ' in the fleet');
    const { rate } = rule.limits;
    if (rate === undefined) return { writes: [] };
    const version = await this.#version(caller.cn);
    checkRate(rule, caller.cn, await this.#created(caller.cn, now - rate.windowMs), ' in the fleet');
    const lease = await this.#rateLease.id();
    return {
      condition: [this.keys.quotaVersion(caller.cn), 'unchanged', version],
      writes: [
        this.client.put(this.keys.quotaVersion(caller.cn)).value(JSON.stringify({ role: caller.role })).lease(lease),
        this.client.put(this.keys.quotaCreated(caller.cn, id)).value('').lease(lease),
      ],
    };
  }

  /**
   * Whether the running quota of `caller` has room for `job` now, as the
   * fleet's use says (QUOTA_EXCEEDED when not): a keeper's look before it
   * hands a waiting job on. `uses` shares the reads of one pass, and counts
   * each job found room for, so that the next of the pass sees it. The
   * start checks again as it claims (reserve).
   */
  async checkRoom(caller: QuotaCaller, job: JobShare, uses: Map<string, Promise<RunningUse>>): Promise<void> {
    const rule = this.rules().ruleFor(caller);
    if (!rule) return;
    const use = uses.get(caller.cn) ?? this.#running(caller.cn);
    // Counted before the await: jobs of one owner judged at once see each other.
    const withJob = use.then((counted) => {
      checkRunning(rule, caller.cn, counted, job, ' in the fleet');
      return { running: counted.running + 1, cpuPercent: counted.cpuPercent + job.cpuPercent, memoryMb: counted.memoryMb + job.memoryBytes / MIB };
    });
    // Refused, the next sees the use as it was; a failed read fails the next too (handled here, awaited there).
    const next = withJob.catch(() => use);
    next.catch(() => undefined);
    uses.set(caller.cn, next);
    await withJob;
  }

  /** What `caller.cn` uses in the fleet now; `created` counts the window of the rule that applies to `caller` (0 without one). */
  async useOf(caller: QuotaCaller, now = Date.now()): Promise<QuotaUse> {
    const windowMs = this.rules().ruleFor(caller)?.limits.rate?.windowMs;
    return {
      ...(await this.#running(caller.cn)),
      outputBytes: this.outputBytes(caller.cn),
      created: windowMs === undefined ? 0 : await this.#created(caller.cn, now - windowMs),
    };
  }

  /** The role `cn` last started a job with anywhere in the fleet (within the rate lease's life); null: none known. */
  async roleOf(cn: string): Promise<string | null> {
    const value = await this.client.get(this.keys.quotaVersion(cn)).string();
    return value === null ? null : (JSON.parse(value) as { role: string | null }).role;
  }

  /**
   * A lease for the shares of jobs declared lost: they count until
   * `stopJobsAfterMs` has passed, by when a node that was cut off rather
   * than dead has stopped them itself (membership.ts).
   */
  lingerLease(stopJobsAfterMs: number): Promise<string> {
    this.#lingerLease ??= new SharedLease(this.client, Math.ceil(stopJobsAfterMs / 1000) + 1, LINGER_LEASE_USE_MS);
    return this.#lingerLease.id();
  }

  /** A claim failed: if etcd no longer has a lease held here (expired early, etcd restored), the next start takes a fresh one. */
  claimFailed(err: unknown): void {
    this.#rateLease.failed(err);
    this.#lingerLease?.failed(err);
  }

  /** quota/<cn>/version's mod revision ('0': absent). */
  async #version(cn: string): Promise<string> {
    const response = await this.client.get(this.keys.quotaVersion(cn)).exec();
    return response.kvs[0]?.mod_revision ?? '0';
  }

  async #running(cn: string): Promise<RunningUse> {
    const shares = await this.client.getAll().prefix(this.keys.quotaRunningOf(cn)).strings();
    const use: RunningUse = { running: 0, cpuPercent: 0, memoryMb: 0 };
    for (const value of Object.values(shares)) {
      const share = JSON.parse(value) as Share;
      use.running += 1;
      use.cpuPercent += share.cpuPercent;
      use.memoryMb += share.memoryMb;
    }
    return use;
  }

  /** Jobs of `cn` created since `since` (ms): their keys are their UUIDv7 ids, which begin with their creation time. */
  #created(cn: string, since: number): Promise<number> {
    const from = this.keys.quotaCreated(cn, uuidv7Floor(Math.max(0, since + 1)));
    return this.client.getAll().inRange({ start: from, end: prefixEnd(this.keys.quotaCreatedOf(cn)) }).count();
  }

}

/** The smallest UUIDv7 of millisecond `ms` (its 48-bit time, then zeros): ids at or after it were made at `ms` or later. */
function uuidv7Floor(ms: number): string {
  const hex = ms.toString(16).padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-0000-0000-000000000000`;
}

/** The key just past every key that begins with `prefix`. */
function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}
