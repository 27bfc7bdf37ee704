// How jobctl fails: every error becomes one line for stderr and an exit code.
// Expected failures (the server said no, the server cannot be reached, a flag
// or file is wrong) never show a stack trace; only a bug does.
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import type { Job } from '../src/gen/jobworker/v1/jobworker.js';
import { ConfigError, ConnectTimeoutError } from './connect.js';

export const ExitCode = {
  OK: 0,
  /** The server answered with an error (NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT…). */
  SERVER_ERROR: 1,
  /** Bad flags or arguments, unreadable certificate files. */
  USAGE: 2,
  /** sysexits.h EX_UNAVAILABLE: no connection, TLS failure, server shutting down. */
  UNAVAILABLE: 69,
  /** sysexits.h EX_SOFTWARE: a bug in jobctl. */
  SOFTWARE: 70,
  /** 128 + SIGPIPE, what a shell reports for a writer whose reader went away. */
  OUTPUT_CLOSED: 141,
} as const;

/** stdout or stderr was closed under us (e.g. `jobctl stream ID | head`). */
export class OutputClosedError extends Error {
  constructor(cause: unknown) {
    super('output closed', { cause });
    this.name = 'OutputClosedError';
  }
}

/** The server answered, but not with what the protocol promises. */
export class BadResponseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BadResponseError';
  }
}

/** Every Create/Get/StopJob answer carries the job; proto3 just cannot say "required". */
export function requireJob(rpc: string, job: Job | undefined): Job {
  if (!job) throw new BadResponseError(`the server's ${rpc} answer has no job`);
  return job;
}

export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number' && typeof (err as Partial<ServiceError>).details === 'string';
}

export interface Failure {
  /** undefined: exit without a word (the reader of our output is gone). */
  message: string | undefined;
  exitCode: number;
}

export function describeError(err: unknown, server: string): Failure {
  if (err instanceof ConfigError) return { message: err.message, exitCode: ExitCode.USAGE };
  if (err instanceof ConnectTimeoutError) return { message: err.message, exitCode: ExitCode.UNAVAILABLE };
  if (err instanceof OutputClosedError) return { message: undefined, exitCode: ExitCode.OUTPUT_CLOSED };
  if (err instanceof BadResponseError) return { message: err.message, exitCode: ExitCode.SERVER_ERROR };
  if (isServiceError(err)) return describeStatus(err.code, err.details, server);
  const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
  return { message: `unexpected error (a bug in jobctl): ${message}`, exitCode: ExitCode.SOFTWARE };
}

export function describeStatus(code: Status, details: string, server: string): Failure {
  switch (code) {
    case Status.UNAVAILABLE: {
      const reason = connectionFailure(details);
      // The server's own UNAVAILABLE ("the server is shutting down") is
      // already short and clear; grpc-js's connection reports are not.
      return {
        message: reason ? `cannot reach server ${server}: ${reason}` : `server ${server} is unavailable: ${oneLine(details)}`,
        exitCode: ExitCode.UNAVAILABLE,
      };
    }
    case Status.DEADLINE_EXCEEDED:
      return { message: `server ${server} did not answer in time`, exitCode: ExitCode.UNAVAILABLE };
    case Status.CANCELLED:
      return { message: `the call was cancelled: ${oneLine(details)}`, exitCode: ExitCode.SERVER_ERROR };
    default:
      // The server's statuses carry a message written for the user
      // ("job … not found", "permission denied: …"): print it as it is.
      return { message: oneLine(details) || `server error ${Status[code] ?? code}`, exitCode: ExitCode.SERVER_ERROR };
  }
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
