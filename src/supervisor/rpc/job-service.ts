// The JobService RPCs. Callers are authenticated and authorized before a
// handler runs (rpc-boundary.ts); handlers validate their request and work on
// the store.
import { once } from 'node:events';
import type { ServerWritableStream } from '@grpc/grpc-js';
import {
  JobStatus,
  Network,
  OutputStream,
  type CreateJobReq,
  type DataChunk,
  type GetJobReq,
  type GetJobsReq,
  type GetJobsStreamReq,
  type Isolation,
  type Job,
  type StopJobReq,
} from '../../gen/jobworker/v1/jobworker.js';
import { StreamId, type JobIsolation } from '../../workers/protocol.js';
import type { Caller } from './authz.js';
import { Errors } from '../errors.js';
import { resolveIsolation, type IsolationPolicy } from '../policy/isolation.js';
import { jobEnvironment, parseEnv, resolveWorkdir } from '../policy/job-environment.js';
import type { JobRunner } from '../jobs/runner.js';
import type { JobRecord, JobState, JobStore } from '../jobs/store.js';
import { resolveLimits, type HostCapacity } from '../policy/limits.js';
import { OutputCursor, offsetOfLastLines, offsetSince } from '../output/cursor.js';
import { OutputUnreadableError } from '../output/log.js';
import type { ServerMetrics } from '../ops/metrics.js';

/** History goes out in pieces of at most this size, never as one message. */
export const MAX_CHUNK_BYTES = 64 * 1024;
export const MAX_COMMAND_BYTES = 4096;
export const MAX_ARGS = 4096;
export const MAX_ARGV_BYTES = 1024 * 1024;
/** Linux refuses any one exec argument longer than this (MAX_ARG_STRLEN, NUL included). */
export const MAX_ARG_BYTES = 128 * 1024 - 1;
export const MAX_GRACE_MS = 10 * 60 * 1000;
export const MAX_PAGE_SIZE = 10_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface ServiceOptions {
  store: JobStore;
  runner: JobRunner;
  metrics: ServerMetrics;
  host: HostCapacity;
  isolation: IsolationPolicy;
  defaultGraceMs: number;
}

export class JobService {
  constructor(readonly options: ServiceOptions) {}

  async createJob(caller: Caller, request: CreateJobReq): Promise<Job> {
    const requestedEnv = parseEnv(request.env);
    validateCommand(request.command, request.args, requestedEnv.bytes);
    const limits = resolveLimits(request.limits, this.options.host);
    const workdir = resolveWorkdir(request.workdir);
    const { isolation, user } = resolveIsolation(request.isolation, this.options.isolation);
    const env = jobEnvironment(user, requestedEnv);
    const record = await this.options.runner.start({ command: request.command, args: request.args, limits, isolation, workdir, env, owner: caller.cn });
    return toJob(record);
  }

  async getJob(request: GetJobReq): Promise<Job> {
    const record = this.#find(request.id);
    await this.options.runner.refreshUsage(record);
    return toJob(record);
  }

  /**
   * Newest first. A page token is the start time and id of the last job of
   * the previous page: the next page starts after that job, or, if it was
   * pruned meanwhile, with the first job that started before it.
   */
  getJobs(request: GetJobsReq): { jobs: Job[]; nextPageToken: string } {
    if (request.pageSize > MAX_PAGE_SIZE) throw Errors.invalidArgument(`page_size must be at most ${MAX_PAGE_SIZE}, got ${request.pageSize}`);
    if (request.status === JobStatus.UNRECOGNIZED || request.status === JobStatus.JOB_STATUS_INITIALIZING) {
      throw Errors.invalidArgument('status must be one of RUNNING, COMPLETED, FAILED, STOPPED');
    }
    const after = request.pageToken === '' ? null : parsePageToken(request.pageToken);
    const all = this.options.store.list();
    let i = all.length - 1;
    if (after) {
      const known = all.findLastIndex((job) => job.id === after.id);
      i = known >= 0 ? known - 1 : all.findLastIndex((job) => job.startedAt.getTime() < after.startedAt);
    }
    const limit = request.pageSize === 0 ? Number.POSITIVE_INFINITY : request.pageSize;
    const page: JobRecord[] = [];
    for (; i >= 0; i -= 1) {
      if (!matches(all[i]!, request)) continue;
      // One match past a full page: there is a next page, which starts after its last job.
      if (page.length === limit) return { jobs: page.map(toJob), nextPageToken: pageToken(page[page.length - 1]!) };
      page.push(all[i]!);
    }
    return { jobs: page.map(toJob), nextPageToken: '' };
  }

