// A real jobworkerd for integration tests: a fresh dev PKI in a temp dir, the
// server on a loopback port chosen by the kernel, real cgroups under a parent
// of this test process's own, and clients for either role.
import { readdir, readFile, rm, rmdir, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { writeDevPki } from '../../certs/pki.js';
import { openChannel, unary } from '../../src/client/channel.js';
import type { DataChunk, Job, JobServiceClient } from '../../src/gen/jobworker/v1/jobworker.js';
import { GetJobsStreamReq, OutputStream } from '../../src/gen/jobworker/v1/jobworker.js';
import type { IsolationConfig } from '../../src/supervisor/policy/isolation.js';
import { startServer, type RunningServer, type ServerOptions } from '../../src/supervisor/server.js';
import { groupsUnder } from './host.js';
import { jobInitPath } from './paths.js';

import { type PartialRequestOf } from '../../src/client/channel.js';
export { unary, type PartialRequestOf } from '../../src/client/channel.js';

export type Role = 'admin' | 'viewer';

/**
 * For tests whose jobs share files with the test itself (inputs, fifos,
 * go-files): the trusted setup of jobworkerd --isolation-default none, jobs
 * as root in the host's namespaces. What isolation keeps out is tested on its
 * own (isolation.test.ts).
 */
export const HOST_VIEW: IsolationConfig = { default: 'none', allowHostNetwork: false, allowHostNamespaces: false, allowRootJobs: true, defaultUser: 'root' };
/** The same as jobworkerd flags. */
export const HOST_VIEW_FLAGS = ['--isolation-default', 'none', '--allow-root-jobs', '--default-user', 'root'];

/** What the helper needs of an ava ExecutionContext (tests and hooks both have it). */
export interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface TestServer {
  /** 127.0.0.1:<port> */
  address: string;
  /** Directory holding the dev PKI: ca-cert.pem, client-admin-cert.pem, … */
  pki: string;
  server: RunningServer;
  /** A new client with the role's certificate; closed by stop(). */
  client(role?: Role): JobServiceClient;
  /** JOBWORKER_* variables that point jobctl at this server with the role's certificate. */
  env(role?: Role): Record<string, string>;
  /** Shuts the server down and removes the PKI and the cgroup parent. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * One parent per server: ava runs test files in parallel processes, and a
 * server clears out every job group under its parent when it starts.
 */
let servers = 0;
const nextCgroupParent = (): string => `jobworker-test-${process.pid}-${++servers}`;
const CGROUP_ROOT = '/sys/fs/cgroup';

export async function startTestServer(t?: Teardown, overrides: Partial<ServerOptions> = {}): Promise<TestServer> {
  const pki = await mkdtemp(path.join(os.tmpdir(), 'jobworker-test-pki-'));
  const cgroupParent = nextCgroupParent();
  let server: RunningServer;
  try {
    await writeDevPki(pki);
    const file = (name: string) => readFile(path.join(pki, name));
    server = await startServer({
      listen: '127.0.0.1:0',
      tls: { ca: await file('ca-cert.pem'), cert: await file('server-cert.pem'), key: await file('server-key.pem') },
      cgroupDriver: 'auto',
      cgroupParent,
      workers: 2,
      stopGraceMs: 100,
      jobInitPath,
      logger: pino({ level: 'silent' }),
      // Beside the PKI, so stop() removes it with it.
      dataDir: path.join(pki, 'data'),
      ...overrides,
    });
  } catch (err) {
    await rm(pki, { recursive: true, force: true });
    // A start that failed after the pool prepared the parent group leaves it empty.
    await removeCgroupParent(cgroupParent);
    throw err;
  }

  const address = `127.0.0.1:${server.port}`;
  const clients: JobServiceClient[] = [];
  const env = (role: Role = 'admin'): Record<string, string> => ({
    JOBWORKER_SERVER: address,
    JOBWORKER_CA: path.join(pki, 'ca-cert.pem'),
    JOBWORKER_CERT: path.join(pki, `client-${role}-cert.pem`),
    JOBWORKER_KEY: path.join(pki, `client-${role}-key.pem`),
  });
  const client = (role: Role = 'admin'): JobServiceClient => {
    const vars = env(role);
    // By name, not IP: grpc-js sends the host as TLS ServerName, and Node
    // warns (DEP0123) in the test's output for an IP. The server
    // certificate names localhost too.
    const made = openChannel({ server: `localhost:${server.port}`, ca: vars.JOBWORKER_CA!, cert: vars.JOBWORKER_CERT!, key: vars.JOBWORKER_KEY! });
    clients.push(made);
    return made;
  };

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      for (const made of clients) made.close();
      try {
        await server.shutdown();
        // Every job ends with its cgroup removed: a leftover fails the test.
        const leftovers = groupsUnder(server.cgroupParent);
        if (leftovers.length > 0) throw new Error(`job cgroups left behind: ${leftovers.join(', ')}`);
      } finally {
        await rm(pki, { recursive: true, force: true });
        await removeCgroupParent(server.cgroupParent);
      }
    })());

  t?.teardown(stop);
  return { address, pki, server, client, env, stop };
}

