// This node's place in the fleet: its registration, its lease and the
// heartbeat that keeps it. etcd tells a lost lease late (the etcd3 client
// only after twice the TTL), so the node keeps its own deadline — the start
// of its last answered keepalive plus 90% of the TTL — and past it acts as a
// lost node would be treated: it takes no new jobs (fenced), and after
// --stop-jobs-after it stops its running ones, which the fleet has ended as
// lost by then. When etcd answers again it registers afresh.
import { randomUUID } from 'node:crypto';
import { EtcdLeaseInvalidError, type Etcd3, type Lease } from 'etcd3';
import type { Logger } from 'pino';
import { messageOf } from '../common/error-message.js';
import type { FleetConfig } from './config.js';
import { CALL_TIMEOUT_MS } from './etcd.js';
import type { FleetKeys } from './keys.js';
import type { NodeAlive, NodeInfo } from './nodes.js';

export interface MembershipHooks {
  /** What the heartbeat says of the running jobs. */
  stats(): Omit<NodeAlive, 'heartbeatAt' | 'boot'>;
  /** The lease has been fenced this long: stop every running job. */
  stopJobs(): void;
  /** Registered again after the lease was lost: reconcile the jobs others may have ended. */
  rejoined(): Promise<void>;
  /** Once per heartbeat, after it: the fleet-wide work every node shares (declaring lost nodes). */
  tick(): Promise<void>;
}

export class Membership {
  readonly boot = randomUUID();
  #info: NodeInfo | undefined;
  #lease: Lease | undefined;
  /** Past this (performance.now(): clock steps do not move it) the lease may be gone: fenced. */
  #deadline = 0;
  #fencedSince: number | null = null;
  #jobsStopped = false;
  #leaving = false;
  #timer: NodeJS.Timeout | undefined;
  #beating: Promise<void> | undefined;
  #ticking: Promise<void> | undefined;
  #closed = false;

  constructor(
    readonly client: Etcd3,
    readonly keys: FleetKeys,
    readonly config: FleetConfig,
    readonly hooks: MembershipHooks,
    readonly logger: Logger,
  ) {}

  get ttlSeconds(): number {
    return Math.max(1, Math.ceil(this.config.nodeLostAfterMs / 1000));
  }

  /** Taking no new jobs: the lease may have expired (or this node is registering again). */
  get fenced(): boolean {
    return performance.now() > this.#deadline;
  }

  /** Registers under `address` and starts the heartbeat. */
  async join(address: string): Promise<void> {
    const { config } = this;
    this.#info = { name: config.nodeName, address, labels: config.labels, cpuPercent: config.capacity.cpuPercent, memoryMb: config.capacity.memoryMb, version: config.version, boot: this.boot };
    this.#extend(await this.#register());
    this.#schedule();
  }

  /** Registers with a new lease; returns when the lease was asked for, from which its deadline counts. */
  async #register(): Promise<number> {
    const sent = performance.now();
    const lease = this.client.lease(this.ttlSeconds, { autoKeepAlive: false });
    // A lease the client thinks lost is this node's business alone (heartbeat below).
    lease.on('lost', () => undefined);
    await lease.grant();
    await this.client.put(this.keys.nodeInfo(this.config.nodeName)).value(JSON.stringify(this.#info)).exec();
    await lease.put(this.keys.nodeAlive(this.config.nodeName)).value(JSON.stringify(this.#alive())).exec();
    const old = this.#lease;
    this.#lease = lease;
    old?.release();
    return sent;
  }

  /** 90% of the TTL from `sent`: etcd counts from when it got the request, a little later. */
  #extend(sent: number): void {
    this.#deadline = sent + this.ttlSeconds * 900;
  }

  #alive(): NodeAlive {
    return { ...this.hooks.stats(), heartbeatAt: Date.now(), boot: this.boot, leaving: this.#leaving };
  }

  /** Shutting down: placement passes this node by from the next heartbeat on (written now too, if etcd answers). */
  async markLeaving(): Promise<void> {
    this.#leaving = true;
    if (!this.#lease || this.fenced) return;
    await this.#lease.put(this.keys.nodeAlive(this.config.nodeName)).value(JSON.stringify(this.#alive())).exec().catch(() => undefined);
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#beating = this.#beat().finally(() => this.#schedule());
    }, this.config.heartbeatMs);
  }

  async #beat(): Promise<void> {
    const sent = performance.now();
    try {
      const answer = await this.#lease!.keepaliveOnce({ deadline: Date.now() + Math.max(CALL_TIMEOUT_MS, this.config.heartbeatMs) });
      if (Number(answer.TTL) > 0) this.#extend(sent);
      await this.#lease!.put(this.keys.nodeAlive(this.config.nodeName)).value(JSON.stringify(this.#alive())).exec();
    } catch (err) {
      if (err instanceof EtcdLeaseInvalidError) {
        this.logger.error({ node: this.config.nodeName }, 'this node lost its etcd lease: registering again');
        try {
          const registered = await this.#register();
          // Still fenced until the jobs the fleet ended meanwhile are stopped here.
          await this.hooks.rejoined();
          this.#extend(registered);
        } catch (again) {
          this.logger.warn({ err: messageOf(again) }, 'could not register again in etcd');
        }
      } else if (!this.fenced) {
        this.logger.warn({ err: messageOf(err) }, 'heartbeat to etcd failed');
      }
    }
    this.#checkFence();
    // The upkeep runs beside the heartbeat, one at a time: however long it
    // takes (a lost node with many jobs), the next keepalive is on time.
    if (!this.fenced && !this.#ticking) {
      this.#ticking = this.hooks
        .tick()
        .catch((err: unknown) => this.logger.warn({ err: messageOf(err) }, 'fleet upkeep failed'))
        .finally(() => (this.#ticking = undefined));
    }
  }

  #checkFence(): void {
    const now = performance.now();
    if (!this.fenced) {
      if (this.#fencedSince !== null) this.logger.info({ node: this.config.nodeName }, 'etcd answers again: taking jobs');
      this.#fencedSince = null;
      this.#jobsStopped = false;
      return;
    }
    if (this.#fencedSince === null) {
      this.#fencedSince = now;
      this.logger.error({ node: this.config.nodeName, stopJobsAfterMs: this.config.stopJobsAfterMs }, 'no answer from etcd within the lease: taking no new jobs');
    }
    if (!this.#jobsStopped && now - this.#fencedSince >= this.config.stopJobsAfterMs) {
      this.#jobsStopped = true;
      this.logger.error({ node: this.config.nodeName }, 'cut off from etcd past --stop-jobs-after: stopping every job of this node');
      this.hooks.stopJobs();
    }
  }

  /**
   * Stops the heartbeat and leaves the fleet. With `keepRegistration` (the
   * fleet still lists jobs of this node as running: their ends could not be
   * written), the node stays listed, to be found lost and its jobs ended.
   */
  async leave(keepRegistration: boolean): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#beating;
    await this.#ticking;
    await this.#lease?.revoke().catch(() => undefined);
    if (keepRegistration) return;
    await this.client.delete().prefix(this.keys.nodePrefix(this.config.nodeName)).exec().catch((err: unknown) => {
      this.logger.warn({ err: messageOf(err) }, 'could not remove this node from etcd');
    });
  }
}
