// A JobService client over mutual TLS 1.3: what jobctl and the tests use.
import tls from 'node:tls';
import {
  connectivityState as ConnectivityState,
  credentials,
  Metadata,
  type CallOptions,
  type ChannelOptions,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import { PemFileError, readPem } from '../src/common/pem.js';
import {
  CreateJobReq,
  GetJobReq,
  GetJobsReq,
  GetJobsStreamReq,
  JobServiceClient,
  StopJobReq,
  type DataChunk,
  type DeepPartial,
} from '../src/gen/jobworker/v1/jobworker.js';

export interface ConnectOptions {
  /** host:port */
  server: string;
  ca: string;
  cert: string;
  key: string;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** No connection to the server within the connect timeout (the host dropped our packets, or a handshake hung). */
export class ConnectTimeoutError extends Error {
  constructor(
    readonly server: string,
    readonly timeoutMs: number,
  ) {
    super(`cannot reach server ${server}: timed out after ${timeoutMs / 1000} s`);
    this.name = 'ConnectTimeoutError';
  }
}

/** Large windows let one stream carry output at loopback speed instead of grpc-js's 64 KiB default. */
const CHANNEL_OPTIONS: ChannelOptions = {
  'grpc-node.flow_control_window': 16 * 1024 * 1024,
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
};

export function readPemFile(file: string, what: string): Buffer {
  try {
    return readPem(file);
  } catch (err) {
    if (err instanceof PemFileError) throw new ConfigError(`cannot read ${what} ${file}: ${err.reason}`);
    throw err;
  }
}

export function connect(options: ConnectOptions): JobServiceClient {
  const ca = readPemFile(options.ca, 'CA certificate');
  const cert = readPemFile(options.cert, 'client certificate');
  const key = readPemFile(options.key, 'client key');
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ ca, cert, key, minVersion: 'TLSv1.3' });
  } catch (err) {
    throw new ConfigError(`cannot use client certificate ${options.cert} with key ${options.key}: ${(err as Error).message}`);
  }
  return new JobServiceClient(options.server, credentials.createFromSecureContext(context), CHANNEL_OPTIONS);
}

/**
 * grpc-js passes the host of the server address to TLS as the ServerName,
 * and Node warns (DEP0123, RFC 6066) when that is an IP address, which is
 * how jobctl is usually pointed at a server. The server's certificate is
 * still checked against the IP (its IP SANs), so the warning tells the user
 * nothing they can act on. Only that warning is dropped; any other still shows.
 */
export function silenceIpServerNameWarning(): void {
  const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((...args: unknown[]) => {
    const [, typeOrOptions, code] = args;
    const warningCode = typeof typeOrOptions === 'object' && typeOrOptions !== null ? (typeOrOptions as { code?: unknown }).code : code;
    if (warningCode === 'DEP0123') return;
    emitWarning(...args);
  }) as typeof process.emitWarning;
}

// ---------------------------------------------------------------------------
// Promise helpers over the callback client

export type UnaryMethod = 'createJob' | 'getJob' | 'stopJob' | 'getJobs';
// The generated methods are overloaded; Parameters<> sees the last overload,
// (request, metadata, options, callback), which is the one called below.
export type RequestOf<M extends UnaryMethod> = Parameters<JobServiceClient[M]>[0];
/** What callers pass: fields left out, at any depth, take their proto3 defaults (fromPartial fills them in). */
export type PartialRequestOf<M extends UnaryMethod> = DeepPartial<RequestOf<M>>;

const REQUESTS = { createJob: CreateJobReq, getJob: GetJobReq, stopJob: StopJobReq, getJobs: GetJobsReq } as const;
export type ResponseOf<M extends UnaryMethod> = Parameters<Parameters<JobServiceClient[M]>[3]>[1];

/** Calls one unary RPC; rejects with the grpc-js ServiceError (code, details). */
export function unary<M extends UnaryMethod>(
  client: JobServiceClient,
  method: M,
  request: PartialRequestOf<M>,
  options: Partial<CallOptions> = {},
): Promise<ResponseOf<M>> {
  const full = (REQUESTS[method] as { fromPartial(partial: object): RequestOf<M> }).fromPartial(request);
  type Callback = (error: ServiceError | null, response: ResponseOf<M>) => void;
  const call = client[method] as unknown as (request: RequestOf<M>, metadata: Metadata, options: Partial<CallOptions>, callback: Callback) => ClientUnaryCall;
  return new Promise((resolve, reject) => {
    call.call(client, full, new Metadata(), options, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

export const CONNECT_TIMEOUT_MS = 10_000;

/**
 * One client and the connect deadline of a short-lived caller (jobctl).
 *
 * Calls are fail-fast (no waitForReady): a refused connection or a failed
 * TLS handshake fails the call at once with UNAVAILABLE and grpc-js's reason,
 * which a waitForReady call would hide behind a bare DEADLINE_EXCEEDED. What
 * fail-fast cannot catch is a connection attempt that hangs (grpc-js waits
 * 20 s); a watchdog on the channel covers that, only until the first time the
 * channel is READY, so a stream following a long job has no deadline at all.
 */
export class Session {
  #connected: Promise<never> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly client: JobServiceClient,
    readonly server: string,
    readonly connectTimeoutMs: number = CONNECT_TIMEOUT_MS,
  ) {}

  unary<M extends UnaryMethod>(method: M, request: PartialRequestOf<M>, options?: Partial<CallOptions>): Promise<ResponseOf<M>> {
    return Promise.race([unary(this.client, method, request, options), this.#watchdog()]);
  }

  /**
   * Reads a GetJobsStream call to its end, one chunk at a time: the next
   * chunk is not read until onChunk's promise settles, so a slow consumer
   * holds the stream back through gRPC flow control instead of buffering.
   */
  async stream(request: Partial<GetJobsStreamReq>, onChunk: (chunk: DataChunk) => void | Promise<void>): Promise<void> {
    const call = this.client.getJobsStream(GetJobsStreamReq.fromPartial(request));
    const read = async (): Promise<void> => {
      for await (const chunk of call as AsyncIterable<DataChunk>) await onChunk(chunk);
    };
    try {
      await Promise.race([read(), this.#watchdog()]);
    } finally {
      // A no-op once the stream has ended; stops the server's side otherwise.
      call.cancel();
    }
  }

  close(): void {
    clearTimeout(this.#timer);
    this.client.close();
  }

  /**
   * Rejects with ConnectTimeoutError if the channel has not been READY within
   * the timeout; otherwise never settles.
   *
   * Not client.waitForReady(): in grpc-js 1.14 its watcher, woken by close(),
   * asks the closed channel to connect again, and the process then lingers
   * until the deadline. This watcher only looks (getConnectivityState(false))
   * and stops at SHUTDOWN; the calls themselves make the channel connect.
   */
  #watchdog(): Promise<never> {
    this.#connected ??= new Promise<never>((_resolve, reject) => {
      const channel = this.client.getChannel();
      this.#timer = setTimeout(() => reject(new ConnectTimeoutError(this.server, this.connectTimeoutMs)), this.connectTimeoutMs);
      const check = (): void => {
        const state = channel.getConnectivityState(false);
        if (state === ConnectivityState.READY || state === ConnectivityState.SHUTDOWN) {
          clearTimeout(this.#timer);
          return;
        }
        // No deadline: the timer above is the deadline, and an infinite
        // watch holds no handle that would keep the process alive.
        channel.watchConnectivityState(state, Number.POSITIVE_INFINITY, check);
      };
      check();
    });
    // Every caller races it, but it may reject after the last race is over.
    this.#connected.catch(() => {});
    return this.#connected;
  }
}