  async stopJob(request: StopJobReq): Promise<Job> {
    const record = this.#find(request.id);
    const graceMs = request.graceMs ?? this.options.defaultGraceMs;
    if (graceMs > MAX_GRACE_MS) throw Errors.invalidArgument(`grace_ms must be at most ${MAX_GRACE_MS}, got ${graceMs}`);
    await this.options.runner.stop(record, graceMs);
    return toJob(record);
  }

  /**
   * Sends the job's output from its first byte still kept, or from where
   * since/tail_lines say. The reader is a cursor into the job's log; a slow
   * client is held back by gRPC flow control (see WriteWindow) and never
   * gets more than a few chunks of its own.
   */
  async streamOutput(call: ServerWritableStream<GetJobsStreamReq, DataChunk>): Promise<void> {
    const { id, follow, since, tailLines, timestamps } = call.request;
    const record = this.#find(id);
    const { log } = record;
    const end = follow ? Number.POSITIVE_INFINITY : log.length;
    const gone = new AbortController();
    const onCancel = (): void => gone.abort();
    call.once('cancelled', onCancel);
    call.once('close', onCancel);
    const cursor = new OutputCursor(log, log.start);
    const window = new WriteWindow(call, gone.signal);
    const { openStreams, sentBytes } = this.options.metrics;
    openStreams.inc();
    try {
      if (since) cursor.offset = Math.max(cursor.offset, await offsetSince(log, since.getTime()));
      if (tailLines !== undefined) cursor.offset = Math.max(cursor.offset, await offsetOfLastLines(log, tailLines, log.length));
      let notYet = since !== undefined;
      while (cursor.offset < end) {
        // Frame by frame while each chunk's time matters: to timestamp it, or
        // until the first that arrived at or after since (times never decrease).
        const slice = await cursor.next(Math.min(MAX_CHUNK_BYTES, end - cursor.offset), timestamps || notYet);
        // A since still to come holds back what a follower gets until then.
        if (slice && notYet && slice.time < since!.getTime()) continue;
        if (slice) {
          notYet = false;
          const chunk: DataChunk = {
            data: slice.data,
            stream: slice.stream === StreamId.Stderr ? OutputStream.OUTPUT_STREAM_STDERR : OutputStream.OUTPUT_STREAM_STDOUT,
            offset: slice.offset,
            time: timestamps ? new Date(slice.time) : undefined,
          };
          await window.write(chunk);
          sentBytes.inc(chunk.data.length);
          continue;
        }
        if (log.closed) break;
        await log.waitFor(cursor.offset, gone.signal);
      }
      // The log closes before the job's end is recorded (that waits for the
      // disk): a follower told of the end must find it in GetJob.
      if (follow) await Promise.race([record.ended, once(gone.signal, 'abort')]);
    } catch (err) {
      // The client went away: nothing to send, nothing to report.
      if (gone.signal.aborted) return;
      if (err instanceof OutputUnreadableError) throw Errors.outputUnreadable(id, err.message);
      throw err;
    } finally {
      openStreams.dec();
      call.off('cancelled', onCancel);
      call.off('close', onCancel);
      await cursor.close();
    }
    // A client that left while the end was being recorded hears nothing more.
    if (!gone.signal.aborted) call.end();
  }

  #find(id: string): JobRecord {
    if (!UUID.test(id)) throw Errors.invalidArgument(`job id must be a UUID such as 123e4567-e89b-12d3-a456-426614174000, got ${JSON.stringify(truncate(id))}`);
    const record = this.options.store.get(id);
    if (!record) throw Errors.jobNotFound(id);
    return record;
  }
}

/** envBytes: what the environment takes of the same exec budget (parseEnv). */
function validateCommand(command: string, args: readonly string[], envBytes: number): void {
  if (command === '') throw Errors.invalidArgument('command must not be empty');
  if (Buffer.byteLength(command) > MAX_COMMAND_BYTES) throw Errors.invalidArgument(`command must be at most ${MAX_COMMAND_BYTES} bytes`);
  if (args.length > MAX_ARGS) throw Errors.invalidArgument(`at most ${MAX_ARGS} arguments, got ${args.length}`);
  let total = envBytes;
  for (const arg of [command, ...args]) {
    // exec takes NUL-terminated strings: a NUL would silently cut the argument.
    if (arg.includes('\0')) throw Errors.invalidArgument('command and arguments must not contain NUL bytes');
    const bytes = Buffer.byteLength(arg);
    if (bytes > MAX_ARG_BYTES) throw Errors.invalidArgument(`each argument must be at most ${MAX_ARG_BYTES} bytes (the kernel's limit), got one of ${bytes}`);
    total += bytes;
  }
  if (total > MAX_ARGV_BYTES) throw Errors.invalidArgument(`command, arguments and env must be at most ${MAX_ARGV_BYTES} bytes together, got ${total}`);
}

