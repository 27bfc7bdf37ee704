// Schedules on disk: <data dir>/schedules.db (better-sqlite3, WAL), one row
// per schedule and its last firings. A slot is claimed, and its firing
// recorded, in one transaction before anything is started: a slot fires at
// most once, whichever process dies when (a firing found still STARTING
// after a restart is judged from the job history: its job is there or it
// never started).
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CreateJobReq } from '../../gen/jobworker/v1/jobworker.js';
import { HistoryError } from '../jobs/history.js';

export type Concurrency = 'allow' | 'forbid' | 'replace';
export type CatchUp = 'once' | 'none';
export type Outcome = 'STARTING' | 'STARTED' | 'SKIPPED' | 'FAILED';

/** Firings kept per schedule, newest first. */
export const FIRINGS_KEPT = 20;

export interface StoredSchedule {
  id: string;
  name: string | null;
  cron: string;
  /** '' is UTC. */
  timezone: string;
  /** The job each firing creates (checked when the schedule was created). */
  job: CreateJobReq;
  concurrency: Concurrency;
  catchUp: CatchUp;
  catchUpWindowMs: number;
  paused: boolean;
  owner: string;
  createdAt: Date;
  /** The last slot handled (fired, skipped or failed); slots after it are still to come. */
  lastSlot: Date;
  /** Read from a shared store: some firing of it is STARTING (its scheduler may have stopped half-way). */
  halfDone?: boolean;
}

export interface StoredFiring {
  scheduleId: string;
  slot: Date;
  firedAt: Date;
  outcome: Outcome;
  jobId: string | null;
  reason: string;
  manual: boolean;
  /** In a fleet, the node that claimed it (a firing its node left STARTING is judged by another). */
  node?: string;
}

type MaybePromise<T> = T | Promise<T>;

/** What a policy (forbid, replace) decided from: the schedule's newest job as it saw it. */
export interface ClaimGuard {
  newestJob: string | null;
}

/**
 * Where schedules are kept: this host's schedules.db (ScheduleBook), or a
 * fleet's etcd (src/fleet/schedule-store.ts), where several schedulers share
 * them and each write is checked against what the others wrote.
 */