/**
 * rmdir of the parent in every hierarchy. Best effort: it is still busy
 * while another server of this process has jobs, and that server's own
 * stop() removes it later.
 */
async function removeCgroupParent(parent: string): Promise<void> {
  let hierarchies: string[];
  try {
    hierarchies = await readdir(CGROUP_ROOT);
  } catch {
    return;
  }
  await Promise.all(
    [CGROUP_ROOT, ...hierarchies.map((name) => path.join(CGROUP_ROOT, name))].map(async (dir) => {
      try {
        await rmdir(path.join(dir, parent));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'EBUSY' && code !== 'ENOTEMPTY' && code !== 'ENOTDIR') throw err;
      }
    }),
  );
}

// ---------------------------------------------------------------------------
// Reading jobs through the API

export interface CollectedOutput {
  stdout: Buffer;
  stderr: Buffer;
  chunks: DataChunk[];
}

/** Reads a GetJobsStream call to its end; with follow, that is once the job has ended. */
export async function collectStream(client: JobServiceClient, request: Partial<GetJobsStreamReq>): Promise<CollectedOutput> {
  const chunks: DataChunk[] = [];
  for await (const chunk of client.getJobsStream(GetJobsStreamReq.fromPartial(request)) as AsyncIterable<DataChunk>) chunks.push(chunk);
  const of = (stream: OutputStream) => Buffer.concat(chunks.filter((chunk) => chunk.stream === stream).map((chunk) => chunk.data));
  return { stdout: of(OutputStream.OUTPUT_STREAM_STDOUT), stderr: of(OutputStream.OUTPUT_STREAM_STDERR), chunks };
}

/**
 * Waits until the job has ended, without polling: a following stream ends
 * only then. Returns the ended job and its whole output.
 */
export async function waitForEnd(client: JobServiceClient, id: string): Promise<{ job: Job; output: CollectedOutput }> {
  const output = await collectStream(client, { id, follow: true });
  const { job } = await unary(client, 'getJob', { id });
  if (!job) throw new TypeError(`GetJob ${id} answered without a job`);
  return { job, output };
}

/** Resolves once the job has written something, without holding a stream open. */
export async function firstOutput(client: JobServiceClient, id: string): Promise<void> {
  const follower = client.getJobsStream(GetJobsStreamReq.fromPartial({ id, follow: true }));
  follower.on('error', () => undefined); // CANCELLED, from our own cancel()
  await new Promise((resolve) => follower.once('data', resolve));
  follower.cancel();
}

/** Every job GetJobs has for the request, following the page tokens. */
export async function listAll(client: JobServiceClient, request: PartialRequestOf<'getJobs'>): Promise<Job[]> {
  const jobs: Job[] = [];
  let pageToken = '';
  do {
    const page = await unary(client, 'getJobs', { ...request, pageToken });
    jobs.push(...page.jobs);
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  return jobs;
}

/** The error a call that must fail failed with. */
export async function rejects(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error('expected the call to fail');
}
