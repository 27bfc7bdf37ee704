// Assembles the server: the job history read back, the job runner and its
// pool, the JobService behind the RPC boundary on a mutual-TLS listener, the
// metrics endpoint. startServer() is what jobworkerd and the integration
// tests run. A fleet node is the same server with a second backend in front
// of the local one (ServerOptions.backend, made in src/fleet).
import type { Logger } from 'pino';
import { Releasers } from '../common/releasers.js';
import { settlesWithin } from '../common/settle-within.js';
import type { CgroupDriverName, OutputPath, PrepareResult } from '../workers/protocol.js';
import { endInterrupted, readBack } from './jobs/recovery.js';
import { Retention } from './jobs/retention.js';
import { JobRunner } from './jobs/runner.js';
import { JobStore } from './jobs/store.js';
import { startMetricsEndpoint, type MetricsEndpoint } from './ops/metrics-endpoint.js';
import { ServerMetrics } from './ops/metrics.js';
import { DEFAULT_ISOLATION, hiddenPaths, makePolicy, type IsolationConfig } from './policy/isolation.js';
import { thisHost, type HostCapacity } from './policy/limits.js';
import type { DeadlinePolicy } from './policy/job-meta.js';
import { RpcBoundary } from './rpc/boundary.js';
import { DenyList } from './rpc/deny-list.js';
import { QuotaLedger } from './jobs/quota-ledger.js';
import { WaitingJobs } from './jobs/waiting-jobs.js';
import { ScheduleBook, type ScheduleStore } from './schedules/schedule-book.js';
import { localJobs, type ScheduledJobs } from './schedules/scheduled-jobs.js';
import { Scheduler } from './schedules/scheduler.js';
import { QuotaRules } from './policy/quotas.js';
import { CallQuota } from './rpc/call-quota.js';
import { bind, createGrpcServer, type FleetServices } from './rpc/grpc-server.js';
import type { JobApi } from './rpc/job-api.js';
import { JobService } from './rpc/job-service.js';
import type { JobRecord } from './jobs/record.js';
import { MutualTlsCredentials, type TlsMaterial } from './rpc/tls-credentials.js';

const CALL_DRAIN_TIMEOUT_MS = 5_000;

export interface ServerOptions {
  /** host:port; port 0 picks a free one. */
  listen: string;
  tls: TlsMaterial;
  cgroupDriver: CgroupDriverName | 'auto';
  cgroupParent: string;
  /** cgroup v2: the server's own group is delegated to it (systemd Delegate=yes). */
  cgroupDelegated?: boolean;
  cgroupMountRoot?: string;
  workers: number;
  stopGraceMs: number;
  jobInitPath: string;
  logger: Logger;
  /** One line per call; default: the main log, lines marked `audit: true`. */
  auditLogger?: Logger;
  denyList?: DenyList;
  /** --quota-file's rules; default: none, nobody is limited. */
  quotas?: QuotaRules;
  host?: HostCapacity;
  /** Where job records (jobs.db) and output (output/) are kept across restarts. */
  dataDir: string;
  /** Per job; past this its oldest output is discarded. Default 1 GiB. */
  maxOutputBytes?: number;
  /** Ended jobs kept at most; default 10,000. */
  retainJobs?: number;
  /** Ended jobs are kept this long; default 7 days. */
  retainForMs?: number;
  ringCapacity?: number;
  outputPath?: OutputPath;
  /** From job-init's spawn to its exec, before the start fails; default 30 s (tests shorten it). */
  startTimeoutMs?: number;
  /** Default: every namespace, no network, user nobody, nothing more allowed. */
  isolation?: IsolationConfig;
  /** The server's private key files, whose directories jobs must not see. */
  keyFiles?: string[];
  /** host:port for GET /metrics (plain HTTP on loopback, mutual TLS elsewhere); none by default. */
  metricsListen?: string;
  /** The window of the event-loop metrics; default 10 s (tests shorten it). */
  loopWindowMs?: number;
  /**
   * Aborted (SIGTERM during a long start): startup finishes what it has
   * begun — reading back the history, clearing a crash's cgroups — then
   * undoes itself instead of serving, and rejects with StartAbortedError.
   */
  signal?: AbortSignal;
  /** Another backend in front of the local one (a fleet node's); default: this host's jobs alone. */
  backend?: BackendFactory;
  /** jobworkerd --default-timeout and --max-timeout; default: no deadline unless a job asks, any up to MAX_TIMEOUT_MS. */
  deadlines?: DeadlinePolicy;
}

