// RPC fairness (--quota-file calls= and rps=): how many calls a caller may
// have in flight at once, and begin per second, by the rule that applies to
// it (policy/quotas.ts). Past either, a call is refused at once with
// QUOTA_EXCEEDED, never queued: one caller flooding the server then costs
// the others only the refusals, not a queue to wait behind.
import { Errors } from '../errors.js';
import { QuotaRules, type QuotaCaller } from '../policy/quotas.js';

interface Bucket {
  /** Calls it may begin now; refilled at `rps` per second, up to `rps` (a second's burst). */
  tokens: number;
  rps: number;
  at: number;
}

/** Every this many calls, buckets full again (their callers quiet for a second) are dropped: one per CN ever seen would only grow. */
const SWEEP_EVERY = 1024;

export class CallQuota {
  #rules: QuotaRules = QuotaRules.NONE;
  readonly #inFlight = new Map<string, number>();
  readonly #buckets = new Map<string, Bucket>();
  #calls = 0;

  get rules(): QuotaRules {
    return this.#rules;
  }

  /** A reload's rules: every bucket starts full again. */
  set rules(rules: QuotaRules) {
    this.#rules = rules;
    this.#buckets.clear();
  }

  /** Calls of `cn` in flight now. */
  inFlight(cn: string): number {
    return this.#inFlight.get(cn) ?? 0;
  }

  /**
   * Admits a call of the caller (QUOTA_EXCEEDED past its rule); returns
   * what to call once the call has ended. A stream is in flight as long as
   * it is open.
   */
  enter(caller: QuotaCaller, now = performance.now()): () => void {
    if (++this.#calls % SWEEP_EVERY === 0) this.#sweep(now);
    const rule = this.#rules.ruleFor(caller);
    const { calls, rps } = rule?.limits ?? {};
    const open = this.#inFlight.get(caller.cn) ?? 0;
    if (calls !== undefined && open >= calls) {
      throw Errors.quotaExceeded(`quota exceeded: calls in flight: limit ${calls}, cn=${caller.cn} has ${open} open (rule ${rule!.subject} at ${rule!.where})`);
    }
    if (rps !== undefined) {
      let bucket = this.#buckets.get(caller.cn);
      if (!bucket || bucket.rps !== rps) {
        bucket = { tokens: rps, rps, at: now };
        this.#buckets.set(caller.cn, bucket);
      }
      refill(bucket, now);
      if (bucket.tokens < 1) {
        throw Errors.quotaExceeded(`quota exceeded: calls per second: limit ${rps}, cn=${caller.cn} is past it (rule ${rule!.subject} at ${rule!.where})`);
      }
      bucket.tokens -= 1;
    }
    this.#inFlight.set(caller.cn, open + 1);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const still = (this.#inFlight.get(caller.cn) ?? 1) - 1;
      if (still === 0) this.#inFlight.delete(caller.cn);
      else this.#inFlight.set(caller.cn, still);
    };
  }

  /** A bucket full again is what a new one would be: it goes. */
  #sweep(now: number): void {
    for (const [cn, bucket] of this.#buckets) {
      refill(bucket, now);
      if (bucket.tokens >= bucket.rps) this.#buckets.delete(cn);
    }
  }
}

function refill(bucket: Bucket, now: number): void {
  bucket.tokens = Math.min(bucket.rps, bucket.tokens + ((now - bucket.at) / 1000) * bucket.rps);
  bucket.at = now;
}
