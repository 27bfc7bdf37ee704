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
import { Errors } from '../supervisor/errors.js';
import { FIRINGS_KEPT, type ScheduleStore, type StoredFiring, type StoredSchedule } from '../supervisor/schedules/schedule-book.js';
import { MAX_SCHEDULES } from '../supervisor/schedules/scheduler.js';
import { crashAt } from './faults.js';
import type { FleetKeys } from './keys.js';

/** Swaps of one schedule tried before giving up (every node's claim of a slot is one; they settle in a few). */
const SWAP_TRIES = 50;

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
}

export class EtcdScheduleStore implements ScheduleStore {
  constructor(
    readonly client: Etcd3,
    readonly keys: FleetKeys,
  ) {}

  async all(): Promise<StoredSchedule[]> {
    const values = await this.client.getAll().prefix(this.keys.schedules()).strings();
    return Object.values(values)
      .map((text) => {
        const value = JSON.parse(text) as ScheduleJson;
        return { ...toStored(value), halfDone: value.firings.some((firing) => firing.outcome === 'STARTING') };
      })
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : 1));
  }

  /**
   * A new schedule, its name taken fleet-wide and the count checked in the
   * same transaction (schedule-count changes with every create: two creates
   * that read the same count cannot both pass MAX_SCHEDULES).
   */
  async create(schedule: StoredSchedule): Promise<void> {
    const value: ScheduleJson = { ...toJson(schedule), firings: [], lastJobId: null };
    for (let tries = 0; tries < SWAP_TRIES; tries++) {
      const counted = (await this.client.get(this.keys.scheduleCount()).exec()).kvs[0]?.mod_revision ?? '0';
      const count = await this.client.getAll().prefix(this.keys.schedules()).count();
      if (count >= MAX_SCHEDULES) throw Errors.tooManySchedules(MAX_SCHEDULES);
      let txn = this.client.if(this.keys.scheduleCount(), 'Mod', '==', counted);
      if (schedule.name !== null) txn = txn.and(this.keys.scheduleName(schedule.name), 'Create', '==', 0);
      const writes = [this.client.put(this.keys.schedule(schedule.id)).value(JSON.stringify(value)), this.client.put(this.keys.scheduleCount()).value('')];
      if (schedule.name !== null) writes.push(this.client.put(this.keys.scheduleName(schedule.name)).value(schedule.id));
      const result = await txn.then(...writes).commit().catch(() => undefined);
      if (result?.succeeded) return;
      // Lost to another create, or this one's answer was lost: the keys say which.
      if (await this.client.get(this.keys.schedule(schedule.id)).exec().then((res) => res.kvs.length > 0)) return;
      if (schedule.name !== null) {
        const holder = await this.client.get(this.keys.scheduleName(schedule.name)).string();
        if (holder !== null) throw Errors.scheduleNameTaken(schedule.name, holder);
      }
    }
    throw new Error(`other creates kept changing the fleet's schedules for ${SWAP_TRIES} tries`);
  }

  async setPaused(schedule: StoredSchedule): Promise<void> {
    const done = await this.#swap(schedule.id, (value) => ({ ...value, paused: schedule.paused, lastSlot: Math.max(value.lastSlot, schedule.lastSlot.getTime()) }));
    if (done === 'missing') throw Errors.scheduleNotFound(schedule.id);
  }

  async delete(id: string): Promise<void> {
    const value = await this.#read(id);
    if (!value) return;
    await this.client.delete().key(this.keys.schedule(id)).exec();
    if (value.value.name !== null) {
      await this.client.if(this.keys.scheduleName(value.value.name), 'Value', '==', id).then(this.client.delete().key(this.keys.scheduleName(value.value.name))).commit();
    }
  }

  /** Won only by the first claim of a slot; never while the fleet has the schedule paused (a slot's STARTING claim) or deleted. */
  async claim(firing: StoredFiring): Promise<boolean> {
    const attempt = randomUUID();
    const slot = firing.slot.getTime();
    let claimed = false;
    const done = await this.#swap(firing.scheduleId, (value) => {
      // Decided afresh at every read: a swap that lost to another claim comes back here.
      claimed = false;
      if (value.firings.some((kept) => kept.attempt === attempt)) {
        // This claim's own write, its answer lost.
        claimed = true;
        return null;
      }
      if (!firing.manual && (value.lastSlot >= slot || (value.paused && firing.outcome === 'STARTING'))) return null;
      claimed = true;
      return withFiring({ ...value, lastSlot: firing.manual ? value.lastSlot : slot }, { ...toFiringJson(firing), attempt });
    });
    if (done !== 'missing' && claimed && firing.outcome === 'STARTING') crashAt('schedule-after-claim');
    return done !== 'missing' && claimed;
  }

  /** How a firing went, over its claim; the job it made becomes the schedule's newest. */
  async record(firing: StoredFiring): Promise<void> {
    await this.#swap(firing.scheduleId, (value) => {
      const kept = value.firings.find((old) => old.slot === firing.slot.getTime() && old.manual === firing.manual);
      const next = withFiring(value, { ...toFiringJson(firing), attempt: kept?.attempt });
      return firing.outcome === 'STARTED' && firing.jobId !== null ? { ...next, lastJobId: firing.jobId } : next;
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
    for (let tries = 0; tries < SWAP_TRIES; tries++) {
      const read = await this.#read(id);
      if (!read) return 'missing';
      const next = change(read.value);
      if (next === null) return 'done';
      const result = await this.client.if(key, 'Mod', '==', read.revision).then(this.client.put(key).value(JSON.stringify(next))).commit().catch(() => undefined);
      if (result?.succeeded) return 'done';
    }
    throw new Error(`schedule ${id} kept changing under ${SWAP_TRIES} tries to write it`);
  }
}

/** The firing added (or put over the one of its slot and kind), newest first, FIRINGS_KEPT kept. */
function withFiring(value: ScheduleJson, firing: FiringJson): ScheduleJson {
  const others = value.firings.filter((old) => !(old.slot === firing.slot && old.manual === firing.manual));
  const firings = [firing, ...others].sort((a, b) => b.firedAt - a.firedAt || b.slot - a.slot).slice(0, FIRINGS_KEPT);
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
