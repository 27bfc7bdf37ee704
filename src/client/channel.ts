// A JobService channel over mutual TLS 1.3, and promise-returning unary
// calls on it: what the client library is built on (tests and benchmarks use
// it directly).
import net from 'node:net';
import tls from 'node:tls';
import {
  credentials,
  Metadata,
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import { PemFileError, readPem } from '../common/pem.js';
import { JobServiceViewingClient } from './chunk-decoder.js';
import { ConfigError } from './errors.js';
import {
  CreateJobReq,
  GetJobReq,
  GetJobsReq,
  JobServiceClient,
  StopJobReq,
  WaitJobReq,
  GetQuotaReq,
  type DeepPartial,
} from '../gen/jobworker/v1/jobworker.js';

export interface ConnectOptions {
  /** host:port */
  server: string;
  ca: string;
  cert: string;
  key: string;
}

/** Large windows let one stream carry output at loopback speed instead of grpc-js's 64 KiB default. */
const CHANNEL_OPTIONS: ChannelOptions = {
  'grpc-node.flow_control_window': 16 * 1024 * 1024,
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
};

function readPemFile(file: string, what: string): Buffer {
  try {
    return readPem(file);
  } catch (err) {
    if (err instanceof PemFileError) throw new ConfigError(`cannot read ${what} ${file}: ${err.reason}`);
    throw err;
  }
}

/** Reads the certificate files (ConfigError if they cannot be used); connects lazily, on the first call. */
export function openChannel(options: ConnectOptions): JobServiceClient {
  const ca = readPemFile(options.ca, 'CA certificate');
  const cert = readPemFile(options.cert, 'client certificate');
  const key = readPemFile(options.key, 'client key');
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ ca, cert, key, minVersion: 'TLSv1.3' });
  } catch (err) {
    throw new ConfigError(`cannot use client certificate ${options.cert} with key ${options.key}: ${(err as Error).message}`);
  }
  return new JobServiceViewingClient(options.server, withoutIpServerName(credentials.createFromSecureContext(context)), CHANNEL_OPTIONS);
}

/**
 * grpc-js sends the server address's host as the TLS ServerName (SNI), and
 * Node prints a deprecation warning (DEP0123, RFC 6066) on the stderr of
 * whatever program connects when that host is an IP address — which is how
 * servers are usually named. A library must not write to its user's stderr,
 * nor silence the user's own warnings: so no ServerName is sent for an IP
 * (SNI has no meaning for one). The server's certificate is still checked
 * against the address (its IP SANs): Node checks the connection's host when
 * there is no ServerName. grpc-js keeps the options of each connection in
 * the connector it makes (connectionOptions, as of 1.14): a test checks the
 * warning stays away, so a grpc-js that changes this is caught.
 */
export function withoutIpServerName(creds: ChannelCredentials): ChannelCredentials {
  const make = creds._createSecureConnector.bind(creds);
  creds._createSecureConnector = (...args) => {
    const connector = make(...args);
    const options = (connector as { connectionOptions?: tls.ConnectionOptions }).connectionOptions;
    if (options?.servername !== undefined && net.isIP(options.servername) !== 0) delete options.servername;
    return connector;
  };
  return creds;
}

// ---------------------------------------------------------------------------
// Promise helpers over the callback client

export type UnaryMethod = 'createJob' | 'getJob' | 'stopJob' | 'getJobs' | 'waitJob' | 'getQuota';
// The generated methods are overloaded; Parameters<> sees the last overload,
// (request, metadata, options, callback), which is the one called below.
export type RequestOf<M extends UnaryMethod> = Parameters<JobServiceClient[M]>[0];
/** What callers pass: fields left out, at any depth, take their proto3 defaults (fromPartial fills them in). */
export type PartialRequestOf<M extends UnaryMethod> = DeepPartial<RequestOf<M>>;

const REQUESTS = { createJob: CreateJobReq, getJob: GetJobReq, stopJob: StopJobReq, getJobs: GetJobsReq, waitJob: WaitJobReq, getQuota: GetQuotaReq } as const;
export type ResponseOf<M extends UnaryMethod> = Parameters<Parameters<JobServiceClient[M]>[3]>[1];

/**
 * Calls one unary RPC; rejects with the grpc-js ServiceError (code, details),
 * or with the signal's reason once it aborts (the call is cancelled).
 */
export function unary<M extends UnaryMethod>(
  client: JobServiceClient,
  method: M,
  request: PartialRequestOf<M>,
  options: Partial<CallOptions> & { signal?: AbortSignal } = {},
): Promise<ResponseOf<M>> {
  const { signal, ...callOptions } = options;
  const full = (REQUESTS[method] as { fromPartial(partial: object): RequestOf<M> }).fromPartial(request);
  type Callback = (error: ServiceError | null, response: ResponseOf<M>) => void;
  const send = client[method] as unknown as (request: RequestOf<M>, metadata: Metadata, options: Partial<CallOptions>, callback: Callback) => ClientUnaryCall;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const cancel = (): void => call.cancel();
    const call = send.call(client, full, new Metadata(), callOptions, (error, response) => {
      signal?.removeEventListener('abort', cancel);
      // An answer that came despite the abort is kept: a job it started is not lost.
      if (!error) resolve(response);
      else reject(signal?.aborted ? signal.reason : error);
    });
    signal?.addEventListener('abort', cancel, { once: true });
  });
}
