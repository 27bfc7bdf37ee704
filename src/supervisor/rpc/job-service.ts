// The JobService RPCs. Callers are authenticated and authorized before a
// handler runs (boundary.ts); handlers validate their request (policy/) and
// work on the store and the runner.
import { MAX_GRACE_MS } from '../../common/api-limits.js';
import { eitherAborted, settledSignal } from '../../common/abortable.js';
import { atMost } from '../../common/at-most.js';
import { isJobId, jobNameProblem } from '../../common/job-refs.js';
import {
  DependencyCondition,
  OutputStream,
  type CreateJobReq,
  type Dependency as DependencyReq,
  type DataChunk,
  type GetJobReq,
  type GetJobsReq,
  type GetQuotaReq,
  type Job,
  type Quota,
  type StopJobReq,
  type WaitJobReq,
  type WriteInputRes,
} from '../../gen/jobworker/v1/jobworker.js';
import { StreamId } from '../../workers/protocol.js';
import { Errors, JobworkerError, quoted } from '../errors.js';
import { InputRefusedError } from '../jobs/input-channel.js';
import type { JobRunner, StartRequest } from '../jobs/runner.js';
import type { Dependency, JobRecord } from '../jobs/record.js';
import { NotRecordedError, type JobStore } from '../jobs/store.js';
import type { WaitingJobs } from '../jobs/waiting-jobs.js';
import type { ServerMetrics } from '../ops/metrics.js';
import { OutputCursor, offsetOfLastLines, offsetSince } from '../output/cursor.js';
import { OutputUnreadableError } from '../output/log.js';
import { checkRequestSize, validateCommand } from '../policy/command.js';
import { resolveIsolation, type IsolationPolicy } from '../policy/isolation.js';
import { jobEnvironment, parseEnv, resolveWorkdir } from '../policy/job-environment.js';
import { resolveLimits, type HostCapacity } from '../policy/limits.js';
import { resolveMeta, type DeadlinePolicy } from '../policy/job-meta.js';
import type { Caller } from './authz.js';
import { ChunkMemory, REUSED_CHUNK_BYTES } from './chunk-encoder.js';
import { openInput, type InputStream } from './input-call.js';
import type { InputCall, JobApi, OutputCall } from './job-api.js';
import { readPage, type JobsPage } from './job-pages.js';
import type { QuotaLedger, QuotaUse } from '../jobs/quota-ledger.js';
import type { QuotaCaller } from '../policy/quotas.js';
import type { CallQuota } from './call-quota.js';
import { toJob } from './job-view.js';
import { CHUNKS_IN_FLIGHT, WriteWindow } from './write-window.js';

/** Output goes out in pieces of at most this size, never as one message. */
export const MAX_CHUNK_BYTES = 256 * 1024;
/** And of at least this much (where there is that much), however many streams are open. */
export const MIN_CHUNK_BYTES = 64 * 1024;
/**
 * About what the chunks of all open streams may come to together: each
 * stream holds a few of its own in flight (read, encoded, queued). Fewer,
 * larger messages are faster for one reader (256 KiB against 64 KiB: about
 * 1.3× to one jobctl, bench scenario 2), but a hundred followers of 256 KiB
 * took the server past its memory bound (bench scenario 7: 404 MB against
 * 235–248): a stream's chunks shrink as more streams are open.
 */
const CHUNK_BUDGET_BYTES = 4 * 1024 * 1024;

/** The chunk size while `open` streams share the budget: a power of two from MIN_CHUNK_BYTES to MAX_CHUNK_BYTES. */
export function chunkBytes(open: number): number {
  let size = MAX_CHUNK_BYTES;
  while (size > MIN_CHUNK_BYTES && size * open > CHUNK_BUDGET_BYTES) size /= 2;
  return size;
}
/** A stream that has waited this long for output lets its memory go (ChunkMemory, the cursor's read buffer). */
const RELEASE_AFTER_MS = 1_000;
/** GetQuota owner: a certificate's CN is at most 64 characters (X.509 ub-common-name). */
const MAX_OWNER_LENGTH = 64;
/** GetJobs fresh_usage: usage reads in flight at once, each a round trip to a supervisor thread. */
const USAGE_READS_AT_ONCE = 64;
/** CreateJobReq.after: at most this many dependencies. */
export const MAX_DEPENDENCIES = 32;

