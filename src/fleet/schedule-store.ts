// A fleet's schedules, in etcd (keys.ts): one key per schedule holding the
// schedule, its last firings and the newest job a firing made, so that every
// change to a schedule — a slot claimed, a firing recorded, a pause — is one
// compare-and-swap on that key's mod revision. Every node arms the timers
// (supervisor/schedules/scheduler.ts); at a slot each one tries to claim it,
// and only the first swap finds the slot still to come: a slot fires once for
// the whole fleet, and a pause or delete a node has not seen yet wins over
// its claim. The etcd3 client retries a transaction whose answer was lost,
// which then reads as lost: a claim carries an attempt id, looked for on the
// re-read, as the job claims in records.ts do.
import { randomUUID } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { CreateJobReq } from '../gen/jobworker/v1/jobworker.js';
import { messageOf } from '../common/error-message.js';
import { Errors, JobworkerError } from '../supervisor/errors.js';
import { FIRINGS_KEPT, type ClaimGuard, type ScheduleStore, type StoredFiring, type StoredSchedule } from '../supervisor/schedules/schedule-book.js';
import { MAX_SCHEDULES } from '../supervisor/schedules/scheduler.js';
import { crashAt } from './faults.js';
import type { FleetKeys } from './keys.js';

/** Swaps of one schedule tried before giving up (every node's claim of a slot is one; they settle in a few). */
const SWAP_TRIES = 50;
/** etcd errors (not a lost compare) a swap gets before it gives up with the last one. */
const SWAP_ERRORS = 3;

interface FiringJson {
  slot: number;
  firedAt: number;
  outcome: StoredFiring['outcome'];
  jobId: string | null;
  reason: string;
  manual: boolean;
  node?: string;
  /** The claim's own id: a claim whose answer was lost finds itself by it. */
  attempt?: string;
  /** The claim's place in the schedule's order of claims (the swaps are totally ordered; the nodes' clocks are not). */
  seq?: number;
}

interface ScheduleJson {
  id: string;
  name: string | null;
  cron: string;
  timezone: string;
  /** CreateJobReq, protobuf, base64. */
  job: string;
  concurrency: StoredSchedule['concurrency'];
  catchUp: StoredSchedule['catchUp'];
  catchUpWindowMs: number;
  paused: boolean;
  owner: string;
  createdAt: number;
  lastSlot: number;
  /** Newest first, at most FIRINGS_KEPT. */
  firings: FiringJson[];
  /** The newest job a firing made: for forbid and replace, the only one that can still run. */
  lastJobId: string | null;
  /** The seq of the firing that made it: a late record of an earlier firing does not take its place. */
  lastJobSeq?: number;
  /** The last seq given to a claim. */
  seq?: number;
}

export class EtcdScheduleStore implements ScheduleStore {
  /** The schedules as last read, and what they were read after: how many, and the newest change. */
  #cache: { count: number; newest: string; schedules: StoredSchedule[] } | undefined;

  constructor(
    readonly client: Etcd3,
    readonly keys: FleetKeys,
  ) {}

