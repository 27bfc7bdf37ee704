// Assembles the server: mutual-TLS listener, the JobService behind the RPC
// boundary, the job runner and its pool. startServer() is what jobworkerd and
// the integration tests run.
import { Server, ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import { settlesWithin } from '../common/settle-within.js';
import { JobServiceService, type DataChunk, type GetJobsStreamReq } from '../gen/jobworker/v1/jobworker.js';
import type { CgroupDriverName, OutputPath, PrepareResult } from '../workers/protocol.js';
import { encodeDataChunk } from './rpc/chunk-encoder.js';
import { JobRunner } from './jobs/runner.js';
import { JobService } from './rpc/job-service.js';
import { HistoryError, JobHistory, type HistoryProblem, type StoredJob } from './jobs/history.js';
import { JobStore } from './jobs/store.js';
import { OutputLog, jobLogOptions, makeOutputRoot } from './output/log.js';
import { Retention } from './jobs/retention.js';
import { thisHost, type HostCapacity } from './policy/limits.js';
import { DenyList } from './rpc/deny-list.js';
import { DEFAULT_ISOLATION, hiddenPaths, makePolicy, type IsolationConfig } from './policy/isolation.js';
import { RpcBoundary } from './rpc/boundary.js';
import { addStandardServices } from './rpc/standard-services.js';
import { ServerMetrics } from './ops/metrics.js';
import { startMetricsEndpoint, type MetricsEndpoint } from './ops/metrics-endpoint.js';

const CALL_DRAIN_TIMEOUT_MS = 5_000;
export const MAX_STREAMS_PER_CONNECTION = 128;

export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

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
  /** Default: every namespace, no network, user nobody, nothing more allowed. */
  isolation?: IsolationConfig;
  /** The server's private key files, whose directories jobs must not see. */
  keyFiles?: string[];
  /** host:port for GET /metrics (plain HTTP on loopback, mutual TLS elsewhere); none by default. */
  metricsListen?: string;
  /** The window of the event-loop metrics; default 10 s (tests shorten it). */
  loopWindowMs?: number;
}

export const DEFAULT_MAX_OUTPUT_BYTES = 1024 ** 3;
export const DEFAULT_RETAIN_JOBS = 10_000;
export const DEFAULT_RETAIN_FOR_MS = 7 * 24 * 3600_000;
/** Output directories opened at once when reading back the history. */
const OPEN_CONCURRENCY = 16;

export interface RunningServer {
  /** The port actually bound. */
  port: number;
  /** The metrics endpoint's port, when --metrics-listen is given. */
  metricsPort: number | null;
  cgroup: PrepareResult;
  /** The job parent group relative to the mount root(s): where the job groups are. */
  cgroupParent: string;
  store: JobStore;
  /**
   * New connections use this material from now on; open ones keep theirs.
   * Throws (and changes nothing) when it does not make a TLS context, e.g. a
   * key that does not match its certificate.
   */
  setTls(material: TlsMaterial): void;
  /** Checked on every call from now on, on open connections too. */
  setDenyList(denyList: DenyList): void;
  /** Stops accepting calls, stops every running job, removes their cgroups. */
  shutdown(): Promise<void>;
}

/**
 * TLS 1.3 only, client certificate required and verified against the CA.
 * grpc-js's createSsl cannot set a minimum version, so the options go to the
 * HTTP/2 server through ServerCredentials' own constructor.
 */
class MutualTlsCredentials extends ServerCredentials {
  constructor(material: TlsMaterial) {
    super({ requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, contextOptions(material));
  }

  /**
   * Checked before it is handed over: grpc-js answers a context it cannot
   * set by refusing every new connection.
   */
  update(material: TlsMaterial): void {
    const options = contextOptions(material);
    createSecureContext(options);
    this.updateSecureContextOptions(options);
  }

  _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

function contextOptions(material: TlsMaterial): SecureContextOptions {
  return { ca: material.ca, cert: material.cert, key: material.key, minVersion: 'TLSv1.3' };
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const logger = options.logger;
  // Before anything is opened: a policy that does not hold is a configuration error.
  const hidden = hiddenPaths(options.dataDir, options.keyFiles ?? []);
  const isolation = makePolicy(options.isolation ?? DEFAULT_ISOLATION, hidden);
  const problems: HistoryProblem[] = [];
  const history = JobHistory.open(options.dataDir, problems);
  const maxOutputBytes = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  let outputRoot: string;
  let earlier: Awaited<ReturnType<typeof openOutputs>>;
  try {
    outputRoot = makeOutputRoot(options.dataDir);
    earlier = await openOutputs(history.load(problems), outputRoot, maxOutputBytes, logger);
    // Rows that did not parse keep their output: the history still has them.
    const known = new Set([...earlier.map(({ job }) => job.id), ...problems.map((p) => p.jobId).filter((id) => id !== null)]);
    await removeOrphanOutputs(outputRoot, known, logger);
  } catch (err) {
    history.close();
    // Like a data directory it cannot create: the operator's to fix, exit 2.
    throw new HistoryError((err as Error).message);
  }
  for (const problem of problems) logger.error(problem, 'job history: not everything could be read back');
  for (const { job, log } of earlier) if (log.problem) logger.error({ jobId: job.id, problem: log.problem }, 'job output: not everything could be read back');
  const store = new JobStore(history);
  const metrics = new ServerMetrics(options.loopWindowMs);
  const retention = new Retention(store, { jobs: options.retainJobs ?? DEFAULT_RETAIN_JOBS, forMs: options.retainForMs ?? DEFAULT_RETAIN_FOR_MS }, logger);
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
    onJobEnded: () => retention.prune(),
    ringCapacity: options.ringCapacity,
    outputPath: options.outputPath,
    logger,
    metrics,
  });
  metrics.attach({ jobs: () => store.list(), supervisorThreads: () => runner.threadIds });
  let cgroup: PrepareResult;
  try {
    cgroup = await runner.prepare();
    // After prepare(): it has killed whatever the jobs that were running left in their groups.
    const { interrupted, unrecorded } = store.restore(earlier, new Date());
    for (const err of unrecorded) logger.error({ jobId: err.jobId, err: err.reason }, 'could not record an interrupted job as FAILED');
    if (earlier.length > 0) logger.info({ jobs: earlier.length, interrupted: interrupted.length }, 'job history read back');
    for (const jobId of interrupted) logger.warn({ jobId }, 'a job was running when the server stopped: recorded FAILED');
    retention.start();
  } catch (err) {
    await runner.close(0);
    history.close();
    metrics.stop();
    throw err;
  }
  const service = new JobService({ store, runner, metrics, host: options.host ?? thisHost(), isolation, defaultGraceMs: options.stopGraceMs });
  const boundary = new RpcBoundary(logger, options.auditLogger ?? logger.child({ audit: true }), metrics);
  boundary.denyList = options.denyList ?? DenyList.EMPTY;
  const tlsCredentials = new MutualTlsCredentials(options.tls);