const NO_DEADLINES: DeadlinePolicy = { defaultMs: null, maxMs: null };

/** What a backend is made from: the local server's parts. */
export interface LocalParts {
  service: JobService;
  store: JobStore;
  metrics: ServerMetrics;
  logger: Logger;
  /** How long an ended job is kept (--retain-for). */
  retainForMs: number;
}

/**
 * A backend that answers the API in front of the local JobService (a fleet
 * node's). Made before the port is bound; joins once it is.
 */
export interface Backend {
  api: JobApi;
  services: FleetServices;
  /** A job of this host has ended and its end is recorded locally. */
  jobEnded(record: JobRecord): void;
  /** An ended job was pruned here (--retain-jobs, --retain-for). */
  jobPruned(record: JobRecord): void;
  /** The port is bound: the backend may tell others where this server is. */
  join(port: number): Promise<void>;
  /** Shutdown has begun (jobs are about to be stopped): take no new work, tell others. */
  leaving(): Promise<void>;
  /** After every local job has ended: leave, after what the jobs' ends still have to write. */
  close(): Promise<void>;
  /** Where its schedules are kept and how their jobs are made (the Scheduler runs on them). */
  schedules: { book: ScheduleStore; jobs: ScheduledJobs; fleet: { node: string; syncEveryMs: number; policyWaitMs?: number } };
}

export type BackendFactory = (local: LocalParts) => Promise<Backend>;

export const DEFAULT_MAX_OUTPUT_BYTES = 1024 ** 3;
export const DEFAULT_RETAIN_JOBS = 10_000;
export const DEFAULT_RETAIN_FOR_MS = 7 * 24 * 3600_000;

export interface RunningServer {
  /** The port actually bound. */
  port: number;
  /** The metrics endpoint's port, when --metrics-listen is given. */
  metricsPort: number | null;
  cgroup: PrepareResult;
  /** The job parent group relative to the mount root(s): where the job groups are. */
  cgroupParent: string;
  store: JobStore;
  /** Thread ids of the supervisor threads alive now. */
  supervisorThreads(): number[];
  /** Ends a supervisor thread as a crash would: for tests of what the server does then. */
  endSupervisorThread(threadId: number): Promise<void>;
  /**
   * New connections use this material from now on; open ones keep theirs.
   * Throws (and changes nothing) when it does not make a TLS context, e.g. a
   * key that does not match its certificate.
   */
  setTls(material: TlsMaterial): void;
  /** Checked on every call from now on, on open connections too. */
  setDenyList(denyList: DenyList): void;
  /** Applied to every CreateJob from now on; what callers use so far counts against them. */
  setQuotas(rules: QuotaRules): void;
  /** Stops accepting calls, stops every running job, removes their cgroups. */
  shutdown(): Promise<void>;
}