  /**
   * Every node reads this every heartbeat: unless a schedule was created,
   * changed (a claim, a record, a pause) or deleted since the last read —
   * any put makes its key the newest under schedules/, any delete lowers
   * the count — two small reads answer, not the whole of every schedule.
   */
  async all(): Promise<StoredSchedule[]> {
    const prefix = this.keys.schedules();
    // One range, one revision: how many there are (etcd counts the whole range) and the newest change.
    const newest = await this.client.getAll().prefix(prefix).sort('Mod', 'Descend').limit(1).exec();
    const signature = { count: Number(newest.count), newest: newest.kvs[0]?.mod_revision ?? '0' };
    if (this.#cache && this.#cache.count === signature.count && this.#cache.newest === signature.newest) return this.#cache.schedules;
    const response = await this.client.getAll().prefix(prefix).exec();
    const schedules = response.kvs
      .map((kv) => {
        const value = JSON.parse(kv.value.toString()) as ScheduleJson;
        return { ...toStored(value), halfDone: value.firings.some((firing) => firing.outcome === 'STARTING') };
      })
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : 1));
    // Keyed by what this read itself saw: a change after it, whatever it is, changes the signature.
    let top = 0n;
    for (const kv of response.kvs) if (BigInt(kv.mod_revision) > top) top = BigInt(kv.mod_revision);
    this.#cache = { count: response.kvs.length, newest: response.kvs.length === 0 ? '0' : top.toString(), schedules };
    return schedules;
  }

  /**
   * A new schedule, its name taken fleet-wide and the count checked in the
   * same transaction (schedule-count changes with every create: two creates
   * that read the same count cannot both pass MAX_SCHEDULES).
   */
  async create(schedule: StoredSchedule): Promise<void> {
    const value: ScheduleJson = { ...toJson(schedule), firings: [], lastJobId: null };
    let errors = 0;
    for (let tries = 0; tries < SWAP_TRIES; tries++) {
      const counted = (await this.client.get(this.keys.scheduleCount()).exec()).kvs[0]?.mod_revision ?? '0';
      const count = await this.client.getAll().prefix(this.keys.schedules()).count();
      if (count >= MAX_SCHEDULES) throw Errors.tooManySchedules(MAX_SCHEDULES);
      let txn = this.client.if(this.keys.scheduleCount(), 'Mod', '==', counted);
      if (schedule.name !== null) txn = txn.and(this.keys.scheduleName(schedule.name), 'Create', '==', 0);
      const writes = [this.client.put(this.keys.schedule(schedule.id)).value(JSON.stringify(value)), this.client.put(this.keys.scheduleCount()).value('')];
      if (schedule.name !== null) writes.push(this.client.put(this.keys.scheduleName(schedule.name)).value(schedule.id));
      let failure: unknown;
      const result = await txn
        .then(...writes)
        .commit()
        .catch((err: unknown) => {
          failure = err;
          return undefined;
        });
      if (result?.succeeded) return;
      // Lost to another create, or this one's answer was lost: the keys say which.
      let exists: boolean;
      try {
        exists = (await this.client.get(this.keys.schedule(schedule.id)).exec()).kvs.length > 0;
      } catch (err) {
        throw new JobworkerError('FLEET_UNAVAILABLE', `etcd did not answer; schedule ${schedule.id} may have been created: look for it (${messageOf(failure ?? err)})`);
      }
      if (exists) return;
      // Not there: a commit that failed outright is tried again (the same id; the count compare and this check settle it).
      if (failure !== undefined) {
        if (++errors >= SWAP_ERRORS) throw new JobworkerError('FLEET_UNAVAILABLE', `etcd did not answer; schedule ${schedule.id} may have been created: look for it (${messageOf(failure)})`);
        continue;
      }
      if (schedule.name !== null) {
        const holder = await this.client.get(this.keys.scheduleName(schedule.name)).string();
        if (holder !== null) {
          // A name left by a delete cut short (its schedule gone) is freed; any other is taken.
          if ((await this.client.get(this.keys.schedule(holder)).exec()).kvs.length > 0) throw Errors.scheduleNameTaken(schedule.name, holder);
          await this.client.if(this.keys.scheduleName(schedule.name), 'Value', '==', holder).then(this.client.delete().key(this.keys.scheduleName(schedule.name))).commit();
        }
      }
    }
    throw new Error(`other creates kept changing the fleet's schedules for ${SWAP_TRIES} tries`);
  }

  async setPaused(schedule: StoredSchedule): Promise<void> {
    const done = await this.#swap(schedule.id, (value) => ({ ...value, paused: schedule.paused, lastSlot: Math.max(value.lastSlot, schedule.lastSlot.getTime()) }));
    if (done === 'missing') throw Errors.scheduleNotFound(schedule.id);
  }

  /** The schedule and its name go in one transaction (a name another schedule took since is left). */
  async delete(id: string): Promise<void> {
    const read = await this.#read(id);
    if (!read) return;
    const { name } = read.value;
    const key = this.keys.schedule(id);
    if (name !== null) {
      const both = await this.client
        .if(key, 'Mod', '==', read.revision)
        .and(this.keys.scheduleName(name), 'Value', '==', id)
        .then(this.client.delete().key(key), this.client.delete().key(this.keys.scheduleName(name)))
        .commit();
      if (both.succeeded) return;
    }
    await this.client.delete().key(key).exec();
  }

  /**
   * Won only by the first claim of a slot; never while the fleet has the
   * schedule paused (a slot's STARTING claim) or deleted. With a guard, not
   * while another firing of the schedule is STARTING (its job is about to
   * run) or its newest job is not the one the policy looked at.
   */
  async claim(firing: StoredFiring, guard?: ClaimGuard): Promise<boolean | { retry: string; busy: boolean }> {
    const attempt = randomUUID();
    const slot = firing.slot.getTime();
    let outcome: boolean | { retry: string; busy: boolean } = false;
    const done = await this.#swap(firing.scheduleId, (value) => {
      // Decided afresh at every read: a swap that lost to another claim comes back here.
      outcome = false;
      if (value.firings.some((kept) => kept.attempt === attempt)) {
        // This claim's own write, its answer lost.
        outcome = true;
        return null;
      }
      if (!firing.manual && (value.lastSlot >= slot || (value.paused && firing.outcome === 'STARTING'))) return null;
      if (guard) {
        const starting = value.firings.find((kept) => kept.outcome === 'STARTING');
        if (starting) {
          outcome = { retry: `another firing of the schedule${starting.node === undefined ? '' : `, on node ${starting.node},`} is starting its job`, busy: true };
          return null;
        }
        if (value.lastJobId !== guard.newestJob) {
          outcome = { retry: `the schedule's newest job changed to ${value.lastJobId} while its policy was applied`, busy: false };
          return null;
        }
      }
      outcome = true;
      const seq = (value.seq ?? 0) + 1;
      return withFiring({ ...value, seq, lastSlot: firing.manual ? value.lastSlot : slot }, { ...toFiringJson(firing), attempt, seq });
    });
    if (done === 'missing') return false;
    // Set in the swap's callback, which TypeScript does not follow.
    const claimed = outcome as boolean | { retry: string; busy: boolean };
    if (claimed === true && firing.outcome === 'STARTING') crashAt('schedule-after-claim');
    return claimed;
  }

  /** How a firing went, over its claim; the job it made becomes the schedule's newest, unless a later firing's already is. */
  async record(firing: StoredFiring, { ifStarting = false } = {}): Promise<void> {
    await this.#swap(firing.scheduleId, (value) => {
      const kept = value.firings.find((old) => old.slot === firing.slot.getTime() && old.manual === firing.manual);
      if (ifStarting && kept?.outcome !== 'STARTING') return null;
      const seq = kept?.seq ?? 0;
      const next = withFiring(value, { ...toFiringJson(firing), attempt: kept?.attempt, seq: kept?.seq });
      const newest = firing.outcome === 'STARTED' && firing.jobId !== null && seq >= (value.lastJobSeq ?? 0);
      return newest ? { ...next, lastJobId: firing.jobId, lastJobSeq: seq } : next;
    });
  }

  async firings(scheduleId: string): Promise<StoredFiring[]> {
    const value = await this.#read(scheduleId);
    return (value?.value.firings ?? []).map((firing) => toFiring(scheduleId, firing));
  }

  /** The newest job a firing of the schedule made; null: none (or the schedule is gone). */
  async lastJobId(scheduleId: string): Promise<string | null> {
    return (await this.#read(scheduleId))?.value.lastJobId ?? null;
  }

  async #read(id: string): Promise<{ value: ScheduleJson; revision: string } | null> {
    const kv = (await this.client.get(this.keys.schedule(id)).exec()).kvs[0];
    return kv ? { value: JSON.parse(kv.value.toString()) as ScheduleJson, revision: kv.mod_revision } : null;
  }

  /**
   * Reads the schedule, applies `change` and writes it back only if nobody
   * wrote it since the read, trying again otherwise. `change` returns null
   * when there is nothing to write. 'missing': the schedule is gone.
   */
  async #swap(id: string, change: (value: ScheduleJson) => ScheduleJson | null): Promise<'done' | 'missing'> {
    const key = this.keys.schedule(id);
    let errors = 0;
    for (let tries = 0; tries < SWAP_TRIES; tries++) {
      const read = await this.#read(id);
      if (!read) return 'missing';
      const next = change(read.value);
      if (next === null) return 'done';
      try {
        const result = await this.client.if(key, 'Mod', '==', read.revision).then(this.client.put(key).value(JSON.stringify(next))).commit();
        if (result.succeeded) return 'done';
      } catch (err) {
        // Perhaps an answer lost after the write (the next read shows it), perhaps etcd refusing it for good.
        if (++errors >= SWAP_ERRORS) throw err;
      }
    }
    throw new Error(`schedule ${id} kept changing under ${SWAP_TRIES} tries to write it`);
  }
}

