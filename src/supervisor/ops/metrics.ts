// The server's Prometheus metrics (README, "Metrics"). Events are counted as
// they happen on the main thread; what lives elsewhere — the job store, the
// supervisor threads' counters and event loops — is read at scrape time.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { LOOP_WINDOW_MS, monitorLoop, type LoopWindow } from '../../common/loop-monitor.js';
import { CGROUP_OPS, ThreadStats, type ThreadStatsSnapshot } from '../../workers/thread-stats.js';
import type { JobRecord, JobState } from '../jobs/record.js';
import type { OutputLog } from '../output/log.js';
import type { PumpTarget } from '../output/ring-reader.js';

/** What a scrape reads from the rest of the server. */
export interface MetricSources {
  jobs(): Iterable<Pick<JobRecord, 'state'>>;
  /** Thread ids of the supervisor threads alive now. */
  supervisorThreads(): number[];
}

const JOB_STATES = ['WAITING', 'RUNNING', 'COMPLETED', 'FAILED', 'STOPPED', 'TIMED_OUT'] as const;

/** How a job ended, as jobworker_job_ends_total counts it: an OOM kill is its own outcome. */
type JobEndOutcome = 'completed' | 'failed' | 'stopped' | 'timed_out' | 'oom';

const END_OUTCOMES: Record<JobState, JobEndOutcome> = { WAITING: 'failed', RUNNING: 'failed', COMPLETED: 'completed', FAILED: 'failed', STOPPED: 'stopped', TIMED_OUT: 'timed_out' };

export class ServerMetrics {
  readonly registry = new Registry();
  /** Shared with every supervisor thread (their piscina workerData). */
  readonly threadStats = new ThreadStats();
  #sources: MetricSources | undefined;
  #mainLoop: LoopWindow = { lagP99Seconds: 0, lagMaxSeconds: 0, utilization: 0 };
  readonly #stopLoop: () => void;

  readonly jobStarts = new Counter({
    name: 'jobworker_job_starts_total',
    help: 'CreateJob calls that reached the runner, by result: started, or the start failure (exec_failed, isolation_failed, cgroup_setup_failed, spawn_failed, not_recorded…)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly jobEnds = new Counter({
    name: 'jobworker_job_ends_total',
    help: 'Jobs that ended, by outcome: completed (exit 0), failed, stopped, timed_out (stopped by its deadline), oom (killed by its memory limit)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly startDuration = new Histogram({
    name: 'jobworker_job_start_duration_seconds',
    help: 'From CreateJob reaching the runner to the command exec\'d: cgroup, job-init, namespaces',
    buckets: [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10],
    registers: [this.registry],
  });

  readonly rpcs = new Counter({
    name: 'jobworker_rpcs_total',
    help: 'Calls handled, by method and gRPC status code (OK, NOT_FOUND, PERMISSION_DENIED…)',
    labelNames: ['method', 'code'] as const,
    registers: [this.registry],
  });

