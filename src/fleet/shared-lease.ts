// A lease that keys written over a while share, so that etcd removes them by
// itself: none is kept alive, its end is the point. One lease serves the
// writes of `useMs`, then the next write takes a fresh one: a key lives
// between ttl - useMs and ttl, and no node needs to come back to remove it.
// Timed by the monotonic clock: a clock step must not keep a lease that has
// expired.
import { EtcdLeaseInvalidError, type Etcd3, type Lease } from 'etcd3';

export class SharedLease {
  #held: { id: Promise<string>; until: number } | undefined;

  constructor(
    readonly client: Etcd3,
    readonly ttlS: number,
    readonly useMs: number,
  ) {}

  /** The lease to write with now. */
  id(): Promise<string> {
    const now = performance.now();
    if (this.#held && now < this.#held.until) return this.#held.id;
    const lease: Lease = this.client.lease(this.ttlS, { autoKeepAlive: false });
    lease.on('lost', () => undefined);
    const held = { id: lease.grant(), until: now + this.useMs };
    this.#held = held;
    // A grant that failed is asked for again next time.
    held.id.catch(() => {
      if (this.#held === held) this.#held = undefined;
    });
    return held.id;
  }

  /** A write failed: if etcd no longer has the lease (expired early, etcd restored), the next write takes a fresh one. */
  failed(err: unknown): void {
    if (err instanceof EtcdLeaseInvalidError) this.#held = undefined;
  }
}
