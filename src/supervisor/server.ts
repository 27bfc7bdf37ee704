// Assembles the server: mutual-TLS listener, the JobService behind the RPC
// boundary, the job runner and its pool. startServer() is what jobworkerd and
// the integration tests run.
import { Server, ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import type { SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import { settlesWithin } from '../common/settle-within.js';
import { JobServiceService, type DataChunk, type GetJobsStreamReq } from '../gen/jobworker/v1/jobworker.js';
import type { CgroupDriverName, PrepareResult } from '../workers/protocol.js';
import { JobRunner } from './job-runner.js';
import { JobService } from './job-service.js';
import { JobStore } from './job-store.js';
import { thisHost, type HostCapacity } from './limits.js';
import { RpcBoundary } from './rpc-boundary.js';

const CALL_DRAIN_TIMEOUT_MS = 5_000;

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
  host?: HostCapacity;
  ringCapacity?: number;
}

export interface RunningServer {
  /** The port actually bound. */
  port: number;
  cgroup: PrepareResult;
  /** The job parent group relative to the mount root(s): where the job groups are. */
  cgroupParent: string;
  store: JobStore;
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
    const context: SecureContextOptions = { ca: material.ca, cert: material.cert, key: material.key, minVersion: 'TLSv1.3' };
    super({ requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, context);
  }

  _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const logger = options.logger;
  const store = new JobStore();
  const runner = new JobRunner(store, {
    workers: options.workers,
    cgroupDriver: options.cgroupDriver,
    cgroupParent: options.cgroupParent,
    cgroupDelegated: options.cgroupDelegated ?? false,
    cgroupMountRoot: options.cgroupMountRoot ?? '/sys/fs/cgroup',
    jobInitPath: options.jobInitPath,
    ringCapacity: options.ringCapacity,
    logger,
  });
  let cgroup: PrepareResult;
  try {
    cgroup = await runner.prepare();
  } catch (err) {
    await runner.close(0);
    throw err;
  }
  const service = new JobService({ store, runner, host: options.host ?? thisHost(), defaultGraceMs: options.stopGraceMs });
  const boundary = new RpcBoundary(logger);

  const server = new Server({
    // Bounded request size: a CreateJob is small; anything near this is abuse.
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
  });
  server.addService(JobServiceService, {
    createJob: boundary.unary('CreateJob', async (caller, req) => ({ job: await service.createJob(caller, req) })),
    getJob: boundary.unary('GetJob', async (_caller, req) => ({ job: await service.getJob(req) })),
    stopJob: boundary.unary('StopJob', async (_caller, req) => ({ job: await service.stopJob(req) })),
    getJobs: boundary.unary('GetJobs', () => ({ jobs: service.getJobs() })),
    getJobsStream: boundary.serverStream('GetJobsStream', (_caller, call: ServerWritableStream<GetJobsStreamReq, DataChunk>) =>
      service.streamOutput(call),
    ),
  });

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(options.listen, new MutualTlsCredentials(options.tls), (err, bound) => (err ? reject(err) : resolve(bound)));
    });
  } catch (err) {
    await runner.close(0);
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
  logger.info({ listen: options.listen, port, cgroupDriver: cgroup.driver, cgroupParent: `/${cgroup.parent}`, controllers: cgroup.controllers }, 'jobworkerd listening');

  let closing: Promise<void> | undefined;
  const shutdown = (): Promise<void> =>
    (closing ??= (async () => {
      // Refuse new calls at once; calls in flight (streams following jobs)
      // end when their jobs do, which runner.close() brings about.
      const drained = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await runner.close(options.stopGraceMs);
      // Every job has ended, so following streams are finishing; a client
      // that stopped reading must not hold the server up for ever.
      if (!(await settlesWithin(drained, CALL_DRAIN_TIMEOUT_MS))) {
        logger.warn({ timeoutMs: CALL_DRAIN_TIMEOUT_MS }, 'calls still open at shutdown; cancelling them');
        server.forceShutdown();
      }
      logger.info('jobworkerd stopped');
    })());

  return { port, cgroup, cgroupParent: cgroup.parent, store, shutdown };
}