  readonly rpcDuration = new Histogram({
    name: 'jobworker_rpc_duration_seconds',
    help: "Time from a unary call's arrival to its answer (GetJobsStream, which lasts as long as its job, is left out)",
    labelNames: ['method'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });

  readonly openStreams = new Gauge({
    name: 'jobworker_output_streams_open',
    help: 'GetJobsStream calls sending output now',
    registers: [this.registry],
  });

  readonly capturedBytes = new Counter({
    name: 'jobworker_output_captured_bytes_total',
    help: 'Bytes of job output (stdout and stderr) taken into the output logs',
    registers: [this.registry],
  });

  readonly sentBytes = new Counter({
    name: 'jobworker_output_sent_bytes_total',
    help: 'Bytes of job output sent to GetJobsStream clients',
    registers: [this.registry],
  });

  /** loopWindowMs: the window of the event-loop figures, for every thread (tests shorten it). */
  constructor(readonly loopWindowMs = LOOP_WINDOW_MS) {
    const stats = this.threadStats;
    const sources = (): MetricSources | undefined => this.#sources;
    new Gauge({
      name: 'jobworker_jobs',
      help: 'Jobs the server holds, by state (ended ones until the retention prunes them)',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const counts = new Map<string, number>(JOB_STATES.map((state) => [state, 0]));
        for (const job of sources()?.jobs() ?? []) counts.set(job.state, (counts.get(job.state) ?? 0) + 1);
        for (const [state, count] of counts) this.set({ state: state.toLowerCase() }, count);
      },
    });
    // Totals the supervisor threads keep: the counter is set to them at each scrape.
    const fromThreads = (name: string, help: string, total: (snapshot: ThreadStatsSnapshot) => number): void => {
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.reset();
          this.inc(total(stats.snapshot()));
        },
      });
    };
    fromThreads('jobworker_ring_full_total', "Times a job's output ring filled up and its pipes were paused (the job then blocks in write(2))", (s) => s.ringFullEvents);
    fromThreads('jobworker_ring_blocked_seconds_total', "Time jobs' pipes spent paused on a full output ring, summed over jobs", (s) => s.ringBlockedSeconds);
    new Counter({
      name: 'jobworker_cgroup_failures_total',
      help: 'cgroup operations that failed, by operation: create (group and limits), kill, remove, read (usage, OOM events)',
      labelNames: ['op'] as const,
      registers: [this.registry],
      collect() {
        const { cgroupFailures } = stats.snapshot();
        this.reset();
        for (const op of CGROUP_OPS) this.inc({ op }, cgroupFailures[op]);
      },
    });
    const loops = (): { thread: string; window: LoopWindow }[] => {
      const live = new Set(sources()?.supervisorThreads() ?? []);
      const threads = stats.snapshot().threads.filter((t) => live.has(t.threadId));
      return [{ thread: 'main', window: this.#mainLoop }, ...threads.map((t) => ({ thread: `supervisor-${t.threadId}`, window: t }))];
    };
    const loopGauge = (name: string, help: string, value: (window: LoopWindow) => number): void => {
      new Gauge({
        name,
        help: `${help}, over the last ${loopWindowMs / 1000} s; thread: main or supervisor-<thread id>`,
        labelNames: ['thread'] as const,
        registers: [this.registry],
        collect() {
          this.reset();
          for (const { thread, window } of loops()) this.set({ thread }, value(window));
        },
      });
    };
    loopGauge('jobworker_event_loop_lag_p99_seconds', "99th percentile of the thread's event-loop lag", (w) => w.lagP99Seconds);
    loopGauge('jobworker_event_loop_lag_max_seconds', "Longest event-loop lag of the thread", (w) => w.lagMaxSeconds);
    loopGauge('jobworker_event_loop_utilization_ratio', "Share of the time the thread's event loop was busy (0 to 1)", (w) => w.utilization);
    collectDefaultMetrics({ register: this.registry });
    this.#stopLoop = monitorLoop((window) => {
      this.#mainLoop = window;
    }, loopWindowMs);
  }

  /** Where scrapes read the jobs and the live supervisor threads from; set once both exist. */
  attach(sources: MetricSources): void {
    this.#sources = sources;
  }

  jobEnded(record: Pick<JobRecord, 'state' | 'oomKilled'>): void {
    const outcome: JobEndOutcome = record.oomKilled ? 'oom' : END_OUTCOMES[record.state];
    this.jobEnds.inc({ outcome });
  }

  /**
   * The log, counting what is appended to it (jobworker_output_captured_bytes_total)
   * once started() is called: what a job that never started wrote (job-init's
   * reason) goes with its log.
   */
  countingCapture(log: OutputLog): PumpTarget & Pick<OutputLog, 'closed'> & { started(): void } {
    const captured = this.capturedBytes;
    let pending = 0;
    let counting = false;
    return {
      append: (stream, bytes, time) => {
        if (counting) captured.inc(bytes.length);
        else pending += bytes.length;
        log.append(stream, bytes, time);
      },
      started: () => {
        counting = true;
        if (pending > 0) captured.inc(pending);
      },
      room: () => log.room(),
      whenRoom: () => log.whenRoom(),
      get closed() {
        return log.closed;
      },
    };
  }

  stop(): void {
    this.#stopLoop();
  }
}
