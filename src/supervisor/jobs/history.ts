// Job records on disk: one SQLite row per job (better-sqlite3, WAL), written
// at every state change before the change is answered to any client, read
// back when the server starts. Output is kept beside it, in files of its own
// (output/log.ts).
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { JobIsolation, JobLimits, ResourceUsage } from '../../workers/protocol.js';
import type { Dependency, JobRecord, JobState } from './record.js';

/**
 * A job as the history keeps it: its record without the live parts (log,
 * ended promise), with how much output it wrote; and while it waits, the
 * environment it is to start with (kept only until then).
 */
export type StoredJob = Omit<JobRecord, 'log' | 'ended' | 'args'> & { args: string[]; outputBytes: number; env: Record<string, string> | null };

/** What the history could not give back, one entry per row or file. */
export interface HistoryProblem {
  jobId: string | null;
  problem: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  command TEXT NOT NULL,
  args TEXT NOT NULL,
  limits TEXT NOT NULL,
  owner TEXT NOT NULL,
  pid INTEGER NOT NULL,
  cgroup TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  state TEXT NOT NULL,
  ended_at INTEGER,
  exit_code INTEGER,
  signal TEXT,
  oom_killed INTEGER NOT NULL,
  message TEXT NOT NULL,
  usage TEXT,
  output_bytes INTEGER NOT NULL,
  isolation TEXT,
  workdir TEXT,
  name TEXT,
  labels TEXT,
  timeout_ms INTEGER,
  stdin INTEGER
) STRICT;
`;

/** Columns added since the first schema, for databases made before them (NULL in their rows). */
const ADDED_COLUMNS = [
  { name: 'isolation', type: 'TEXT' },
  { name: 'workdir', type: 'TEXT' },
  { name: 'name', type: 'TEXT' },
  { name: 'labels', type: 'TEXT' },
  { name: 'timeout_ms', type: 'INTEGER' },
  { name: 'stdin', type: 'INTEGER' },
  { name: 'created_at', type: 'INTEGER' },
  { name: 'after', type: 'TEXT' },
  { name: 'env', type: 'TEXT' },
] as const;

const STATES: readonly JobState[] = ['WAITING', 'RUNNING', 'COMPLETED', 'FAILED', 'STOPPED', 'TIMED_OUT'];

interface Row {
  id: string;
  command: string;
  args: string;
  limits: string;
  owner: string;
  pid: number;
  cgroup: string;
  started_at: number;
  state: string;
  ended_at: number | null;
  exit_code: number | null;
  signal: string | null;
  oom_killed: number;
  message: string;
  usage: string | null;
  output_bytes: number;
  isolation: string | null;
  workdir: string | null;
  name: string | null;
  labels: string | null;
  timeout_ms: number | null;
  stdin: number | null;
  created_at: number | null;
  after: string | null;
  env: string | null;
}

export class HistoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HistoryError';
  }
}

export class JobHistory {
  readonly #db: Database.Database;
  readonly #put: Database.Statement;
  readonly #delete: Database.Statement;

  private constructor(db: Database.Database) {
    this.#db = db;
    this.#put = db.prepare(`
      INSERT INTO jobs (id, command, args, limits, owner, pid, cgroup, started_at, state, ended_at,
                        exit_code, signal, oom_killed, message, usage, output_bytes, isolation, workdir,
                        name, labels, timeout_ms, stdin, created_at, after, env)
      VALUES (@id, @command, @args, @limits, @owner, @pid, @cgroup, @started_at, @state, @ended_at,
              @exit_code, @signal, @oom_killed, @message, @usage, @output_bytes, @isolation, @workdir,
              @name, @labels, @timeout_ms, @stdin, @created_at, @after, @env)
      ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, cgroup = excluded.cgroup, started_at = excluded.started_at,
        env = excluded.env, state = excluded.state, ended_at = excluded.ended_at, exit_code = excluded.exit_code,
        signal = excluded.signal, oom_killed = excluded.oom_killed, message = excluded.message, usage = excluded.usage,
        output_bytes = excluded.output_bytes`);
    this.#delete = db.prepare('DELETE FROM jobs WHERE id = ?');
  }

  /**
   * Opens (or creates) `<dataDir>/jobs.db`. A database SQLite cannot read is
   * moved aside as jobs.db.corrupt-<time> and a new one started: the server
   * serves what it can rather than not at all; `problems` says what was lost.
   */
  static open(dataDir: string, problems: HistoryProblem[]): JobHistory {
    try {
      // Not recursive: its parent is the operator's to make (systemd's
      // StateDirectory= does), and Node's recursive mkdir never returns for
      // a path under /proc.
      fs.mkdirSync(dataDir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new HistoryError(`cannot create the data directory ${dataDir}: ${(err as Error).message}`);
    }
    const file = path.join(dataDir, 'jobs.db');
    try {
      return new JobHistory(JobHistory.#connect(file));
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== 'SQLITE_CORRUPT' && code !== 'SQLITE_NOTADB') throw new HistoryError(`cannot open job history ${file}: ${(err as Error).message}`);
      const aside = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      for (const suffix of ['', '-wal', '-shm']) {
        if (fs.existsSync(`${file}${suffix}`)) fs.renameSync(`${file}${suffix}`, `${aside}${suffix}`);
      }
      problems.push({ jobId: null, problem: `job history ${file} is unreadable (${(err as Error).message}): moved to ${aside}, starting a new one` });
      return new JobHistory(JobHistory.#connect(file));
    }
  }

  static #connect(file: string): Database.Database {
    const db = new Database(file);
    try {
      // WAL: a write is one append and readers never wait. NORMAL: a commit
      // survives the server's crash or SIGKILL (it is in the OS's cache);
      // only a power loss can take the last few.
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.exec(SCHEMA);
      const columns = new Set((db.pragma('table_info(jobs)') as { name: string }[]).map((column) => column.name));
      for (const { name, type } of ADDED_COLUMNS) if (!columns.has(name)) db.exec(`ALTER TABLE jobs ADD COLUMN ${name} ${type}`);
      const check = db.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw Object.assign(new Error(`quick_check: ${String(check)}`), { code: 'SQLITE_CORRUPT' });
      return db;
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** Inserts or updates the job's row; throws (e.g. SQLITE_FULL) when it cannot. */
  put(job: StoredJob): void {
    this.#put.run({
      id: job.id,
      command: job.command,
      args: JSON.stringify(job.args),
      limits: JSON.stringify(job.limits),
      owner: job.owner,
      pid: job.pid,
      cgroup: job.cgroup,
      // NOT NULL since the first schema: a job that never started has its
      // creation time here, and pid 0 says it never started (a started job's
      // pid is never 0).
      started_at: (job.startedAt ?? job.createdAt).getTime(),
      state: job.state,
      ended_at: job.endedAt?.getTime() ?? null,
      exit_code: job.exitCode,
      signal: job.signal,
      oom_killed: job.oomKilled ? 1 : 0,
      message: job.message,
      usage: job.usage ? JSON.stringify(job.usage) : null,
      output_bytes: job.outputBytes,
      isolation: job.isolation ? JSON.stringify(job.isolation) : null,
      workdir: job.workdir,
      name: job.name,
      labels: Object.keys(job.labels).length > 0 ? JSON.stringify(job.labels) : null,
      timeout_ms: job.timeoutMs,
      stdin: job.stdin ? 1 : 0,
      created_at: job.createdAt.getTime(),
      after: job.after.length > 0 ? JSON.stringify(job.after) : null,
      env: job.env === null ? null : JSON.stringify(job.env),
    });
  }

  delete(id: string): void {
    this.#delete.run(id);
  }

  /** Every job, in the order they were created; rows that do not parse are reported and left out. */
  load(problems: HistoryProblem[]): StoredJob[] {
    const jobs: StoredJob[] = [];
    for (const row of this.#db.prepare('SELECT * FROM jobs ORDER BY coalesce(created_at, started_at), rowid').all() as Row[]) {
      try {
        jobs.push(parse(row));
      } catch (err) {
        problems.push({ jobId: row.id, problem: `unreadable record, left out: ${(err as Error).message}` });
      }
    }
    return jobs;
  }

  close(): void {
    this.#db.close();
  }
}

function parse(row: Row): StoredJob {
  if (!STATES.includes(row.state as JobState)) throw new Error(`unknown state ${JSON.stringify(row.state)}`);
  const args = JSON.parse(row.args) as unknown;
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) throw new Error('args is not a list of strings');
  return {
    id: row.id,
    command: row.command,
    args,
    limits: JSON.parse(row.limits) as JobLimits,
    owner: row.owner,
    pid: row.pid,
    cgroup: row.cgroup,
    // Rows from before created_at were all of jobs that started at once.
    createdAt: new Date(row.created_at ?? row.started_at),
    startedAt: row.pid === 0 ? null : new Date(row.started_at),
    after: row.after === null ? [] : parseAfter(row.after),
    env: row.env === null ? null : (JSON.parse(row.env) as Record<string, string>),
    state: row.state as JobState,
    endedAt: row.ended_at === null ? null : new Date(row.ended_at),
    exitCode: row.exit_code,
    signal: row.signal,
    oomKilled: row.oom_killed === 1,
    message: row.message,
    usage: row.usage === null ? null : (JSON.parse(row.usage) as ResourceUsage),
    outputBytes: row.output_bytes,
    isolation: row.isolation === null ? null : (JSON.parse(row.isolation) as JobIsolation),
    workdir: row.workdir,
    name: row.name,
    labels: row.labels === null ? {} : (JSON.parse(row.labels) as Record<string, string>),
    timeoutMs: row.timeout_ms,
    stdin: row.stdin === 1,
  };
}

function parseAfter(text: string): Dependency[] {
  const after = JSON.parse(text) as unknown;
  const valid = (d: unknown): d is Dependency =>
    typeof d === 'object' && d !== null && typeof (d as Dependency).id === 'string' && ((d as Dependency).condition === 'ok' || (d as Dependency).condition === 'any');
  if (!Array.isArray(after) || !after.every(valid)) throw new Error('after is not a list of dependencies');
  return after.map(({ id, condition }) => ({ id, condition }));
}
