// Starts jobs on the job-supervisor pool and follows them to their end. The
// main thread's share of a job: its record, its output log (filled from the
// job's ring), and a MessagePort to ask its supervisor to stop it.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { MessageChannel, type MessagePort, type Transferable } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { Logger } from 'pino';
import { messageOf } from '../../common/error-message.js';
import type {
  CgroupConfig,
  CgroupDriverName,
  JobIsolation,
  JobLimits,
  JobOutcome,
  JobStarted,
  OutputPath,
  PrepareResult,
  RunJobTask,
  StopReason,
  StopRequest,
  SupervisorTasks,
  TaskName,
  TaskToMain,
} from '../../workers/protocol.js';
import type { JobCgroup } from '../../workers/cgroup/driver.js';
import { driverFor } from '../../workers/cgroup/select.js';
import type { SupervisorThreadData } from '../../workers/thread-stats.js';
import { Errors, JobworkerError } from '../errors.js';
import { JOB_ID_VARIABLE } from '../policy/job-environment.js';
import type { ServerMetrics } from '../ops/metrics.js';
import { readPipesInline } from '../output/inline-reader.js';
import { OutputLog, jobLogOptions } from '../output/log.js';
import { RingPool } from '../output/ring-pool.js';
import { RingReader, pumpRing } from '../output/ring-reader.js';
import { InputChannel } from './input-channel.js';
import { askUsage } from './usage-request.js';
import type { Dependency, JobRecord } from './record.js';
import { NotRecordedError, abandonJob, endJob, setUsage, type JobStore } from './store.js';

/** A supervisor thread answers a usage request in well under a millisecond; past this, answer with what is known. */
const USAGE_TIMEOUT_MS = 2_000;
/** V8's young generation of a supervisor thread, at most (see the pool's resourceLimits). */
const SUPERVISOR_YOUNG_GENERATION_MB = 4;
/** How long job-init may take from spawn to exec before it is killed and the start fails. */
export const DEFAULT_START_TIMEOUT_MS = 30_000;

const TASK_FILE = fileURLToPath(new URL('../../workers/job-task.js', import.meta.url));

export interface JobRunnerOptions {
  workers: number;
  cgroupDriver: CgroupDriverName | 'auto';
  cgroupParent: string;
  cgroupDelegated: boolean;
  cgroupMountRoot: string;
  jobInitPath: string;
  /** Where each job's output directory goes (<data dir>/output). */
  outputRoot: string;
  /** Per job: past this, its oldest output is discarded. */
  maxOutputBytes: number;
  /** Paths hidden from jobs with a mount namespace (policy/isolation.ts hiddenPaths). */
  hide: string[];
  /** Called after a job's end is recorded. */
  onJobEnded?: (record: JobRecord) => void;
  ringCapacity?: number;
  outputPath?: OutputPath;
  /** From spawn to exec; default DEFAULT_START_TIMEOUT_MS. */
  startTimeoutMs?: number;
  /** Between SIGTERM and SIGKILL when a job's deadline stops it (the server's default stop grace). */
  deadlineGraceMs: number;
  logger: Logger;
  metrics: ServerMetrics;
}

export interface StartRequest {
  command: string;
  args: string[];
  limits: JobLimits;
  isolation: JobIsolation;
  workdir: string;
  /** The job's environment (policy/job-environment.ts) but for JOBWORKER_JOB_ID, which only the runner knows. */
  env: Record<string, string>;
  owner: string;
  /** The job's id when the caller chose it (a fleet's entry node does); default: a new random UUID. */
  id?: string;
  /** Already held for this start (JobStore.claimName). */
  name: string | null;
  labels: Record<string, string>;
  /** Stopped, and ended TIMED_OUT, this long after its start; null: never. */
  timeoutMs: number | null;
  /** A pipe on its stdin for WriteInput (inputOf); otherwise /dev/null. */
  stdin: boolean;
  /**
   * A job that waited (waiting-jobs.ts): its record, in the store already,
   * becomes the running job's (and keeps its id, name, log and creation
   * time); `settle` resolves its `ended` once the job has ended.
   */
  waiting?: { record: JobRecord; settle: () => void };
  /** A job that waited in a fleet (fleet/waiting.ts), never in this store: when the fleet accepted it, and what it waited for. */
  waited?: { createdAt: Date; after: readonly Dependency[] };
}

