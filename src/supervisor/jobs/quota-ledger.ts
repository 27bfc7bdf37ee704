// What each caller uses against its quota (policy/quotas.ts), counted by
// the CN that owns the jobs: jobs running or starting, their --max-cpu and
// --max-memory, jobs created in the rule's window, output kept. A CreateJob
// is admitted, and its share reserved, in one synchronous step before its
// start begins: concurrent creates at the edge can never all pass the check
// (the event loop runs one at a time), so use never overshoots a quota, not
// even for a moment. What a rule says of the use is policy/quota-checks.ts.
import { checkOutput, checkRate, checkRunning } from '../policy/quota-checks.js';
import type { QuotaCaller, QuotaRule, QuotaRules } from '../policy/quotas.js';
import type { JobLimits } from '../../workers/protocol.js';
import type { JobRecord } from './record.js';
import type { JobStore } from './store.js';

const MIB = 1024 * 1024;

/** A job admitted against its owner's quota: say how its start went. */
export interface Admission {
  /** The job runs: its share is counted with it until it ends. */
  started(record: JobRecord): void;
  /** It did not start: its share, and its creation, are given back. */
  failed(): void;
}

/** Use of one owner at a moment, as `jobctl quota` would show it. */
export interface QuotaUse {
  running: number;
  cpuPercent: number;
  memoryMb: number;
  outputBytes: number;
  /** Jobs created in the rule's rate window (0 without a rate limit). */
  created: number;
}

interface Share {
  cpuPercent: number;
  memoryBytes: number;
}

interface OwnerUse {
  /** Its jobs that run (an ended one is left out the moment its state says so, and dropped at its end). */
  readonly jobs: Set<JobRecord>;
  /** Shares of its jobs whose start is in flight. */
  readonly starting: Set<Share>;
  /** When its jobs were admitted, oldest first: kept only while a rate rule applies to it, and only its window. */
  created: number[];
}

export class QuotaLedger {
  #rules: QuotaRules;
  readonly #store: JobStore;
  readonly #owners = new Map<string, OwnerUse>();
  /** The role each CN's certificate had at its last create: a role's rule applies to it when asked about later. */
  readonly #roles = new Map<string, string | null>();

  constructor(store: JobStore, rules: QuotaRules) {
    this.#store = store;
    this.#rules = rules;
  }

  /** A reload's new rules: use counted so far stays, and counts against them from the next create. */
  set rules(rules: QuotaRules) {
    this.#rules = rules;
  }

  get rules(): QuotaRules {
    return this.#rules;
  }

  /**
   * Admits a job of `limits` for the caller, or throws QUOTA_EXCEEDED
   * naming the quota, its limit and the use: nothing is reserved then.
   */
  admit(caller: QuotaCaller, limits: JobLimits, { now = Date.now(), counted = true } = {}): Admission {
    const owner = this.#ownerUse(caller.cn);
    this.#roles.set(caller.cn, caller.role);
    const rule = this.#rules.ruleFor(caller);
    try {
      if (rule) this.#check(rule, caller.cn, owner, limits, now, counted);
    } catch (err) {
      // A CN refused before it ever ran anything leaves no entry behind.
      this.#forgetIfIdle(caller.cn, owner);
      throw err;
    }
    const share: Share = { cpuPercent: limits.cpuPercent, memoryBytes: limits.memoryBytes };
    owner.starting.add(share);
    const rated = counted && rule?.limits.rate !== undefined;
    if (rated) owner.created.push(now);
    let settled = false;
    return {
      started: (record) => {
        if (settled) return;
        settled = true;
        owner.starting.delete(share);
        if (record.state !== 'RUNNING') return this.#forgetIfIdle(caller.cn, owner);
        owner.jobs.add(record);
        const ended = (): void => {
          owner.jobs.delete(record);
          this.#forgetIfIdle(caller.cn, owner);
        };
        record.ended.then(ended, ended);
      },
      failed: () => {
        if (settled) return;
        settled = true;
        owner.starting.delete(share);
        if (rated) {
          const at = owner.created.lastIndexOf(now);
          if (at >= 0) owner.created.splice(at, 1);
        }
        this.#forgetIfIdle(caller.cn, owner);
      },
    };
  }