/** CreateJobReq.after's own checks, before any job is looked for: how many, and each condition (INVALID_ARGUMENT). */
export function checkAfter(after: readonly DependencyReq[]): void {
  if (after.length > MAX_DEPENDENCIES) throw Errors.invalidArgument(`after takes at most ${MAX_DEPENDENCIES} jobs, got ${after.length}`);
  for (const [i, { condition }] of after.entries()) {
    if (condition !== DependencyCondition.DEPENDENCY_CONDITION_UNSPECIFIED && condition !== DependencyCondition.DEPENDENCY_CONDITION_OK && condition !== DependencyCondition.DEPENDENCY_CONDITION_ANY) {
      throw Errors.invalidArgument(`after[${i}].condition must be OK or ANY, got ${condition}`);
    }
  }
}

/**
 * CreateJobReq.after, each job found by `find` (by id or name; a server's
 * store, or the fleet's records): INVALID_ARGUMENT for too many, a bad
 * reference or condition, or a job named twice; NOT_FOUND for one not found.
 */
export function resolveAfter(after: readonly DependencyReq[], find: (ref: string) => { id: string }): Dependency[] {
  checkAfter(after);
  const resolved: Dependency[] = [];
  for (const [i, { job, condition }] of after.entries()) {
    let id: string;
    try {
      id = find(job).id;
    } catch (err) {
      if (err instanceof JobworkerError) throw new JobworkerError(err.code, `after[${i}]: ${err.message}`);
      throw err;
    }
    if (resolved.some((d) => d.id === id)) throw Errors.invalidArgument(`after[${i}]: job ${id} is already a dependency`);
    resolved.push({ id, condition: condition === DependencyCondition.DEPENDENCY_CONDITION_ANY ? 'any' : 'ok' });
  }
  return resolved;
}

/** The InputChannel's refusals as INPUT_REFUSED; anything else as it is. */
function asInputError(err: unknown): unknown {
  return err instanceof InputRefusedError ? Errors.inputRefused(err.message) : err;
}

/** GetQuota's owner, checked: the caller's own CN when empty. */
export function checkQuotaOwner(caller: Caller, request: GetQuotaReq): string {
  if (request.owner.length > MAX_OWNER_LENGTH) throw Errors.invalidArgument(`owner must be at most ${MAX_OWNER_LENGTH} characters, got ${request.owner.length}`);
  return request.owner === '' ? caller.cn : request.owner;
}

/** INVALID_ARGUMENT unless `id` is a job id (a UUID, lower case). */
export function checkJobId(id: string): void {
  if (!isJobId(id)) throw Errors.invalidArgument(`job id must be a UUID such as 123e4567-e89b-12d3-a456-426614174000, got ${quoted(id)}`);
}

/** INVALID_ARGUMENT unless `ref` is a job id or a job name; says which. */
export function checkJobRef(ref: string): 'id' | 'name' {
  if (isJobId(ref)) return 'id';
  if (jobNameProblem(ref) === null) return 'name';
  throw Errors.invalidArgument(`expected a job id (a UUID such as 123e4567-e89b-12d3-a456-426614174000) or a job name, got ${quoted(ref)}`);
}

export interface ServiceOptions {
  store: JobStore;
  runner: JobRunner;
  metrics: ServerMetrics;
  host: HostCapacity;
  isolation: IsolationPolicy;
  defaultGraceMs: number;
  deadlines: DeadlinePolicy;
  quotas: QuotaLedger;
  /** Calls in flight per CN, for GetQuota (the boundary counts them). */
  calls: CallQuota;
  /** Jobs created with dependencies, until they start or end. */
  waiting: WaitingJobs;
}

/** A CreateJob request checked against this server's policy: what the runner starts. */
export type ResolvedJob = Omit<StartRequest, 'owner' | 'id'>;

export class JobService implements JobApi {
  /** GetJobsStream calls open now (following ones too): they share CHUNK_BUDGET_BYTES. */
  #streams = 0;

  constructor(readonly options: ServiceOptions) {}

