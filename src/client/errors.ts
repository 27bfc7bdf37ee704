// How calls to a jobworker server fail, as typed errors: a caller (a harness,
// jobctl) tells them apart by class and code, and each message is one line
// written for a person (jobctl prints it as it is).
import { Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import { ERROR_CODE_TRAILER, isErrorCode, type ErrorCode } from '../common/error-codes.js';
import type { Job } from '../gen/jobworker/v1/jobworker.js';

/** A gRPC status by name: what ServerError.code is when the server sent no code of its own. */
export type GrpcStatusName = keyof typeof Status;

export abstract class ClientError extends Error {
  abstract readonly code: string;
}

/** A certificate or key file that cannot be read or used, before any call. */
export class ConfigError extends ClientError {
  readonly code = 'CONFIG';

  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * The server could not be reached or did not answer: connection refused,
 * TLS handshake failed, no connection within the connect timeout, or the
 * server's own UNAVAILABLE (it is shutting down). Worth a retry later.
 */
export class UnavailableError extends ClientError {
  constructor(
    readonly code: 'UNAVAILABLE' | 'CONNECT_TIMEOUT' | 'DEADLINE_EXCEEDED',
    message: string,
    readonly server: string,
  ) {
    super(message);
    this.name = 'UnavailableError';
  }
}

/**
 * The server answered with an error. `code` is the server's own stable code
 * (JOB_NOT_FOUND, INVALID_ARGUMENT, INVALID_LIMITS, PERMISSION_DENIED,
 * EXEC_FAILED, ISOLATION_FAILED, NOT_RECORDED…) or, where it sent none (an
 * INTERNAL error, a call cancelled under the client), the gRPC status name.
 */
export class ServerError extends ClientError {
  constructor(
    readonly code: ErrorCode | GrpcStatusName,
    readonly grpcStatus: Status,
    message: string,
  ) {
    super(message);
    this.name = 'ServerError';
  }
}

/**
 * run()'s signal was aborted and the job stopped: its output was delivered
 * to the end, and this says how it ended. `cause` is the signal's reason.
 */
export class RunAbortedError extends ClientError {
  readonly code = 'ABORTED';

  constructor(
    readonly job: Job,
    readonly exitCode: number,
    cause: unknown,
  ) {
    super(`job ${job.id} was stopped: the run was aborted`, { cause });
    this.name = 'RunAbortedError';
  }
}

/** The server answered, but not with what the protocol promises. */
export class BadResponseError extends ClientError {
  readonly code = 'BAD_RESPONSE';

  constructor(message: string) {
    super(message);
    this.name = 'BadResponseError';
  }
}

export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number' && typeof (err as Partial<ServiceError>).details === 'string';
}

/** A grpc-js ServiceError as the ClientError it stands for; anything else as it is. */
export function toClientError(err: unknown, server: string): unknown {
  if (!isServiceError(err)) return err;
  switch (err.code) {
    case Status.UNAVAILABLE: {
      // An UNAVAILABLE the server sent with a code of its own (shutting down, a
      // fleet node that cannot reach the job's node) says so itself, even
      // when it quotes a connection failure of its own.
      const reason = serverCode(err.metadata) ? undefined : connectionFailure(err.details);
      // The server's own UNAVAILABLE ("the server is shutting down") is
      // already short and clear; grpc-js's connection reports are not.
      const message = reason ? `cannot reach server ${server}: ${reason}` : `server ${server} is unavailable: ${oneLine(err.details)}`;
      return new UnavailableError('UNAVAILABLE', message, server);
    }
    case Status.DEADLINE_EXCEEDED:
      return new UnavailableError('DEADLINE_EXCEEDED', `server ${server} did not answer in time`, server);
    case Status.CANCELLED:
      return new ServerError('CANCELLED', err.code, `the call was cancelled: ${oneLine(err.details)}`);
    default: {
      const name = (Status[err.code] ?? 'UNKNOWN') as GrpcStatusName;
      // The server's statuses carry a message written for the user
      // ("job … not found", "permission denied: …"): kept as it is.
      return new ServerError(serverCode(err.metadata) ?? name, err.code, oneLine(err.details) || `server error ${name}`);
    }
  }
}

function serverCode(metadata: Metadata | undefined): ErrorCode | undefined {
  const [value] = metadata?.get(ERROR_CODE_TRAILER) ?? [];
  // A code this client does not know (a newer server's) reads as the status name.
  return typeof value === 'string' && isErrorCode(value) ? value : undefined;
}

/**
 * grpc-js reports a failed connection as UNAVAILABLE with details such as
 * "No connection established. Last error: Error: connect ECONNREFUSED
 * 127.0.0.1:1 (2024-…)"; this keeps only the reason a user can act on.
 * undefined when details do not describe a connection failure.
 */
export function connectionFailure(details: string): string | undefined {
  for (const [pattern, reason] of SOCKET_ERRORS) if (pattern.test(details)) return reason;
  if (/certificate|ssl|tls|handshake|alert|self[- ]signed|altnames|ERR_SSL/i.test(details)) {
    const why = tlsReason(details);
    return why ? `TLS handshake failed (${why})` : 'TLS handshake failed';
  }
  if (/No connection established|Connection dropped|Failed to connect|socket/i.test(details)) return 'connection failed';
  return undefined;
}

const SOCKET_ERRORS: readonly [RegExp, string][] = [
  [/ECONNREFUSED/, 'connection refused'],
  [/ENOTFOUND|EAI_AGAIN|EAI_NONAME|Name resolution failed/i, 'unknown host'],
  [/EHOSTUNREACH/, 'host unreachable'],
  [/ENETUNREACH/, 'network unreachable'],
  [/ETIMEDOUT/, 'timed out'],
  // With TLS 1.3 the client finishes its side of the handshake first; a
  // server that refuses the client certificate then drops the
  // connection, and this is all the client gets to see: a reset, or grpc-js's
  // bare "Failed to connect" when the socket closes before HTTP/2 starts.
  [/No connection established.*(ECONNRESET|Failed to connect)/, "TLS handshake failed (the server closed the connection; was the client certificate issued by its CA?)"],
  [/ECONNRESET/, 'connection reset'],
];

/** The OpenSSL / Node reason inside grpc-js's text, e.g. "self-signed certificate in certificate chain". */
function tlsReason(details: string): string | undefined {
  // "…Last error: Error: <reason> (<timestamp>). Resolution note: …"; the timestamp and note come and go.
  const lastError = /Last error: (?:Error: )?(.*?)(?: \(\d{4}-\d\d-\d\dT[^)]*\))?\.?(?: Resolution note:.*)?$/m.exec(details)?.[1];
  if (!lastError) return undefined;
  // Node: "Hostname/IP does not match certificate's altnames: IP: 127.0.0.1 is not in the cert's list: "
  const altnames = /does not match certificate's altnames: (.*)$/.exec(lastError)?.[1];
  if (altnames) return `the server's certificate is not for this address: ${altnames.replace(/:\s*$/, '').trim()}`;
  // OpenSSL alerts read "…:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:…"
  const alert = /SSL routines:[^:]*:([^:]+)/.exec(lastError)?.[1];
  return (alert ?? lastError).trim().slice(0, 120) || undefined;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
