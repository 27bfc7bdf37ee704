// The jobworker client: typed calls over one mutual-TLS channel, output as
// an async iterable, cancellation with AbortSignal, failures as ClientErrors.
// jobctl is built on it; so can a load-test harness be.
import { once } from 'node:events';
import os from 'node:os';
import { connectivityState as ConnectivityState, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { unlessAborted } from '../common/abortable.js';
import { MAX_PAGE_SIZE } from '../common/api-limits.js';
import {
  CreateJobReq as CreateJobReqCodec,
  CreateScheduleReq as CreateScheduleReqCodec,
  FleetServiceClient,
  ScheduleServiceClient,
  type CreateScheduleReq,
  type Firing,
  type GetSchedulesReq,
  type Schedule,
  type ScheduleRef,
  type Schedules,
  GetJobsStreamReq,
  JobStatus,
  type CreateJobReq,
  type DataChunk,
  type DeepPartial,
  type DrainNodeReq,
  type DrainNodeRes,
  type GetNodesReq,
  type Job,
  type JobServiceClient,
  type Node,
  type Nodes,
  type Quota,
} from '../gen/jobworker/v1/jobworker.js';
import { openChannel, unary, type ConnectOptions, type PartialRequestOf, type ResponseOf, type UnaryMethod } from './channel.js';
import { ERROR_CODE_TRAILER } from '../common/error-codes.js';
import { BadResponseError, isServiceError, RunAbortedError, ServerError, toClientError, UnavailableError } from './errors.js';

const CONNECT_TIMEOUT_MS = 10_000;

export interface ClientOptions extends ConnectOptions {
  /** How long a call may wait for the first connection to the server (default 10 s). */
  connectTimeoutMs?: number;
}

/** What to run: the command, and anything else CreateJob takes (limits, env as NAME=value, workdir, isolation). */
export type JobSpec = { command: string } & DeepPartial<Omit<CreateJobReq, 'command'>>;
/** A schedule as createSchedule() takes it: `job` as create() takes a job. */
export type ScheduleSpec = { cron: string; job: JobSpec } & DeepPartial<Omit<CreateScheduleReq, 'cron' | 'job'>>;

export interface Cancellable {
  /** Aborting cancels the call; it then rejects with the signal's reason (create(): see there). */
  signal?: AbortSignal;
}

export interface ListFilter extends Cancellable {
  status?: JobStatus;
  /** The CN of the certificate that created the job. */
  owner?: string;
  /** In a fleet: only the jobs of this node. */
  node?: string;
  /** Only jobs that carry every one of these labels. */
  labels?: Record<string, string>;
  /** At most this many jobs, newest first (default: all). */
  limit?: number;
  /** Have the server read each running job's usage afresh, as get() does (default: the figures last read). */
  freshUsage?: boolean;
}

export interface StreamOptions extends Cancellable {
  /** Go on until the job has ended and every byte is out (default: only what there is now). */
  follow?: boolean;
  /** Only output that arrived at or after this time. */
  since?: Date;
  /** Only the last N lines written so far. */
  tailLines?: number;
  /** Give every chunk the time it arrived (one frame per chunk). */
  timestamps?: boolean;
}

export interface RunOptions {
  /** Aborting stops the job: see run(). */
  signal?: AbortSignal;
  /** Called once the job has started, before any output. */
  onStart?: (job: Job) => void;
  /** Called with every chunk in order; the next is not read until its promise settles. */
  onOutput?: (chunk: DataChunk) => void | Promise<void>;
  /** Milliseconds between SIGTERM and SIGKILL when the signal stops the job (default: the server's). */
  graceMs?: number;
  /**
   * The job's stdin (the job is created with stdin open): written as the
   * job takes it, then closed. A job that stops reading first is not an
   * error (the rest is dropped, as a pipe does); any other failure to write
   * rejects run() once the job's output is out.
   */
  input?: AsyncIterable<Uint8Array> | Uint8Array;
}

export interface WaitOptions extends Cancellable {
  /** Give up after this many milliseconds: wait() then rejects with a DOMException named TimeoutError. */
  timeoutMs?: number;
}

/** A WriteInput message's data at most: well under the 4 MiB a server takes in one message. */
const INPUT_PIECE_BYTES = 256 * 1024;

export interface RunResult {
  job: Job;
  /** As a shell reports it (exitCodeOf): the job's exit code, or 128 + the signal's number. */
  exitCode: number;
}

/**
 * Shell conventions, whatever the job's status: its own exit code when it
 * exited (a stopped job that caught SIGTERM and exited 0 gives 0), 128 + the
 * signal's number when a signal killed it, and 1 when the server cannot tell
 * (its supervision failed, or the server restarted while it ran).
 */
export function exitCodeOf(job: Job): number {
  if (job.exitCode !== undefined) return job.exitCode;
  return (job.signal ? signalExitCode(job.signal) : undefined) ?? 1;
}

function signalExitCode(name: string): number | undefined {
  const number = (os.constants.signals as Partial<Record<string, number>>)[name];
  return number === undefined ? undefined : 128 + number;
}

/**
 * Jobs asked for per GetJobs call when listing. The server ends a page
 * sooner, before it passes about 1 MiB, so an answer always fits.
 */
const PAGE = MAX_PAGE_SIZE;

/**
 * Opens a client: reads the certificate files now (ConfigError if they cannot
 * be used) and connects on the first call. close() it when done.
 *
 * `server` may name several servers, comma-separated (the nodes of a fleet,
 * each of which answers for all): a call goes to the one that answered last,
 * and moves to the next when a server cannot be reached or says it is
 * unavailable — a CreateJob only when it surely started nothing there.
 */
export function connect(options: ClientOptions): JobworkerClient {
  const servers = options.server.split(',').map((server) => server.trim());
  const endpoints = servers.map((server) => new Endpoint(openChannel({ ...options, server }), server, options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS));
  return new JobworkerClient(endpoints);
}

/**
 * Whether a failed call may be made again on another server. Any read may;
 * a CreateJob only when it never reached the server (no connection, or the
 * connect timeout cancelled it unsent) or the server refused it with a code
 * of its own (shutting down, the fleet unreachable, its node not answering
 * and the start cancelled): a call cut off after it was sent may have
 * started the job.
 */
function mayRetry(method: string, raw: unknown, err: unknown): boolean {
  if (!(err instanceof UnavailableError)) return false;
  // What creates something is tried elsewhere only when it surely created nothing.
  if (method !== 'createJob' && method !== 'createSchedule' && method !== 'runSchedule') return true;
  if (err.code === 'CONNECT_TIMEOUT') return true;
  if (!isServiceError(raw)) return false;
  const [code] = raw.metadata?.get(ERROR_CODE_TRAILER) ?? [];
  if (typeof code === 'string') return NOTHING_STARTED.includes(code);
  return /No connection established|ECONNREFUSED/.test(raw.details);
}

/** A CreateJob refused with one of these started nothing (the server guarantees it): another server may take it. */
const NOTHING_STARTED: readonly string[] = ['SHUTTING_DOWN', 'FLEET_UNAVAILABLE', 'NODE_UNAVAILABLE'];

/**
 * One server's channel. Calls are fail-fast (no waitForReady): a refused
 * connection or a failed TLS handshake fails the call at once with grpc-js's
 * reason, which a waitForReady call would hide behind a bare
 * DEADLINE_EXCEEDED. What fail-fast cannot catch is a connection attempt
 * that hangs (grpc-js waits 20 s): until the channel has been READY once,
 * each call has the connect timeout, and one that runs out is cancelled — it
 * was never sent, so a CreateJob cut short this way started nothing. Once
 * connected, calls have no deadline: a stream following a long job may last
 * for days.
 */
class Endpoint {
  #connectedOnce = false;
  #watching = false;
  /** Calls waiting for the first READY, each to clear its timer. */
  readonly #waiting = new Set<() => void>();

  constructor(
    readonly grpc: JobServiceClient,
    readonly server: string,
    readonly connectTimeoutMs: number,
  ) {}

  close(): void {
    for (const clear of this.#waiting) clear();
    this.#fleet?.close();
    this.#schedules?.close();
    this.grpc.close();
  }

  #fleet: FleetServiceClient | undefined;
  #schedules: ScheduleServiceClient | undefined;

  /** FleetService on the same channel (the credentials given here are not used: the channel has its own). */
  fleetUnary<M extends FleetMethod>(method: M, request: FleetRequests[M], signal: AbortSignal | undefined): Promise<FleetResponses[M]> {
    this.#fleet ??= new FleetServiceClient(this.server, credentials.createInsecure(), { channelOverride: this.grpc.getChannel() });
    return this.#serviceUnary<FleetRequests[M], FleetResponses[M]>(this.#fleet, method, request, signal);
  }

  /** ScheduleService on the same channel. */
  scheduleUnary<M extends ScheduleMethod>(method: M, request: ScheduleRequests[M], signal: AbortSignal | undefined): Promise<ScheduleResponses[M]> {
    this.#schedules ??= new ScheduleServiceClient(this.server, credentials.createInsecure(), { channelOverride: this.grpc.getChannel() });
    return this.#serviceUnary<ScheduleRequests[M], ScheduleResponses[M]>(this.#schedules, method, request, signal);
  }

  /** One unary call of another service's client on this channel. */
  #serviceUnary<Req, Res>(client: object, method: string, request: Req, signal: AbortSignal | undefined): Promise<Res> {
    let cancelCall: (() => void) | undefined;
    const call = new Promise<Res>((resolve, reject) => {
      signal?.throwIfAborted();
      const send = (client as Record<string, unknown>)[method] as (request: Req, metadata: Metadata, options: object, callback: (err: ServiceError | null, res: Res) => void) => { cancel(): void };
      const handle = send.call(client, request, new Metadata(), {}, (err, res) => (err ? reject(signal?.aborted ? signal.reason : err) : resolve(res)));
      cancelCall = () => handle.cancel();
      signal?.addEventListener('abort', cancelCall, { once: true });
    });
    return this.guarded(call, () => cancelCall?.());
  }

  /** The raw grpc-js error (for mayRetry) and the ClientError it stands for. */
  async unary<M extends UnaryMethod>(method: M, request: PartialRequestOf<M>, signal: AbortSignal | undefined): Promise<ResponseOf<M>> {
    const timedOut = new AbortController();
    const call = unary(this.grpc, method, request, { signal: signal ? AbortSignal.any([signal, timedOut.signal]) : timedOut.signal });
    return this.guarded(call, (err) => timedOut.abort(err));
  }

  /**
   * The call, with the connect timeout while the channel has never been
   * READY: when it runs out, `cancel` gets the CONNECT_TIMEOUT error and the
   * call rejects with it.
   */
  guarded<T>(call: Promise<T>, cancel: (err: UnavailableError) => void): Promise<T> {
    if (this.#connectedOnce) return call;
    this.#watchChannel();
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const err = new UnavailableError('CONNECT_TIMEOUT', `cannot reach server ${this.server}: timed out after ${this.connectTimeoutMs / 1000} s`, this.server);
        cancel(err);
        reject(err);
      }, this.connectTimeoutMs);
      const clear = (): void => {
        clearTimeout(timer);
        this.#waiting.delete(clear);
      };
      this.#waiting.add(clear);
      call.then(
        (value) => {
          clear();
          resolve(value);
        },
        (err: unknown) => {
          clear();
          reject(err);
        },
      );
    });
  }

  /**
   * Watches the channel until it is READY (or closed), then lifts every
   * call's connect timeout. Not client.waitForReady(): in grpc-js 1.14 its
   * watcher, woken by close(), asks the closed channel to connect again, and
   * the process then lingers. This one only looks (getConnectivityState(false));
   * the calls themselves make the channel connect.
   */
  #watchChannel(): void {
    if (this.#watching) return;
    this.#watching = true;
    const channel = this.grpc.getChannel();
    const check = (): void => {
      const state = channel.getConnectivityState(false);
      if (state === ConnectivityState.READY || state === ConnectivityState.SHUTDOWN) {
        this.#connectedOnce = true;
        for (const clear of this.#waiting) clear();
        return;
      }
      // No deadline: the watch holds no handle that would keep the process alive.
      channel.watchConnectivityState(state, Number.POSITIVE_INFINITY, check);
    };
    check();
  }
}