export interface ScheduleStore {
  all(): MaybePromise<StoredSchedule[]>;
  /** A new schedule. A shared store checks the name and the count itself (SCHEDULE_NAME_TAKEN, TOO_MANY_SCHEDULES). */
  create(schedule: StoredSchedule): MaybePromise<void>;
  /** Paused or resumed: only `paused` and `lastSlot` are taken from `schedule`. */
  setPaused(schedule: StoredSchedule): MaybePromise<void>;
  delete(id: string): MaybePromise<void>;
  /**
   * Claims a slot and records its firing at once: false (nothing written)
   * when the slot was handled already, or — in a shared store — the
   * schedule was paused or deleted meanwhile. A manual firing claims no slot.
   * With a guard (a STARTING firing under forbid or replace), a shared store
   * claims only while no other firing of the schedule is starting and its
   * newest job is the one the policy looked at: otherwise nothing is written
   * and `retry` says why (a single store's firings run one at a time).
   */
  claim(firing: StoredFiring, guard?: ClaimGuard): MaybePromise<boolean | { retry: string; busy: boolean }>;
  /**
   * Records (or updates) a firing, keeping the newest FIRINGS_KEPT of its
   * schedule. `ifStarting`: only over a firing still STARTING (a judgement
   * of a half-done firing must not overwrite how it went).
   */
  record(firing: StoredFiring, options?: { ifStarting?: boolean }): MaybePromise<void>;
  /** The schedule's firings, newest first. */
  firings(scheduleId: string): MaybePromise<StoredFiring[]>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS schedules (
  id TEXT PRIMARY KEY,
  name TEXT,
  cron TEXT NOT NULL,
  timezone TEXT NOT NULL,
  job BLOB NOT NULL,
  concurrency TEXT NOT NULL,
  catch_up TEXT NOT NULL,
  catch_up_window_ms INTEGER NOT NULL,
  paused INTEGER NOT NULL,
  owner TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_slot INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS firings (
  schedule_id TEXT NOT NULL,
  slot INTEGER NOT NULL,
  manual INTEGER NOT NULL,
  fired_at INTEGER NOT NULL,
  outcome TEXT NOT NULL,
  job_id TEXT,
  reason TEXT NOT NULL,
  PRIMARY KEY (schedule_id, slot, manual)
) STRICT;
`;

interface ScheduleRow {
  id: string;
  name: string | null;
  cron: string;
  timezone: string;
  job: Buffer;
  concurrency: string;
  catch_up: string;
  catch_up_window_ms: number;
  paused: number;
  owner: string;
  created_at: number;
  last_slot: number;
}

interface FiringRow {
  schedule_id: string;
  slot: number;
  manual: number;
  fired_at: number;
  outcome: string;
  job_id: string | null;
  reason: string;
}

export class ScheduleBook implements ScheduleStore {
  readonly #db: Database.Database;
  readonly #putSchedule: Database.Statement;
  readonly #putFiring: Database.Statement;
  readonly #trim: Database.Statement;
  readonly #advance: Database.Statement;

  private constructor(db: Database.Database) {
    this.#db = db;
    this.#putSchedule = db.prepare(`
      INSERT OR REPLACE INTO schedules (id, name, cron, timezone, job, concurrency, catch_up, catch_up_window_ms, paused, owner, created_at, last_slot)
      VALUES (@id, @name, @cron, @timezone, @job, @concurrency, @catch_up, @catch_up_window_ms, @paused, @owner, @created_at, @last_slot)`);
    // Only for a schedule that is still there: a firing that ends after its schedule's delete leaves no row behind.
    this.#putFiring = db.prepare(`
      INSERT OR REPLACE INTO firings (schedule_id, slot, manual, fired_at, outcome, job_id, reason)
      SELECT @schedule_id, @slot, @manual, @fired_at, @outcome, @job_id, @reason
      WHERE EXISTS (SELECT 1 FROM schedules WHERE id = @schedule_id)`);
    this.#trim = db.prepare(`
      DELETE FROM firings WHERE schedule_id = ? AND rowid NOT IN
        (SELECT rowid FROM firings WHERE schedule_id = ? ORDER BY fired_at DESC, slot DESC LIMIT ${FIRINGS_KEPT})`);
    this.#advance = db.prepare('UPDATE schedules SET last_slot = ? WHERE id = ? AND last_slot < ?');
  }

  /** Opens (or creates) `<dataDir>/schedules.db`; a HistoryError when it cannot (jobworkerd exits 2). */
  static open(dataDir: string): ScheduleBook {
    const file = path.join(dataDir, 'schedules.db');
    let db: Database.Database | undefined;
    try {
      fs.accessSync(dataDir);
      db = new Database(file);
      db.pragma('journal_mode = WAL');
      // FULL, not the job history's NORMAL: a claim lost to a power cut could fire its slot again; claims are few.
      db.pragma('synchronous = FULL');
      db.exec(SCHEMA);
      return new ScheduleBook(db);
    } catch (err) {
      db?.close();
      throw new HistoryError(`cannot open the schedules ${file}: ${(err as Error).message}`);
    }
  }

  /** Every schedule, oldest first. */
  all(): StoredSchedule[] {
    return (this.#db.prepare('SELECT * FROM schedules ORDER BY created_at, id').all() as ScheduleRow[]).map(scheduleOf);
  }

  create(schedule: StoredSchedule): void {
    this.put(schedule);
  }

  setPaused(schedule: StoredSchedule): void {
    this.put(schedule);
  }

  /** Inserts or replaces the schedule's row. */
  put(schedule: StoredSchedule): void {
    this.#putSchedule.run({
      id: schedule.id,
      name: schedule.name,
      cron: schedule.cron,
      timezone: schedule.timezone,
      job: Buffer.from(CreateJobReq.encode(schedule.job).finish()),
      concurrency: schedule.concurrency,
      catch_up: schedule.catchUp,
      catch_up_window_ms: schedule.catchUpWindowMs,
      paused: schedule.paused ? 1 : 0,
      owner: schedule.owner,
      created_at: schedule.createdAt.getTime(),
      last_slot: schedule.lastSlot.getTime(),
    });
  }

  delete(id: string): void {
    this.#db.transaction(() => {
      this.#db.prepare('DELETE FROM firings WHERE schedule_id = ?').run(id);
      this.#db.prepare('DELETE FROM schedules WHERE id = ?').run(id);
    })();
  }

  /** In one transaction: see ScheduleStore. */
  claim(firing: StoredFiring): boolean {
    return this.#db.transaction(() => {
      if (!firing.manual) {
        const slot = firing.slot.getTime();
        if (this.#advance.run(slot, firing.scheduleId, slot).changes === 0) return false;
      }
      this.record(firing);
      return true;
    })();
  }

  /** Records (or updates) a firing, keeping the newest FIRINGS_KEPT of its schedule. */
  record(firing: StoredFiring): void {
    this.#putFiring.run({
      schedule_id: firing.scheduleId,
      slot: firing.slot.getTime(),
      manual: firing.manual ? 1 : 0,
      fired_at: firing.firedAt.getTime(),
      outcome: firing.outcome,
      job_id: firing.jobId,
      reason: firing.reason,
    });
    this.#trim.run(firing.scheduleId, firing.scheduleId);
  }

  /** The schedule's firings, newest first. */
  firings(scheduleId: string): StoredFiring[] {
    const rows = this.#db.prepare('SELECT * FROM firings WHERE schedule_id = ? ORDER BY fired_at DESC, slot DESC').all(scheduleId) as FiringRow[];
    return rows.map((row) => ({
      scheduleId: row.schedule_id,
      slot: new Date(row.slot),
      firedAt: new Date(row.fired_at),
      outcome: row.outcome as Outcome,
      jobId: row.job_id,
      reason: row.reason,
      manual: row.manual === 1,
    }));
  }

  close(): void {
    this.#db.close();
  }
}

function scheduleOf(row: ScheduleRow): StoredSchedule {
  return {
    id: row.id,
    name: row.name,
    cron: row.cron,
    timezone: row.timezone,
    job: CreateJobReq.decode(row.job),
    concurrency: row.concurrency as Concurrency,
    catchUp: row.catch_up as CatchUp,
    catchUpWindowMs: row.catch_up_window_ms,
    paused: row.paused === 1,
    owner: row.owner,
    createdAt: new Date(row.created_at),
    lastSlot: new Date(row.last_slot),
  };
}