/** The server was asked to stop while it started: everything it had made is undone. */
export class StartAbortedError extends Error {
  constructor() {
    super('stopped while starting');
    this.name = 'StartAbortedError';
  }
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const logger = options.logger;
  // Before anything is opened: a policy that does not hold is a configuration error.
  const hidden = hiddenPaths(options.dataDir, options.keyFiles ?? []);
  const isolation = makePolicy(options.isolation ?? DEFAULT_ISOLATION, hidden);
  const maxOutputBytes = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  // What startup has made so far, undone newest first if a later step fails.
  const made = new Releasers();
  // Made once the local server is; told of every job's end from then on.
  let backend: Backend | undefined;
  try {
    const { history, outputRoot, earlier } = await readBack(options.dataDir, maxOutputBytes, logger);
    made.push(() => history.close());
    const book = ScheduleBook.open(options.dataDir);
    made.push(() => book.close());
    const store = new JobStore(history);
    const metrics = new ServerMetrics(options.loopWindowMs);
    made.push(() => metrics.stop());
    // Made once the quotas are: told of every job's end, as retention and the backend are.
    let waiting: WaitingJobs | undefined;
    const jobEnded = (record: JobRecord): void => {
      waiting?.jobEnded(record);
      retention.prune();
      backend?.jobEnded(record);
    };
    const retainForMs = options.retainForMs ?? DEFAULT_RETAIN_FOR_MS;
    const retention = new Retention(store, { jobs: options.retainJobs ?? DEFAULT_RETAIN_JOBS, forMs: retainForMs }, logger);
    const runner = new JobRunner(store, {
      workers: options.workers,
      cgroupDriver: options.cgroupDriver,
      cgroupParent: options.cgroupParent,
      cgroupDelegated: options.cgroupDelegated ?? false,
      cgroupMountRoot: options.cgroupMountRoot ?? '/sys/fs/cgroup',
      jobInitPath: options.jobInitPath,
      outputRoot,
      maxOutputBytes,
      hide: [...hidden],
      onJobEnded: jobEnded,
      ringCapacity: options.ringCapacity,
      outputPath: options.outputPath,
      startTimeoutMs: options.startTimeoutMs,
      deadlineGraceMs: options.stopGraceMs,
      logger,
      metrics,
    });
    made.push(() => runner.close(0));
    metrics.attach({ jobs: () => store.values(), supervisorThreads: () => runner.threadIds });
    const cgroup = await runner.prepare();
    // After prepare(): it has killed whatever the jobs that were running left in their groups.
    const stillWaiting = endInterrupted(store, earlier, logger);
    logPrepared(cgroup, options, logger);
    if (options.signal?.aborted) throw new StartAbortedError();

    const quotas = new QuotaLedger(store, options.quotas ?? QuotaRules.NONE);
    const calls = new CallQuota();
    calls.rules = quotas.rules;
    waiting = new WaitingJobs({ store, runner, quotas, metrics, logger, outputRoot, maxOutputBytes, onJobEnded: jobEnded });
    made.push(() => waiting?.close());
    retention.isPinned = waiting.isPinned.bind(waiting);
    const service = new JobService({
      store,
      runner,
      metrics,
      host: options.host ?? thisHost(),
      isolation,
      defaultGraceMs: options.stopGraceMs,
      deadlines: options.deadlines ?? NO_DEADLINES,
      quotas,
      calls,
      waiting,
    });
    const boundary = new RpcBoundary(logger, options.auditLogger ?? logger.child({ audit: true }), metrics);
    boundary.denyList = options.denyList ?? DenyList.EMPTY;
    boundary.calls = calls;
    backend = options.backend ? await options.backend({ service, store, metrics, logger, retainForMs }) : undefined;
    if (backend) {
      made.push(backend.close.bind(backend));
      retention.onPruned = backend.jobPruned.bind(backend);
    }
    // A fleet's schedules are the fleet's (its store, its jobs); a single host's are in schedules.db.
    const scheduler = new Scheduler(backend ? { ...backend.schedules, logger } : { book, jobs: localJobs(service, store), logger });
    made.push(() => scheduler.close());
    // Read before the port is bound (every call sees them); fired once startup is done (start()).
    await scheduler.load();
    const tlsCredentials = new MutualTlsCredentials(options.tls);
    const { server, health } = createGrpcServer(backend?.api ?? service, scheduler, boundary, backend?.services);
    made.push(() => server.forceShutdown());
    const port = await bind(server, options.listen, tlsCredentials);
    await backend?.join(port);
    let metricsEndpoint: MetricsEndpoint | undefined;
    if (options.metricsListen) {
      metricsEndpoint = await startMetricsEndpoint({ listen: options.metricsListen, registry: metrics.registry, tls: options.tls, denyList: () => boundary.denyList, logger });
      made.push(() => metricsEndpoint?.close());
    }
    // Last, once nothing of startup can fail any more (a job started here would be stopped by its undoing).
    // A fleet's waiting jobs wait in etcd (fleet/waiting.ts): one that waited here as a single host's waited for its jobs, not the fleet's.
    waiting.resume(stillWaiting, backend ? 'this server is now a fleet node: a job that waited on it as a single host is not carried into the fleet' : undefined);
    // A fleet node leaves a single host's schedules on disk, unfired: it fires the fleet's.
    await scheduler.start();
    retention.start();
    made.push(() => retention.stop());
    // The pool and the cgroup driver are ready (prepare() ran), the port is bound.
    health.serving();
    logger.info({ listen: options.listen, port, cgroupDriver: cgroup.driver, cgroupParent: `/${cgroup.parent}`, controllers: cgroup.controllers }, 'jobworkerd listening');
    if (metricsEndpoint) logger.info({ listen: options.metricsListen, port: metricsEndpoint.port, mutualTls: metricsEndpoint.secure }, 'metrics at /metrics');

    let closing: Promise<void> | undefined;
    const shutdown = (): Promise<void> =>
      (closing ??= (async () => {
        // Probes watching the server hear it first (a Watch stream in flight gets the change).
        health.notServing();
        // Refuse new calls at once; calls in flight (streams following jobs)
        // end when their jobs do, which runner.close() brings about.
        const drained = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
        retention.stop();
        scheduler.close();
        waiting?.close();
        await backend?.leaving();
        // Jobs end even on a full disk (once its processes are gone a job's
        // output is not held back for the disk).
        await runner.close(options.stopGraceMs);
        // A firing in flight records how it went (a fleet's: before this node leaves, or another must judge it).
        await scheduler.settled();
        // The fleet hears of those ends before this node leaves it.
        await backend?.close();
        // Every job's end is recorded; nothing writes after this (output the
        // disk still refuses is given up, and logged).
        history.close();
        book.close();
        await Promise.all(store.list().map((job) => job.log.dispose()));
        // Every job has ended, so following streams are finishing; a client
        // that stopped reading must not hold the server up for ever.
        if (!(await settlesWithin(drained, CALL_DRAIN_TIMEOUT_MS))) {
          logger.warn({ timeoutMs: CALL_DRAIN_TIMEOUT_MS }, 'calls still open at shutdown; cancelling them');
          server.forceShutdown();
        }
        // Last: a scrape during the shutdown still sees it happen.
        await metricsEndpoint?.close();
        metrics.stop();
        logger.info('jobworkerd stopped');
      })());

    return {
      port,
      cgroup,
      cgroupParent: cgroup.parent,
      store,
      metricsPort: metricsEndpoint?.port ?? null,
      supervisorThreads: () => runner.threadIds,
      endSupervisorThread: (threadId) => runner.endThread(threadId),
      setTls: (material) => {
        tlsCredentials.update(material);
        metricsEndpoint?.setTls(material);
      },
      setDenyList: (denyList) => {
        boundary.denyList = denyList;
      },
      setQuotas: (rules) => {
        quotas.rules = rules;
        calls.rules = rules;
      },
      shutdown,
    };
  } catch (err) {
    await made.release().catch((releaseErr: unknown) => logger.error({ err: releaseErr }, 'could not undo everything a failed start had made'));
    throw err;
  }
}

/** What preparing the cgroups found and did, for the operator. */
function logPrepared(cgroup: PrepareResult, options: ServerOptions, logger: Logger): void {
  for (const stale of cgroup.stale) {
    if (stale.error) logger.error(stale, 'could not clean up a job cgroup left by an earlier run');
    else logger.warn(stale, 'removed a job cgroup left by an earlier run');
  }
  if (options.cgroupDelegated && cgroup.driver === 'v1') {
    logger.warn("--cgroup-delegated applies to cgroup v2 only: under v1, job groups go under each hierarchy's root");
  }
  if (cgroup.movedTo) logger.info({ cgroup: `/${cgroup.movedTo}` }, 'moved the server into a leaf of its delegated cgroup');
}