  /** `id`: the job's, when the caller chose it (a schedule's firing, recorded before the job is made). */
  async createJob(caller: Caller, request: CreateJobReq, id?: string): Promise<Job> {
    if (request.node !== '' || Object.keys(request.constraints).length > 0) throw Errors.notAFleet('node and constraints place jobs in a fleet');
    const job = this.resolve(request);
    if (request.after.length > 0) return toJob(this.#accept(job, caller, this.resolveAfter(request.after)));
    // Checked and reserved before anything awaits: see QuotaLedger.
    const admission = this.options.quotas.admit(caller, job.limits);
    let record: JobRecord;
    try {
      record = await this.start(job, caller.cn, id);
    } catch (err) {
      admission.failed();
      throw err;
    }
    admission.started(record);
    return toJob(record);
  }

  /** Every check of a CreateJob request against this server's policy: INVALID_ARGUMENT or PERMISSION_DENIED. */
  resolve(request: CreateJobReq): ResolvedJob {
    checkRequestSize(request);
    const requestedEnv = parseEnv(request.env);
    validateCommand(request.command, request.args);
    const limits = resolveLimits(request.limits, this.options.host);
    const workdir = resolveWorkdir(request.workdir);
    const { isolation, user } = resolveIsolation(request.isolation, this.options.isolation);
    const env = jobEnvironment(user, requestedEnv);
    const meta = resolveMeta(request, this.options.deadlines);
    return { command: request.command, args: request.args, limits, isolation, workdir, env, ...meta };
  }

  /**
   * CreateJobReq.after, each job found in the store now (by id or name):
   * see resolveAfter.
   */
  resolveAfter(after: readonly DependencyReq[]): Dependency[] {
    return resolveAfter(after, (ref) => this.find(ref));
  }

  /** Records a job that waits for `after` (waiting-jobs.ts); its name is held as start() holds it. */
  #accept(job: ResolvedJob, caller: Caller, after: Dependency[]): JobRecord {
    const claim = job.name === null ? undefined : this.options.store.claimName(job.name);
    if (claim && 'heldBy' in claim) throw Errors.nameTaken(job.name!, claim.heldBy?.id ?? null);
    try {
      this.options.quotas.accept(caller, job.limits);
      return this.options.waiting.accept(job, caller.cn, caller.role, after);
    } catch (err) {
      if (err instanceof NotRecordedError) throw Errors.notRecorded(err.message);
      throw err;
    } finally {
      claim?.release();
    }
  }

  /**
   * Starts a resolved job for `owner`, under `id` when the caller chose it.
   * Its name is held from here until the job is in the store (which holds
   * it then) or has failed to start: NAME_TAKEN while another has it.
   */
  async start(job: ResolvedJob, owner: string, id?: string): Promise<JobRecord> {
    const claim = job.name === null ? undefined : this.options.store.claimName(job.name);
    if (claim && 'heldBy' in claim) throw Errors.nameTaken(job.name!, claim.heldBy?.id ?? null);
    try {
      return await this.options.runner.start({ ...job, owner, id });
    } finally {
      claim?.release();
    }
  }

  async getJob(_caller: Caller, request: GetJobReq): Promise<Job> {
    const record = this.find(request.id);
    await this.options.runner.refreshUsage(record);
    return toJob(record);
  }

  /** Newest first, a page at a time (job-pages.ts). */
  getJobs(_caller: Caller, request: GetJobsReq): Promise<JobsPage> {
    if (request.node !== '') return Promise.reject(Errors.notAFleet('node filters the jobs of a fleet'));
    const refresh = request.freshUsage ? (records: JobRecord[]) => this.#refreshUsage(records) : undefined;
    return readPage(this.options.store, { request, refresh });
  }