/** Chunks a stream may have handed to grpc-js and not yet seen written to the connection. */
const CHUNKS_IN_FLIGHT = 2;

/**
 * Holds a stream's writer back once CHUNKS_IN_FLIGHT chunks are queued.
 * grpc-js queues 16 messages per call before write() says false: at 64 KiB
 * a chunk, plus its encoded copy, a hundred followers held 2 MiB each.
 */
class WriteWindow {
  #inFlight = 0;
  #wake: (() => void) | undefined;

  constructor(
    readonly call: ServerWritableStream<GetJobsStreamReq, DataChunk>,
    readonly signal: AbortSignal,
  ) {
    // A cancelled call never calls back: the signal ends the wait.
    signal.addEventListener('abort', () => this.#wake?.(), { once: true });
  }

  async write(chunk: DataChunk): Promise<void> {
    this.#inFlight += 1;
    this.call.write(chunk, () => {
      this.#inFlight -= 1;
      this.#wake?.();
    });
    if (this.#inFlight < CHUNKS_IN_FLIGHT) return;
    try {
      while (this.#inFlight >= CHUNKS_IN_FLIGHT) {
        if (this.signal.aborted) throw this.signal.reason;
        await new Promise<void>((resolve) => (this.#wake = resolve));
      }
    } finally {
      this.#wake = undefined;
    }
  }
}

function matches(job: JobRecord, request: GetJobsReq): boolean {
  return (request.status === JobStatus.JOB_STATUS_UNSPECIFIED || STATUS[job.state] === request.status) && (request.owner === '' || job.owner === request.owner);
}

function pageToken(job: JobRecord): string {
  return Buffer.from(`${job.startedAt.getTime()}:${job.id}`).toString('base64url');
}

function parsePageToken(token: string): { startedAt: number; id: string } {
  const match = /^(\d{1,15}):([0-9a-f-]{36})$/.exec(Buffer.from(token, 'base64url').toString());
  if (!match) throw Errors.invalidArgument(`page_token is not one this server gave out: ${JSON.stringify(truncate(token))}`);
  return { startedAt: Number(match[1]), id: match[2]! };
}

function truncate(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}

const STATUS: Record<JobState, JobStatus> = {
  RUNNING: JobStatus.JOB_STATUS_RUNNING,
  COMPLETED: JobStatus.JOB_STATUS_COMPLETED,
  FAILED: JobStatus.JOB_STATUS_FAILED,
  STOPPED: JobStatus.JOB_STATUS_STOPPED,
};

export function toJob(record: JobRecord): Job {
  return {
    id: record.id,
    command: record.command,
    args: [...record.args],
    limits: {
      maxCpuPercent: record.limits.cpuPercent,
      maxMemoryMb: record.limits.memoryBytes / (1024 * 1024),
      maxIoBps: record.limits.ioBps,
      maxPids: record.limits.pids,
    },
    status: STATUS[record.state],
    pid: record.pid,
    cgroup: record.cgroup,
    startedAt: record.startedAt,
    endedAt: record.endedAt ?? undefined,
    exitCode: record.exitCode ?? undefined,
    signal: record.signal ?? '',
    oomKilled: record.oomKilled,
    owner: record.owner,
    message: record.message,
    outputBytes: record.log.length,
    outputStart: record.log.start,
    outputProblem: record.log.problem,
    usage: record.usage ? { ...record.usage, sampledAt: new Date(record.usage.sampledAt) } : undefined,
    isolation: record.isolation ? isolationOf(record.isolation) : undefined,
    workdir: record.workdir ?? '',
  };
}

function isolationOf(isolation: JobIsolation): Isolation {
  return {
    pidNamespace: isolation.pidNamespace,
    mountNamespace: isolation.mountNamespace,
    network: isolation.network === 'host' ? Network.NETWORK_HOST : Network.NETWORK_NONE,
    user: `${isolation.uid}:${isolation.gid}`,
    rootfs: isolation.rootfs ?? '',
  };
}