export class JobworkerClient {
  readonly #endpoints: Endpoint[];
  /** The endpoint that answered last: calls go there first. */
  #current = 0;

  constructor(endpoints: Endpoint[]) {
    this.#endpoints = endpoints;
  }

  /** The server(s) it calls, as given. */
  get server(): string {
    return this.#endpoints.map((endpoint) => endpoint.server).join(',');
  }

  /**
   * Starts a job; resolves once its command has started (a command that
   * cannot start is a ServerError, and no job is recorded). The signal is
   * looked at before the call only: once sent, a CreateJob is waited for, as
   * cutting it short could leave a job running that nobody knows of.
   */
  async create(spec: JobSpec, options: Cancellable = {}): Promise<Job> {
    options.signal?.throwIfAborted();
    return requireJob('CreateJob', (await this.#unary('createJob', spec, undefined)).job);
  }

  /**
   * What a CN uses against its quota (jobworkerd --quota-file): the rule
   * that applies, its limits and the use now. `owner` defaults to the
   * caller's own CN.
   */
  async quota(owner = '', options: Cancellable = {}): Promise<Quota> {
    return this.#unary('getQuota', { owner }, options.signal);
  }

  async get(id: string, options: Cancellable = {}): Promise<Job> {
    return requireJob('GetJob', (await this.#unary('getJob', { id }, options.signal)).job);
  }

  /** Jobs newest first, every page of them up to `limit`. */
  async list(filter: ListFilter = {}): Promise<Job[]> {
    const limit = filter.limit ?? Number.POSITIVE_INFINITY;
    if (!(limit === Number.POSITIVE_INFINITY || (Number.isInteger(limit) && limit >= 1))) {
      throw new RangeError(`list(): limit must be a whole number of at least 1, got ${limit}`);
    }
    const jobs: Job[] = [];
    let pageToken = '';
    do {
      const request = { status: filter.status, owner: filter.owner, node: filter.node, labels: filter.labels, pageSize: Math.min(PAGE, limit - jobs.length), pageToken, freshUsage: filter.freshUsage };
      const page = await this.#unary('getJobs', request, filter.signal);
      jobs.push(...page.jobs);
      pageToken = page.nextPageToken;
    } while (pageToken !== '' && jobs.length < limit);
    return jobs.slice(0, limit);
  }

  /**
   * Resolves with the job once it has ended (at once for an ended job),
   * without polling: the server answers when the job ends. `id` may be a
   * job's name, as everywhere.
   */
  async wait(id: string, options: WaitOptions = {}): Promise<Job> {
    const signals = [options.signal, options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs)].filter((s) => s !== undefined);
    const signal = signals.length > 0 ? AbortSignal.any(signals) : undefined;
    return requireJob('WaitJob', (await this.#unary('waitJob', { id }, signal)).job);
  }

  /**
   * Writes to the stdin of a job created with `stdin: true`, in order, as
   * fast as the job takes it (gRPC flow control holds this side back), then
   * closes it: the job reads EOF. Resolves with the bytes the job took. A
   * job's input takes one writer, once: ServerError INPUT_REFUSED otherwise,
   * and when the job stops reading before taking every byte. Aborting the
   * signal closes the job's stdin after what was sent so far.
   */
  async writeInput(id: string, data: AsyncIterable<Uint8Array> | Uint8Array, options: Cancellable = {}): Promise<number> {
    const { signal } = options;
    signal?.throwIfAborted();
    const endpoint = this.#endpoints[this.#current]!;
    let call!: ReturnType<JobServiceClient['writeInput']>;
    const answer = new Promise<number>((resolve, reject) => {
      call = endpoint.grpc.writeInput((err, res) => (err ? reject(signal?.aborted ? signal.reason : toClientError(err, endpoint.server)) : resolve(res.bytesWritten)));
    });
    const cancel = (): void => call.cancel();
    signal?.addEventListener('abort', cancel, { once: true });
    // The server may answer early (a refusal, the job's end): then nothing more is read or sent.
    const answered = new AbortController();
    void answer.then(
      () => answered.abort(),
      () => answered.abort(),
    );
    const over: IteratorResult<Uint8Array> = { done: true, value: undefined };
    try {
      // The first message names the job, data or not.
      let first = true;
      const send = async (piece: Uint8Array): Promise<void> => {
        // A copy: grpc-js may serialise it after the source has reused its buffer.
        const message = { id: first ? id : '', data: Buffer.from(piece) };
        first = false;
        if (!call.write(message)) await unlessAborted(once(call, 'drain'), answered.signal, undefined);
      };
      const source = (data instanceof Uint8Array ? (async function* () { yield data; })() : data)[Symbol.asyncIterator]();
      await send(new Uint8Array(0));
      // A source that waits (a terminal, a generator) must not hold up the end of a call that is over.
      for (let next = await unlessAborted(source.next(), answered.signal, over); !next.done; next = await unlessAborted(source.next(), answered.signal, over)) {
        const chunk = next.value;
        for (let at = 0; at < chunk.length && !answered.signal.aborted; at += INPUT_PIECE_BYTES) await send(chunk.subarray(at, at + INPUT_PIECE_BYTES));
      }
      if (answered.signal.aborted) void source.return?.();
      call.end();
      return await endpoint.guarded(answer, cancel);
    } catch (err) {
      call.cancel();
      // The server's refusal says more than a write that failed because of it; the cancel just made is not one.
      const refused = await answer.then(
        () => undefined,
        (answerErr: unknown) => answerErr,
      );
      if (refused instanceof ServerError && refused.code !== 'CANCELLED') throw refused;
      throw err;
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
  }

  /** Stops a job (SIGTERM, SIGKILL after the grace period); resolves with it once it has ended. An ended job is answered as it is. */
  async stop(id: string, options: Cancellable & { graceMs?: number } = {}): Promise<Job> {
    return requireJob('StopJob', (await this.#unary('stopJob', { id, graceMs: options.graceMs }, options.signal)).job);
  }

  /**
   * A job's output, chunk by chunk, stdout and stderr in the order written.
   * The next chunk is read only when asked for, so a slow consumer holds the
   * stream back through gRPC flow control instead of buffering it. Breaking
   * out of the loop, or aborting the signal, cancels the call.
   */
  async *stream(id: string, options: StreamOptions = {}): AsyncGenerator<DataChunk, void, undefined> {
    const { signal, ...request } = options;
    for (let tried = 0; ; tried++) {
      signal?.throwIfAborted();
      const at = (this.#current + tried) % this.#endpoints.length;
      const endpoint = this.#endpoints[at]!;
      const call = endpoint.grpc.getJobsStream(GetJobsStreamReq.fromPartial({ id, ...request }));
      const cancel = (): void => call.cancel();
      signal?.addEventListener('abort', cancel, { once: true });
      const chunks = (call as AsyncIterable<DataChunk>)[Symbol.asyncIterator]();
      let received = false;
      try {
        for (;;) {
          const next = await endpoint.guarded(chunks.next(), cancel);
          if (next.done) return;
          received = true;
          this.#current = at;
          yield next.value;
        }
      } catch (raw) {
        signal?.throwIfAborted();
        const err = raw instanceof UnavailableError ? raw : toClientError(raw, endpoint.server);
        // Another server may serve it, as long as nothing was delivered from this one.
        if (received || tried + 1 >= this.#endpoints.length || !mayRetry('getJob', raw, err)) throw err;
      } finally {
        signal?.removeEventListener('abort', cancel);
        // A no-op once the stream has ended; stops the server's side otherwise.
        call.cancel();
      }
    }
  }

  /**
   * Runs a job to its end: creates it, hands every chunk of its output to
   * onOutput, and resolves with the ended job and its shell-style exit code.
   *
   * Aborting the signal stops the job (SIGTERM, graceMs, SIGKILL); run() then
   * still delivers the rest of its output and rejects with RunAbortedError,
   * which says how it ended — unless it had ended by itself first, and then
   * run() resolves as usual. If the stop itself fails, run() rejects with
   * that error at once (the job may still be running). An error thrown by
   * onStart or onOutput ends run() with that error and leaves the job running.
   */
  async run(spec: JobSpec, options: RunOptions = {}): Promise<RunResult> {
    const { signal, onStart, onOutput, graceMs, input } = options;
    // create() is not cancellable once sent; an abort meanwhile stops the job right after.
    const created = await this.create(input === undefined ? spec : { ...spec, stdin: true }, { signal });
    // A job that stops reading its input is no failure of the run: the rest is dropped, as a pipe would.
    const inputDone = new AbortController();
    const writing = input === undefined ? undefined : this.writeInput(created.id, input, { signal: inputDone.signal }).then(
      () => undefined,
      (err: unknown) => (err instanceof ServerError && err.code === 'INPUT_REFUSED' ? undefined : err),
    );
    const stopFailed = new AbortController();
    let stopping: Promise<Job> | undefined;
    const stop = (): void => {
      stopping ??= this.stop(created.id, { graceMs });
      stopping.catch((err: unknown) => stopFailed.abort(err));
    };
    signal?.addEventListener('abort', stop, { once: true });
    try {
      if (signal?.aborted) stop();
      onStart?.(created);
      // The stream ends once the job has ended and every byte is out, stopped or not.
      for await (const chunk of this.stream(created.id, { follow: true, signal: stopFailed.signal })) await onOutput?.(chunk);
      const job = stopping ? await stopping : await this.get(created.id);
      if (stopping && job.status === JobStatus.JOB_STATUS_STOPPED) throw new RunAbortedError(job, exitCodeOf(job), signal?.reason);
      // The job has ended: the server has answered the input by now, or is about to (a refusal is no failure, above).
      const inputFailure = await writing;
      if (inputFailure !== undefined) throw inputFailure;
      return { job, exitCode: exitCodeOf(job) };
    } finally {
      // Whatever ended the run, the input stops being read (a terminal would keep it waiting).
      inputDone.abort();
      signal?.removeEventListener('abort', stop);
    }
  }

  close(): void {
    for (const endpoint of this.#endpoints) endpoint.close();
  }

  /** The fleet's nodes, by name. A server that is not part of a fleet: ServerError NOT_A_FLEET. */
  async nodes(options: Cancellable = {}): Promise<Node[]> {
    return (await this.#failover('getNodes', (endpoint) => endpoint.fleetUnary('getNodes', {}, options.signal), options.signal)).nodes;
  }

  /** No new jobs go to the node; its running jobs go on. Resolves with the node as it is now. */
  async drain(name: string, options: Cancellable = {}): Promise<Node> {
    return requireNode((await this.#failover('drainNode', (endpoint) => endpoint.fleetUnary('drainNode', { name }, options.signal), options.signal)).node);
  }

  async undrain(name: string, options: Cancellable = {}): Promise<Node> {
    return requireNode((await this.#failover('undrainNode', (endpoint) => endpoint.fleetUnary('undrainNode', { name }, options.signal), options.signal)).node);
  }

  /**
   * A schedule: jobs the server creates at the times `cron` names (README,
   * Schedules). `job` is what each firing creates, as create() takes it
   * (but for name, after and stdin).
   */
  async createSchedule(spec: ScheduleSpec, options: Cancellable = {}): Promise<Schedule> {
    const { job, ...rest } = spec;
    const request = CreateScheduleReqCodec.fromPartial({ ...rest, job: CreateJobReqCodec.fromPartial(job) });
    return this.#failover('createSchedule', (endpoint) => endpoint.scheduleUnary('createSchedule', request, options.signal), options.signal);
  }

  /** By id or name: with its next firing time and its last firings. */
  async schedule(ref: string, options: Cancellable = {}): Promise<Schedule> {
    return this.#scheduleCall('getSchedule', ref, options);
  }

  async schedules(options: Cancellable = {}): Promise<Schedule[]> {
    return (await this.#failover('getSchedules', (endpoint) => endpoint.scheduleUnary('getSchedules', {}, options.signal), options.signal)).schedules;
  }

  async pauseSchedule(ref: string, options: Cancellable = {}): Promise<Schedule> {
    return this.#scheduleCall('pauseSchedule', ref, options);
  }

  async resumeSchedule(ref: string, options: Cancellable = {}): Promise<Schedule> {
    return this.#scheduleCall('resumeSchedule', ref, options);
  }

  async deleteSchedule(ref: string, options: Cancellable = {}): Promise<Schedule> {
    return this.#scheduleCall('deleteSchedule', ref, options);
  }

  /** Fires the schedule now: the firing as recorded (its job, or why it was skipped or failed). */
  async runSchedule(ref: string, options: Cancellable = {}): Promise<Firing> {
    return this.#failover('runSchedule', (endpoint) => endpoint.scheduleUnary('runSchedule', { schedule: ref }, options.signal), options.signal);
  }

  #scheduleCall(method: 'getSchedule' | 'pauseSchedule' | 'resumeSchedule' | 'deleteSchedule', ref: string, options: Cancellable): Promise<Schedule> {
    return this.#failover(method, (endpoint) => endpoint.scheduleUnary(method, { schedule: ref }, options.signal), options.signal);
  }

  #unary<M extends UnaryMethod>(method: M, request: PartialRequestOf<M>, signal: AbortSignal | undefined): Promise<ResponseOf<M>> {
    return this.#failover(method, (endpoint) => endpoint.unary(method, request, signal), signal);
  }

  /** The call on the server that answered last, then on the next ones while mayRetry allows. */
  async #failover<T>(method: string, call: (endpoint: Endpoint) => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    for (let tried = 0; ; tried++) {
      const at = (this.#current + tried) % this.#endpoints.length;
      const endpoint = this.#endpoints[at]!;
      try {
        const answer = await call(endpoint);
        this.#current = at;
        return answer;
      } catch (raw) {
        signal?.throwIfAborted();
        const err = raw instanceof UnavailableError ? raw : toClientError(raw, endpoint.server);
        if (tried + 1 >= this.#endpoints.length || !mayRetry(method, raw, err)) throw err;
      }
    }
  }
}

function requireNode(node: Node | undefined): Node {
  if (!node) throw new BadResponseError("the server's answer has no node");
  return node;
}

type ScheduleMethod = 'createSchedule' | 'getSchedule' | 'getSchedules' | 'pauseSchedule' | 'resumeSchedule' | 'deleteSchedule' | 'runSchedule';
interface ScheduleRequests {
  createSchedule: CreateScheduleReq;
  getSchedule: ScheduleRef;
  getSchedules: GetSchedulesReq;
  pauseSchedule: ScheduleRef;
  resumeSchedule: ScheduleRef;
  deleteSchedule: ScheduleRef;
  runSchedule: ScheduleRef;
}
interface ScheduleResponses {
  createSchedule: Schedule;
  getSchedule: Schedule;
  getSchedules: Schedules;
  pauseSchedule: Schedule;
  resumeSchedule: Schedule;
  deleteSchedule: Schedule;
  runSchedule: Firing;
}

type FleetMethod = 'getNodes' | 'drainNode' | 'undrainNode';
interface FleetRequests {
  getNodes: GetNodesReq;
  drainNode: DrainNodeReq;
  undrainNode: DrainNodeReq;
}
interface FleetResponses {
  getNodes: Nodes;
  drainNode: DrainNodeRes;
  undrainNode: DrainNodeRes;
}

/** Every Create/Get/StopJob answer carries the job; proto3 just cannot say "required". */
function requireJob(rpc: string, job: Job | undefined): Job {
  if (!job) throw new BadResponseError(`the server's ${rpc} answer has no job`);
  return job;
}
