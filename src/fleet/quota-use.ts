// Quotas counted across the fleet (--quota-file on every node; the rules are
// each node's own file, the use is the fleet's). Use lives in etcd beside
// the job records (keys.ts, quota/<cn>/): a job's share is written in the
// transaction that claims its start and removed in the one that claims its
// end, so it counts exactly while the fleet has the job unended, whichever
// node ran or declared it. A start reads its owner's use, checks it here,
// and makes its claim only if no other start of that owner was claimed since
// the read (quota/<cn>/version unchanged): two nodes admitting at the edge
// at once cannot both pass, so use never overshoots a quota, not even for
// a moment. Output kept is the node's own (output lives where the job ran),
// and calls=/rps= are each node's (they guard that node's RPC threads).
import type { Etcd3, Lease } from 'etcd3';
import type { QuotaUse } from '../supervisor/jobs/quota-ledger.js';
import { checkOutput, checkRate, checkRunning, type JobShare, type RunningUse } from '../supervisor/policy/quota-checks.js';
import type { QuotaCaller, QuotaRules } from '../supervisor/policy/quotas.js';
import { delayAt } from './faults.js';
import type { FleetKeys } from './keys.js';
import type { Condition, Writes } from './records.js';

const MIB = 1024 * 1024;
/**
 * Creation keys (for rate=) ride on a lease that ends by itself: taken for
 * RATE_LEASE_USE_MS and lasting RATE_LEASE_TTL_S, each key outlives the
 * longest window (an hour) and none is left behind, even by a node that
 * never comes back.
 */
const RATE_LEASE_TTL_S = 2 * 60 * 60;
const RATE_LEASE_USE_MS = 30 * 60 * 1000;
/** The longest rate window the quota file can name. */
const LONGEST_WINDOW_MS = 60 * 60 * 1000;

/** What a start must find unchanged (none when no counted limit applies) and write along with its claim. */
export interface Reservation {
  condition?: Condition;
  writes: Writes;
}

/** An owner's use in the fleet, as read at one revision. */
interface FleetUse extends RunningUse {
  /** Creation times (ms) of its jobs within the longest window. */
  created: number[];
  /** The role its newest start was made with; null: none recorded. */
  role: string | null;
  /** quota/<cn>/version's mod revision ('0': absent). */
  version: string;
}

interface Share {
  cpuPercent: number;
  memoryMb: number;
}

export class FleetQuotas {
  #lease: { id: Promise<string>; until: number } | undefined;

  constructor(
    readonly client: Etcd3,
    readonly keys: FleetKeys,
    /** The rules now (a SIGHUP may have reloaded them). */
    readonly rules: () => QuotaRules,
    /** Output kept on this node by the CN's jobs. */
    readonly outputBytes: (cn: string) => number,
  ) {}

  /**
   * Checks a start of job `id` for the caller against its rule and the
   * fleet's use (QUOTA_EXCEEDED naming the quota, the limit and the use),
   * and returns what the start claim must hold to. Whether or not a rule
   * applies, every start is counted, so that a rule added later, and
   * GetQuota on any node, see the use as it is; but only a start that a
   * counted limit applies to waits on its owner's other starts (the
   * version condition): an unlimited owner's creates never contend.
   */
  async reserve(caller: QuotaCaller, id: string, job: JobShare, now = Date.now()): Promise<Reservation> {
    const use = await this.#read(caller.cn);
    await delayAt('quota-read');
    const rule = this.rules().ruleFor(caller);
    const { running, cpuPercent, memoryMb, rate } = rule?.limits ?? {};
    const counted = running !== undefined || cpuPercent !== undefined || memoryMb !== undefined || rate !== undefined;
    if (rule) {
      checkRunning(rule, caller.cn, use, job, ' in the fleet');
      checkOutput(rule, caller.cn, this.outputBytes(caller.cn));
      const windowMs = rule.limits.rate?.windowMs;
      if (windowMs !== undefined) checkRate(rule, caller.cn, use.created.filter((at) => at > now - windowMs).length, ' in the fleet');
    }
    const lease = await this.#rateLease(now);
    const share: Share = { cpuPercent: job.cpuPercent, memoryMb: job.memoryBytes / MIB };
    return {
      condition: counted ? [this.keys.quotaVersion(caller.cn), 'unchanged', use.version] : undefined,
      writes: [
        this.client.put(this.keys.quotaVersion(caller.cn)).value(JSON.stringify({ role: caller.role })).lease(lease),
        this.client.put(this.keys.quotaRunning(caller.cn, id)).value(JSON.stringify(share)),
        this.client.put(this.keys.quotaCreated(caller.cn, id)).value(String(now)).lease(lease),
      ],
    };
  }

  /** What `caller.cn` uses in the fleet now; `created` counts the window of the rule that applies to `caller`. */
  async useOf(caller: QuotaCaller, now = Date.now()): Promise<QuotaUse> {
    const use = await this.#read(caller.cn);
    const windowMs = this.rules().ruleFor(caller)?.limits.rate?.windowMs;
    return {
      running: use.running,
      cpuPercent: use.cpuPercent,
      memoryMb: use.memoryMb,
      outputBytes: this.outputBytes(caller.cn),
      created: windowMs === undefined ? 0 : use.created.filter((at) => at > now - windowMs).length,
    };
  }

  /** The role `cn` last started a job with anywhere in the fleet (within the rate lease's life); null: none known. */
  async roleOf(cn: string): Promise<string | null> {
    return (await this.#read(cn)).role;
  }

  /** One read of quota/<cn>/: every key at one revision. */
  async #read(cn: string): Promise<FleetUse> {
    const prefix = this.keys.quota(cn);
    const response = await this.client.getAll().prefix(prefix).exec();
    const use: FleetUse = { running: 0, cpuPercent: 0, memoryMb: 0, created: [], role: null, version: '0' };
    const since = Date.now() - LONGEST_WINDOW_MS;
    for (const kv of response.kvs) {
      const key = kv.key.toString().slice(prefix.length);
      if (key === 'version') {
        use.version = kv.mod_revision;
        use.role = (JSON.parse(kv.value.toString()) as { role: string | null }).role;
      } else if (key.startsWith('running/')) {
        const share = JSON.parse(kv.value.toString()) as Share;
        use.running += 1;
        use.cpuPercent += share.cpuPercent;
        use.memoryMb += share.memoryMb;
      } else if (key.startsWith('created/')) {
        const at = Number(kv.value.toString());
        if (at > since) use.created.push(at);
      }
    }
    return use;
  }

  /** The lease creation keys go on: a fresh one every RATE_LEASE_USE_MS (none is kept alive). */
  #rateLease(now: number): Promise<string> {
    if (this.#lease && now < this.#lease.until) return this.#lease.id;
    const lease: Lease = this.client.lease(RATE_LEASE_TTL_S, { autoKeepAlive: false });
    // Not kept alive: its end is the point, not news.
    lease.on('lost', () => undefined);
    const id = lease.grant();
    const held = { id, until: now + RATE_LEASE_USE_MS };
    this.#lease = held;
    // A grant that failed is asked for again at the next start.
    id.catch(() => {
      if (this.#lease === held) this.#lease = undefined;
    });
    return id;
  }
}