/** setTimeout's longest delay (2^31 - 1 ms, about 24.8 days): a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class JobRunner {
  readonly #pool: Piscina;
  readonly #store: JobStore;
  readonly #options: JobRunnerOptions;
  readonly #logger: Logger;
  readonly #ports = new Map<string, MessagePort>();
  readonly #rings: RingPool;
  /** The stdin of each running job created with one. */
  readonly #inputs = new Map<string, InputChannel>();
  /** One usage request in flight per job; concurrent askers share it. */
  readonly #usageRequests = new Map<string, Promise<void>>();
  /** The groups of running jobs whose usage was read on this thread (refreshUsage), opened once each. */
  readonly #usageGroups = new Map<string, JobCgroup>();
  /** Jobs whose start is in flight: shutdown must wait for them too. */
  readonly #starting = new Set<Promise<unknown>>();
  #prepared: PrepareResult | undefined;
  #cgroup: CgroupConfig | undefined;
  #closing = false;

  constructor(store: JobStore, options: JobRunnerOptions) {
    this.#store = store;
    this.#options = options;
    this.#logger = options.logger;
    this.#rings = new RingPool(options.ringCapacity);
    // Each thread supervises any number of jobs at once; a task is one job's
    // whole life, so the pool must never queue tasks behind busy threads.
    this.#pool = new Piscina({
      filename: TASK_FILE,
      minThreads: options.workers,
      maxThreads: options.workers,
      concurrentTasksPerWorker: Number.MAX_SAFE_INTEGER,
      idleTimeout: Number.POSITIVE_INFINITY,
      // Piscina's default parks idle threads in Atomics.wait, which would
      // freeze every job a thread supervises: wait on messages instead.
      atomics: 'disabled',
      // Job pipes are opened with fs.openSync and handed to net.Socket, which
      // closes them itself; a thread that also tracked them would close
      // reused fd numbers when it exits (and Node aborts on the mix-up).
      trackUnmanagedFds: false,
      // A supervisor thread's young generation grows to V8's default 32 MiB
      // in a burst of starts and stays that big until a minute of quiet lets
      // V8 shrink it: a third of the server's memory per job right after
      // creating 1,000 (82 KiB a job, 57–60 with this cap; bench scenario 5). A
      // thread's own garbage is small objects (pipe data is external
      // memory): job starts and streaming measured the same or better.
      resourceLimits: { maxYoungGenerationSizeMb: SUPERVISOR_YOUNG_GENERATION_MB },
      workerData: { stats: options.metrics.threadStats.buffer, loopWindowMs: options.metrics.loopWindowMs } satisfies SupervisorThreadData,
    });
  }

  /** Thread ids of the supervisor threads alive now. */
  get threadIds(): number[] {
    return this.#pool.threads.map((thread) => thread.threadId);
  }

  /** Ends a supervisor thread as a crash would (the pool starts another): for tests of what the server does then. */
  async endThread(threadId: number): Promise<void> {
    await this.#pool.threads.find((thread) => thread.threadId === threadId)?.terminate();
  }

  /**
   * Runs a task on the pool. Piscina dispatches by name and knows no types:
   * the SupervisorTasks table says what each name takes and gives, and this
   * is the one place that crosses from one to the other.
   */
  #run<N extends TaskName>(name: N, task: Parameters<SupervisorTasks[N]>[0], transferList?: Transferable[]): ReturnType<SupervisorTasks[N]> {
    return this.#pool.run(task, { name, transferList }) as ReturnType<SupervisorTasks[N]>;
  }

  /** Resolves the cgroup driver and prepares the parent group. Call once before start(). */
  async prepare(): Promise<PrepareResult> {
    const mountRoot = this.#options.cgroupMountRoot;
    const result = await this.#run('prepare', { driver: this.#options.cgroupDriver, parent: this.#options.cgroupParent, mountRoot, delegated: this.#options.cgroupDelegated });
    this.#prepared = result;
    this.#cgroup = { driver: result.driver, parent: result.parent, mountRoot };
    return result;
  }

  /** Resolves once the command runs, with its record in the store; rejects when it could not start. */
  start(request: StartRequest): Promise<JobRecord> {
    if (this.#closing) return Promise.reject(Errors.shuttingDown());
    const starting = this.#start(request);
    starting.catch((err: unknown) => {
      this.#options.metrics.jobStarts.inc({ result: err instanceof JobworkerError ? err.code.toLowerCase() : 'error' });
    });
    const tracked = starting.catch(() => undefined);
    this.#starting.add(tracked);
    void tracked.finally(() => this.#starting.delete(tracked));
    return starting;
  }

  async #start(request: StartRequest): Promise<JobRecord> {
    if (!this.#cgroup) throw new Error('JobRunner.prepare() must run before start()');
    const waiting = request.waiting?.record;
    const id = waiting?.id ?? request.id ?? randomUUID();
    const began = performance.now();
    const ring = this.#rings.take();
    let ringGiven = false;
    /** Back to the pool, once: a ring given back twice could go to two jobs at once. */
    const giveRing = (): void => {
      if (ringGiven) return;
      ringGiven = true;
      this.#rings.give(ring);
    };
    const reader = new RingReader(ring);
    const log = waiting?.log ?? new OutputLog(jobLogOptions(this.#options.outputRoot, id, this.#options.maxOutputBytes, this.#logger));
    /** A job that never started has no output: a new job's log goes, a waiting job's (which readers may hold) stays, closed. */
    const dropLog = (): Promise<void> => (waiting ? log.close() : log.remove());
    const capture = this.#options.metrics.countingCapture(log);
    const drained = pumpRing(reader, capture);
    /**
     * Once nothing of the job can write any more: the pump takes what the
     * ring holds whatever the disk does, and ends. A dead thread will never
     * close its ring: it is closed from this side.
     */
    const pumped = async (writerDead: boolean): Promise<void> => {
      log.stopHoldingBack();
      if (writerDead) reader.abandon();
      await drained;
      // The writer's task has returned or its thread is dead: the ring is nobody's now.
      giveRing();
    };
    const { port1: port, port2: taskPort } = new MessageChannel();
    const task: RunJobTask = {
      jobId: id,
      command: request.command,
      args: request.args,
      limits: request.limits,
      isolation: request.isolation,
      workdir: request.workdir,
      hide: this.#options.hide,
      cgroup: this.#cgroup,
      jobInitPath: this.#options.jobInitPath,
      env: { ...request.env, [JOB_ID_VARIABLE]: id },
      ring,
      outputPath: this.#options.outputPath ?? 'ring',
      startTimeoutMs: this.#options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS,
      stdin: request.stdin,
      port: taskPort,
    };
    const outcome = this.#run('runJob', task, [taskPort]);
    // Either the job starts (a message on the port, then the task runs on) or
    // the task ends at once with the reason it could not start. The port and
    // the task's result travel on different channels, so a job that ends at
    // once may report its end before its start: then the start message is on
    // its way and is what counts.
    // (Usage requests come only once the job is in the store: its first message is this one.)
    const startMessage = new Promise<JobStarted>((resolve) => {
      const onStarted = (message: TaskToMain): void => {
        if (message.type !== 'started') return;
        port.off('message', onStarted);
        resolve(message);
      };
      port.on('message', onStarted);
    });
    const startOrFailure = outcome.then((o): Promise<JobStarted | JobOutcome> => (o.started ? startMessage : Promise.resolve(o)));
    const first = await Promise.race([startMessage, startOrFailure]).catch(async (err: unknown) => {
      // The thread died mid-start: job-init may be running, in its cgroup
      // or not yet (even exec'd, its start message lost with the thread),
      // and the ring will never be closed by its writer.
      port.close();
      this.#logger.error({ jobId: id, err }, 'job supervision failed during start; killing whatever it started');
      killOrphanedJobInit(id);
      await pumped(true);
      await this.#reap(id);
      await dropLog();
      throw Errors.startFailed('SPAWN_FAILED', `the job's supervisor thread failed while starting it: ${messageOf(err)}`);
    });

    if (!('type' in first)) {
      port.close();
      await pumped(false);
      await dropLog();
      if (first.supervisorError) this.#logger.warn({ jobId: id, problem: first.supervisorError }, 'cleanup after a failed start');
      const failure = first.startFailure ?? { code: 'SPAWN_FAILED' as const, message: 'the job task ended without starting the job' };
      throw Errors.startFailed(failure.code, failure.message);
    }

    const inline = first.pipes ? readPipesInline(first.pipes, capture) : undefined;
    // A job the history could not take was never started as far as anyone is told: its end is not counted either.
    let recorded = false;
    const ended = Promise.all([outcome, drained, inline?.done]).then(
      async ([result]) => {
        giveRing();
        // Every byte on disk before the end is recorded (unless the disk is full: then the end does not wait).
        await log.close();
        endJob(record, result, new Date());
        this.#record(record);
        if (recorded) this.#options.metrics.jobEnded(record);
        this.#logger.info({ jobId: id, state: record.state, exitCode: record.exitCode, signal: record.signal, message: record.message }, 'job ended');
        this.#options.onJobEnded?.(record);
      },
      async (err: unknown) => {
        // The thread supervising the job died, leaving the job running with
        // nobody to reap it: kill it through its cgroup from another thread,
        // then release the pump and close the log, to release the readers.
        this.#logger.error({ jobId: id, err }, 'job supervision failed; killing the job through its cgroup');
        const reaped = await this.#reap(id);
        inline?.stop();
        await pumped(true);
        await log.close();
        abandonJob(record, `${messageOf(err)}${reaped}`, new Date());
        this.#record(record);
        if (recorded) this.#options.metrics.jobEnded(record);
        this.#options.onJobEnded?.(record);
      },
    );
    const startedAt = new Date();
    const cleanUp = (): void => {
      this.#ports.get(id)?.close();
      this.#ports.delete(id);
      this.#inputs.get(id)?.jobEnded();
      this.#inputs.delete(id);
      this.#usageGroups.delete(id);
    };
    const record: JobRecord = waiting
      ? Object.assign(waiting, { pid: first.pid, cgroup: first.cgroup, startedAt, state: 'RUNNING' as const, message: '' })
      : {
      id,
      command: request.command,
      args: request.args,
      limits: request.limits,
      isolation: request.isolation,
      workdir: request.workdir,
      owner: request.owner,
      name: request.name,
      labels: request.labels,
      timeoutMs: request.timeoutMs,
      stdin: request.stdin,
      pid: first.pid,
      cgroup: first.cgroup,
      createdAt: request.waited?.createdAt ?? startedAt,
      startedAt,
      after: request.waited?.after ?? [],
      log,
      ended: ended.finally(cleanUp),
      state: 'RUNNING',
      endedAt: null,
      exitCode: null,
      signal: null,
      oomKilled: false,
      message: '',
      usage: null,
    };
    if (request.waiting) void ended.finally(cleanUp).then(request.waiting.settle, request.waiting.settle);
    this.#ports.set(id, port);
    const input = request.stdin ? new InputChannel(id, port) : undefined;
    if (input) this.#inputs.set(id, input);
    port.on('message', (message: TaskToMain) => {
      input?.onMessage(message);
      if (message.type !== 'exited') return;
      log.stopHoldingBack();
      // The thread says what became of the input before it says this.
      input?.jobEnded();
    });
    try {
      if (waiting) this.#store.recordStart(record);
      else this.#store.add(record);
      recorded = true;
    } catch (err) {
      if (!(err instanceof NotRecordedError)) throw err;
      // Nobody may be told of a job the history does not have: it would
      // vanish at the next restart with nobody to stop it.
      this.#logger.error({ jobId: id, err: err.reason }, 'could not record a started job; stopping it');
      await this.stop(record, 0);
      await dropLog();
      throw Errors.notRecorded(`${err.message}; the job was stopped`);
    }
    // Where a start's time went: supervisor-thread steps, and everything from
    // here to their end (pool dispatch, thread hops) in totalMs.
    const start = roundedMs({ ...first.phases, totalMs: performance.now() - began });
    this.#logger.info({ jobId: id, pid: first.pid, cgroup: first.cgroup, command: request.command, owner: request.owner, start }, 'job started');
    this.#options.metrics.jobStarts.inc({ result: 'started' });
    capture.started();
    this.#options.metrics.startDuration.observe(start.totalMs / 1000);
    if (request.timeoutMs !== null) this.#armDeadline(record, request.timeoutMs);
    return record;
  }

  /** Stops the job, as its deadline, once timeoutMs have passed since its start. */
  #armDeadline(record: JobRecord, timeoutMs: number): void {
    const deadline = record.startedAt!.getTime() + timeoutMs;
    let timer: NodeJS.Timeout;
    const arm = (): void => {
      const left = deadline - Date.now();
      timer = left > MAX_TIMER_MS ? setTimeout(arm, MAX_TIMER_MS) : setTimeout(() => void this.stop(record, this.#options.deadlineGraceMs, 'deadline'), Math.max(0, left));
    };
    arm();
    void record.ended.finally(() => clearTimeout(timer));
  }

  /** The stdin of a running job created with one; undefined for any other job. */
  inputOf(record: JobRecord): InputChannel | undefined {
    return this.#inputs.get(record.id);
  }

  /** Writes a job's end to the history; a failure is logged, the end stands (it is what happened). */
  #record(record: JobRecord): void {
    try {
      this.#store.recordEnd(record);
    } catch (err) {
      this.#logger.error({ jobId: record.id, err: err instanceof NotRecordedError ? err.reason : err }, 'could not record the end of a job in the job history');
    }
  }

  /** Kills and removes a job's cgroup from another thread; returns '' or what went wrong, for the record. */
  async #reap(jobId: string): Promise<string> {
    return this.#run('reap', { jobId, cgroup: this.#cgroup! }).then(
      () => '',
      (err: unknown) => {
        this.#logger.error({ jobId, err }, 'could not remove the cgroup of an abandoned job');
        return `; its cgroup could not be removed: ${messageOf(err)}`;
      },
    );
  }

  /** Asks the job's supervisor to stop it; resolves once the job has ended. */
  async stop(record: JobRecord, graceMs: number, reason: StopReason = 'stop'): Promise<void> {
    const port = this.#ports.get(record.id);
    if (record.state === 'RUNNING' && port) {
      const request: StopRequest = { type: 'stop', graceMs, reason };
      port.postMessage(request);
    }
    await record.ended;
  }

  /**
   * Reads a running job's usage from its cgroup into its record; if the job
   * ends first, the record holds the final figures instead.
   *
   * One job's (GetJob) is read here, on the RPC thread: a handful of small
   * files, tens of µs, where asking the job's supervisor thread costs a
   * round trip (~0.5 ms idle) and, under load, a loop turn of each thread
   * (a GetJob's p99 while four jobs flood output: 11–15 ms asked, 8–10 read
   * here). Reading is all this thread does with a group: the supervisor
   * thread still creates, kills and removes it. Many jobs' (`batch`: GetJobs
   * fresh_usage, up to 10,000) are read by their supervisor threads, which
   * keeps that off the RPC thread; so is one whose files could not be read
   * here (the group being torn down: then the thread, or the end, answers).
   */
  async refreshUsage(record: JobRecord, { batch = false } = {}): Promise<void> {
    const port = this.#ports.get(record.id);
    if (record.state !== 'RUNNING' || !port) return;
    if (!batch && this.#readUsageHere(record)) return;
    let request = this.#usageRequests.get(record.id);
    if (!request) {
      request = askUsage(port, record.ended, USAGE_TIMEOUT_MS).then((usage) => {
        this.#usageRequests.delete(record.id);
        if (usage) setUsage(record, usage);
      });
      this.#usageRequests.set(record.id, request);
    }
    await request;
  }

  /** Reads the job's usage on this thread; false when its files could not be read. */
  #readUsageHere(record: JobRecord): boolean {
    try {
      let group = this.#usageGroups.get(record.id);
      if (!group) {
        group = driverFor(this.#cgroup!).open(record.id);
        this.#usageGroups.set(record.id, group);
      }
      const usage = group.usage();
      // The supervisor thread may have removed the group meanwhile (the job
      // has ended): files read after that count as 0 (usage() reads files a
      // kernel may not have as absent), so only a group still whole after
      // the read gave figures. Removal takes whole directories, files and all.
      if (!group.joinDirs.every((dir) => fs.existsSync(dir))) return false;
      setUsage(record, usage);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Refuses new jobs, stops every running one, removes the parent groups it
   * made, and ends the pool. (Piscina rejects a thread's tasks as it starts
   * ending the thread: a ring is given back then only because no task is
   * left by the time the pool is destroyed.)
   */
  async close(graceMs: number): Promise<void> {
    this.#closing = true;
    await Promise.all(this.#starting);
    await Promise.all(this.#store.running().map((job) => this.stop(job, graceMs)));
    if (this.#prepared && this.#prepared.made.length > 0) {
      await this.#run('release', { made: this.#prepared.made }).catch((err: unknown) => {
        this.#logger.warn({ err: messageOf(err) }, 'could not remove the cgroup parent it made');
      });
    }
    await this.#pool.destroy();
  }
}

/**
 * SIGKILLs job-init when its thread died before the job started: it may not
 * have joined the job's cgroup yet, so a kill through the group cannot reach
 * it. Found by its arguments, which name the job's cgroup (the job's id),
 * among this process's children; nobody reaps a dead thread's children, so
 * such a pid is still job-init's, alive or a zombie, and cannot have been
 * reused. (The thread may die between spawning job-init and telling anyone
 * its pid: a message would not do.)
 */
function killOrphanedJobInit(jobId: string): void {
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid …: comm may hold spaces and parentheses, so read after the last ')'.
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== process.pid) continue;
      if (fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(jobId)) process.kill(Number(name), 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
}

function roundedMs<T extends Record<string, number>>(phases: T): T {
  return Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, Math.round(v * 100) / 100])) as T;
}