  const server = new Server({
    // Bounded request size: a CreateJob is small; anything near this is abuse.
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
    // One connection cannot hold more than this many calls open at once; its
    // client queues the rest. Enough for a harness following 100 jobs.
    'grpc.max_concurrent_streams': MAX_STREAMS_PER_CONNECTION,
    // Dead peers (a client host that vanished) are found and their
    // connections closed, streams included.
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
    'grpc.max_connection_idle_ms': 15 * 60_000,
    // Clients reconnect at least hourly, so a client certificate that has
    // expired or whose CA left the bundle stops working within the hour
    // (the deny list needs no reconnect); calls in flight are let finish.
    'grpc.max_connection_age_ms': 60 * 60_000,
  });
  const definition = {
    ...JobServiceService,
    getJobsStream: { ...JobServiceService.getJobsStream, responseSerialize: encodeDataChunk },
  };
  const health = addStandardServices(server);
  server.addService(definition, {
    createJob: boundary.unary('CreateJob', async (caller, req) => ({ job: await service.createJob(caller, req) })),
    getJob: boundary.unary('GetJob', async (_caller, req) => ({ job: await service.getJob(req) })),
    stopJob: boundary.unary('StopJob', async (_caller, req) => ({ job: await service.stopJob(req) })),
    getJobs: boundary.unary('GetJobs', (_caller, req) => service.getJobs(req)),
    getJobsStream: boundary.serverStream('GetJobsStream', (_caller, call: ServerWritableStream<GetJobsStreamReq, DataChunk>) =>
      service.streamOutput(call),
    ),
  });

  let port: number;
  let metricsEndpoint: MetricsEndpoint | undefined;
  try {
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(options.listen, tlsCredentials, (err, bound) => (err ? reject(err) : resolve(bound)));
    });
    if (options.metricsListen) {
      metricsEndpoint = await startMetricsEndpoint({
        listen: options.metricsListen,
        registry: metrics.registry,
        tls: options.tls,
        denyList: () => boundary.denyList,
        logger,
      });
    }
  } catch (err) {
    server.forceShutdown();
    retention.stop();
    await runner.close(0);
    history.close();
    metrics.stop();
    throw err;
  }
  for (const stale of cgroup.stale) {
    if (stale.error) logger.error(stale, 'could not clean up a job cgroup left by an earlier run');
    else logger.warn(stale, 'removed a job cgroup left by an earlier run');
  }
  if (options.cgroupDelegated && cgroup.driver === 'v1') {
    logger.warn('--cgroup-delegated applies to cgroup v2 only: under v1, job groups go under each hierarchy\'s root');
  }
  if (cgroup.movedTo) logger.info({ cgroup: `/${cgroup.movedTo}` }, 'moved the server into a leaf of its delegated cgroup');
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
      // Jobs end even on a full disk (once its processes are gone a job's
      // output is not held back for the disk).
      await runner.close(options.stopGraceMs);
      // Every job's end is recorded; nothing writes after this (output the
      // disk still refuses is given up, and logged).
      history.close();
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
    setTls: (material) => {
      tlsCredentials.update(material);
      metricsEndpoint?.setTls(material);
    },
    setDenyList: (denyList) => {
      boundary.denyList = denyList;
    },
    shutdown,
  };
}

/** Each job's output, checked; OPEN_CONCURRENCY directories at a time. */
async function openOutputs(jobs: StoredJob[], root: string, maxBytes: number, logger: Logger): Promise<{ job: StoredJob; log: OutputLog }[]> {
  const opened: { job: StoredJob; log: OutputLog }[] = new Array(jobs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const i = next++;
      const job = jobs[i]!;
      opened[i] = { job, log: await OutputLog.open(jobLogOptions(root, job.id, maxBytes, logger), job.outputBytes) };
    }
  };
  await Promise.all(Array.from({ length: OPEN_CONCURRENCY }, worker));
  return opened;
}

/**
 * Output directories of jobs the history does not have (their row was never
 * written, or pruned while the files could not be deleted): nobody can ask
 * for them, so they go.
 */
async function removeOrphanOutputs(root: string, known: ReadonlySet<string>, logger: Logger): Promise<void> {
  for (const name of await readdir(root)) {
    if (known.has(name)) continue;
    await rm(path.join(root, name), { recursive: true, force: true });
    logger.warn({ dir: path.join(root, name) }, 'removed the output of a job the history does not have');
  }
}