  /** The running jobs' usage read afresh by their supervisor threads, USAGE_READS_AT_ONCE at a time. */
  async #refreshUsage(records: JobRecord[]): Promise<void> {
    const running = records.filter((record) => record.state === 'RUNNING');
    await atMost(USAGE_READS_AT_ONCE, running, (record) => this.options.runner.refreshUsage(record, { batch: true }));
  }


  /** The caller's quota, or another CN's: the rule that applies, its limits, the use now. */
  async getQuota(caller: Caller, request: GetQuotaReq): Promise<Quota> {
    const owner = checkQuotaOwner(caller, request);
    const { quotas } = this.options;
    const whose = { cn: owner, role: owner === caller.cn ? caller.role : quotas.roleOf(owner) };
    return this.quotaOf(whose, quotas.useOf(whose));
  }

  /** The answer of GetQuota for `whose`, given its use (this server's, or the fleet's). */
  quotaOf(whose: QuotaCaller, use: QuotaUse): Quota {
    const rule = this.options.quotas.rules.ruleFor(whose);
    const limits = rule?.limits;
    return {
      owner: whose.cn,
      rule: rule?.subject ?? '',
      ruleSource: rule?.where ?? '',
      limits: limits && {
        running: limits.running,
        cpuPercent: limits.cpuPercent,
        memoryMb: limits.memoryMb,
        outputBytes: limits.outputBytes,
        rateJobs: limits.rate?.jobs,
        rateWindowSeconds: (limits.rate?.windowMs ?? 0) / 1000,
        calls: limits.calls,
        rps: limits.rps,
      },
      use: { ...use, calls: this.options.calls.inFlight(whose.cn) },
    };
  }

  /** Answers once the job has ended; a caller that goes away stops the wait (signal). */
  async waitJob(_caller: Caller, request: WaitJobReq, signal: AbortSignal): Promise<Job> {
    const record = this.find(request.id);
    await this.#untilEnded(record, signal);
    return toJob(record);
  }

  /**
   * Resolves once the job has ended, or `signal` aborts. A job that waits
   * (waiting-jobs.ts) and is still waiting when the server shuts down will
   * not end in this server's life: SHUTTING_DOWN then.
   */
  async #untilEnded(record: JobRecord, signal: AbortSignal): Promise<void> {
    if (record.state === 'WAITING') {
      await eitherAborted(settledSignal(this.options.waiting.until(record)), signal);
      if (record.state === 'WAITING' && !signal.aborted) throw Errors.shuttingDown();
    }
    await eitherAborted(settledSignal(record.ended), signal);
  }

  /** WriteInput: see writeTo. */
  async writeInput(_caller: Caller, call: InputCall): Promise<WriteInputRes> {
    const input = await openInput(call);
    try {
      return await this.writeTo(this.find(input.first.id), input);
    } finally {
      input.close();
    }
  }

  /**
   * The call's bytes to the job's stdin, in order, held back while the job
   * has not taken the last window of them (InputChannel); the end of the
   * call closes the job's stdin, and so does a writer that goes away.
   * Answers once the job has taken every byte.
   */
  async writeTo(record: JobRecord, input: InputStream): Promise<WriteInputRes> {
    // A job that waits takes its input once it runs: the writer waits with it (gRPC flow control holds what it sends).
    if (record.state === 'WAITING' && record.stdin) {
      await eitherAborted(settledSignal(this.options.waiting.until(record)), input.gone);
      if (record.state === 'WAITING' && !input.gone.aborted) throw Errors.shuttingDown();
    }
    const channel = this.options.runner.inputOf(record);
    if (!channel) {
      if (!record.stdin) throw Errors.noStdin(record.id);
      throw Errors.inputAfterEnd(record.id, record.state);
    }
    // Outside the try below: a refused writer must not close the input of the one it was refused for.
    try {
      channel.claim();
    } catch (err) {
      throw asInputError(err);
    }
    try {
      await channel.write(input.first.data, input.gone);
      // A job that ends, or stops reading, while its writer sends nothing ends the call too.
      for (let data = await input.next(channel.closed); data !== null && !input.gone.aborted; data = await input.next(channel.closed)) await channel.write(data, input.gone);
      await channel.end(input.gone);
      return { bytesWritten: channel.taken };
    } catch (err) {
      // Whatever ends the call early, the job reads EOF after what it was given.
      void channel.end();
      throw asInputError(err);
    }
  }

  async stopJob(_caller: Caller, request: StopJobReq): Promise<Job> {
    const record = this.find(request.id);
    const graceMs = request.graceMs ?? this.options.defaultGraceMs;
    if (graceMs > MAX_GRACE_MS) throw Errors.invalidArgument(`grace_ms must be at most ${MAX_GRACE_MS}, got ${graceMs}`);
    if (this.options.waiting.has(record)) await this.options.waiting.stop(record, graceMs);
    else await this.options.runner.stop(record, graceMs);
    return toJob(record);
  }

  /**
   * Sends the job's output from its first byte still kept, or from where
   * since/tail_lines say. The reader is a cursor into the job's log; a slow
   * client is held back by gRPC flow control (see WriteWindow) and never
   * gets more than a few chunks of its own.
   */
  async streamOutput(caller: Caller, call: OutputCall): Promise<void> {
    const { id, follow, since, tailLines, timestamps } = call.request;
    const record = this.find(id);
    const { log } = record;
    const end = follow ? Number.POSITIVE_INFINITY : log.length;
    const gone = new AbortController();
    const onCancel = (): void => gone.abort();
    call.once('cancelled', onCancel);
    call.once('close', onCancel);
    const cursor = new OutputCursor(log, log.start);
    const window = new WriteWindow(call, gone.signal);
    const memory = new ChunkMemory(CHUNKS_IN_FLIGHT);
    // What the stream keeps between chunks: its encoding memory and the cursor's read buffer.
    const letGo = (): void => {
      memory.release();
      cursor.release();
    };
    const { openStreams, sentBytes } = this.options.metrics;
    openStreams.inc();
    this.#streams += 1;
    try {
      if (since) cursor.offset = Math.max(cursor.offset, await offsetSince(log, since.getTime()));
      if (tailLines !== undefined) cursor.offset = Math.max(cursor.offset, await offsetOfLastLines(log, tailLines, log.length));
      let notYet = since !== undefined;
      while (cursor.offset < end) {
        // Frame by frame while each chunk's time matters: to timestamp it, or
        // until the first that arrived at or after since (times never decrease).
        // A stream another node relays is held there too (its window, grpc-js's read-ahead of 16
        // messages), where this node's budget does not count it: the least chunks for those.
        const size = caller.via === undefined ? chunkBytes(this.#streams) : MIN_CHUNK_BYTES;
        // Chunks this small keep no memory: the big buffers of a stream whose chunks shrank (more streams open) go.
        if (size < REUSED_CHUNK_BYTES) memory.release();
        const taken = await cursor.next(Math.min(size, end - cursor.offset), timestamps || notYet, (slice) => {
          // A since still to come holds back what a follower gets until then.
          if (notYet && slice.time < since!.getTime()) return 'skipped';
          notYet = false;
          // Encoded at once: the slice may be a view into the log's tail, valid only now (cursor.ts SliceTaker).
          const chunk: DataChunk = {
            data: slice.data,
            stream: slice.stream === StreamId.Stderr ? OutputStream.OUTPUT_STREAM_STDERR : OutputStream.OUTPUT_STREAM_STDOUT,
            offset: slice.offset,
            time: timestamps ? new Date(slice.time) : undefined,
          };
          return { ...memory.encode(chunk), bytes: slice.data.length };
        });
        if (taken === 'skipped') continue;
        if (taken) {
          await window.write(taken.message, taken.written);
          sentBytes.inc(taken.bytes);
          continue;
        }
        if (log.closed) break;
        // A follower that waits long (a quiet job) holds no chunk memory meanwhile; one that keeps up with a busy job keeps it.
        const quiet = setTimeout(letGo, RELEASE_AFTER_MS);
        try {
          await log.waitFor(cursor.offset, gone.signal);
        } finally {
          clearTimeout(quiet);
        }
      }
      // The log closes before the job's end is recorded (that waits for the
      // disk): a follower told of the end must find it in GetJob.
      letGo();
      if (follow) await this.#untilEnded(record, gone.signal);
    } catch (err) {
      // The client went away: nothing to send, nothing to report.
      if (gone.signal.aborted) return;
      if (err instanceof OutputUnreadableError) throw Errors.outputUnreadable(id, err.message);
      throw err;
    } finally {
      openStreams.dec();
      this.#streams -= 1;
      call.off('cancelled', onCancel);
      call.off('close', onCancel);
      await cursor.close();
    }
    // A client that left while the end was being recorded hears nothing more.
    if (!gone.signal.aborted) call.end();
  }

  /**
   * The job's record here, by id or by name (the job that holds the name,
   * else the newest ended one of that name): INVALID_ARGUMENT for neither,
   * NOT_FOUND for one this server does not have.
   */
  find(ref: string): JobRecord {
    if (checkJobRef(ref) === 'name') {
      const named = this.options.store.byName(ref);
      if (!named) throw Errors.noJobNamed(ref);
      return named;
    }
    const record = this.options.store.get(ref);
    if (!record) throw Errors.jobNotFound(ref);
    return record;
  }
}