  /**
   * A job that waits (waiting-jobs.ts), as it is accepted: refused when it
   * could never start under its owner's rule (its limits alone past a cap,
   * or running=0) and counted against the rule's rate, which counts jobs as
   * they are created. The rest is checked at its start (admit, not counted).
   */
  accept(caller: QuotaCaller, limits: JobLimits, now = Date.now()): void {
    const rule = this.#rules.ruleFor(caller);
    if (!rule) return;
    this.#roles.set(caller.cn, caller.role);
    checkRunning(rule, caller.cn, this.#running(idleOwner()), limits);
    if (rule.limits.rate === undefined) return;
    const owner = this.#ownerUse(caller.cn);
    try {
      this.#checkRate(rule, caller.cn, owner, now);
    } catch (err) {
      this.#forgetIfIdle(caller.cn, owner);
      throw err;
    }
    owner.created.push(now);
  }

  /** The role `cn` last created a job with; null: none seen (its role's rule cannot be told). */
  roleOf(cn: string): string | null {
    return this.#roles.get(cn) ?? null;
  }

  /** What `cn` uses now; `created` counts the window of the rule that applies to `caller`. */
  useOf(caller: QuotaCaller, now = Date.now()): QuotaUse {
    const owner = this.#ownerUse(caller.cn, false);
    const windowMs = this.#rules.ruleFor(caller)?.limits.rate?.windowMs;
    return {
      ...this.#running(owner),
      outputBytes: this.outputOf(caller.cn),
      created: windowMs === undefined ? 0 : owner.created.filter((at) => at > now - windowMs).length,
    };
  }

  #check(rule: QuotaRule, cn: string, owner: OwnerUse, limits: JobLimits, now: number, counted = true): void {
    checkRunning(rule, cn, this.#running(owner), limits);
    checkOutput(rule, cn, this.outputOf(cn));
    if (counted) this.#checkRate(rule, cn, owner, now);
  }

  #checkRate(rule: QuotaRule, cn: string, owner: OwnerUse, now: number): void {
    const { rate } = rule.limits;
    if (rate === undefined) return;
    // Only the window is kept: older creations can never count again.
    const since = now - rate.windowMs;
    const first = owner.created.findIndex((at) => at > since);
    owner.created = first < 0 ? [] : owner.created.slice(first);
    checkRate(rule, cn, owner.created.length);
  }

  /**
   * An owner with nothing running, starting or in a rate window is what a
   * new entry would be: it goes (one per CN ever seen would only grow). No
   * admission in flight holds it: its start would be in `starting`.
   */
  #forgetIfIdle(cn: string, owner: OwnerUse): void {
    if (owner.jobs.size === 0 && owner.starting.size === 0 && owner.created.length === 0 && this.#owners.get(cn) === owner) this.#owners.delete(cn);
  }

  /** Without creating an entry for a CN never seen (asking about one must not grow the ledger). */
  #ownerUse(cn: string, keep = true): OwnerUse {
    let owner = this.#owners.get(cn);
    if (!owner && !keep) return idleOwner();
    if (!owner) {
      owner = idleOwner();
      this.#owners.set(cn, owner);
    }
    return owner;
  }

  #running(owner: OwnerUse): Pick<QuotaUse, 'running' | 'cpuPercent' | 'memoryMb'> {
    let running = owner.starting.size;
    let cpuPercent = 0;
    let memoryBytes = 0;
    for (const share of owner.starting) {
      cpuPercent += share.cpuPercent;
      memoryBytes += share.memoryBytes;
    }
    for (const job of owner.jobs) {
      // Ended, its end not yet past the promise that drops it: it runs no more.
      if (job.state !== 'RUNNING') continue;
      running += 1;
      cpuPercent += job.limits.cpuPercent;
      memoryBytes += job.limits.memoryBytes;
    }
    return { running, cpuPercent, memoryMb: memoryBytes / MIB };
  }

  /** Output kept on this host of every job `cn` owns, running or ended. */
  outputOf(cn: string): number {
    let bytes = 0;
    for (const job of this.#store.values()) if (job.owner === cn) bytes += job.log.length - job.log.start;
    return bytes;
  }
}

/** An owner with nothing running, starting or created: a CN not seen, or a job checked alone. */
function idleOwner(): OwnerUse {
  return { jobs: new Set(), starting: new Set(), created: [] };
}