/**
 * The firing added (or put over the one of its slot and kind), newest
 * first, FIRINGS_KEPT kept — and any older one still STARTING, which must
 * stay to be judged (and to hold forbid and replace while it may start a job).
 */
function withFiring(value: ScheduleJson, firing: FiringJson): ScheduleJson {
  const others = value.firings.filter((old) => !(old.slot === firing.slot && old.manual === firing.manual));
  const sorted = [firing, ...others].sort((a, b) => b.firedAt - a.firedAt || b.slot - a.slot);
  const firings = sorted.filter((kept, at) => at < FIRINGS_KEPT || kept.outcome === 'STARTING');
  return { ...value, firings };
}

function toJson(schedule: StoredSchedule): Omit<ScheduleJson, 'firings' | 'lastJobId'> {
  return {
    id: schedule.id,
    name: schedule.name,
    cron: schedule.cron,
    timezone: schedule.timezone,
    job: Buffer.from(CreateJobReq.encode(schedule.job).finish()).toString('base64'),
    concurrency: schedule.concurrency,
    catchUp: schedule.catchUp,
    catchUpWindowMs: schedule.catchUpWindowMs,
    paused: schedule.paused,
    owner: schedule.owner,
    createdAt: schedule.createdAt.getTime(),
    lastSlot: schedule.lastSlot.getTime(),
  };
}

function toStored(value: ScheduleJson): StoredSchedule {
  return {
    id: value.id,
    name: value.name,
    cron: value.cron,
    timezone: value.timezone,
    job: CreateJobReq.decode(Buffer.from(value.job, 'base64')),
    concurrency: value.concurrency,
    catchUp: value.catchUp,
    catchUpWindowMs: value.catchUpWindowMs,
    paused: value.paused,
    owner: value.owner,
    createdAt: new Date(value.createdAt),
    lastSlot: new Date(value.lastSlot),
  };
}

function toFiringJson(firing: StoredFiring): FiringJson {
  return {
    slot: firing.slot.getTime(),
    firedAt: firing.firedAt.getTime(),
    outcome: firing.outcome,
    jobId: firing.jobId,
    reason: firing.reason,
    manual: firing.manual,
    node: firing.node,
  };
}

function toFiring(scheduleId: string, firing: FiringJson): StoredFiring {
  return {
    scheduleId,
    slot: new Date(firing.slot),
    firedAt: new Date(firing.firedAt),
    outcome: firing.outcome,
    jobId: firing.jobId,
    reason: firing.reason,
    manual: firing.manual,
    node: firing.node,
  };
}
