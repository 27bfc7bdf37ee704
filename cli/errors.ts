// How jobctl fails: every error becomes one line for stderr and an exit code.
// Expected failures (the server said no, the server cannot be reached, a flag
// or file is wrong) never show a stack trace; only a bug does. The messages
// are the client library's own.
import { UsageError } from 'clipanion';
import { BadResponseError, ConfigError, ServerError, UnavailableError } from '../src/client/errors.js';

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

/** What timeout(1) exits with when its deadline passed: jobctl run for a job stopped by its --timeout, jobctl wait --timeout. */
export const TIMED_OUT_EXIT_CODE = 124;

/** 128 + SIGINT: what a shell reports for a command Ctrl-C ended (jobctl attach-input). */
export const INTERRUPTED_EXIT_CODE = 130;

/** stdout or stderr was closed under us (e.g. `jobctl stream ID | head`). */
export class OutputClosedError extends Error {
  constructor(cause: unknown) {
    super('output closed', { cause });
    this.name = 'OutputClosedError';
  }
}

export interface Failure {
  /** undefined: exit without a word (the reader of our output is gone). */
  message: string | undefined;
  exitCode: number;
}

export function describeError(err: unknown): Failure {
  // Arguments that parse but do not go together (stop with both an id and --label).
  if (err instanceof ConfigError || err instanceof UsageError) return { message: err.message, exitCode: ExitCode.USAGE };
  if (err instanceof UnavailableError) return { message: err.message, exitCode: ExitCode.UNAVAILABLE };
  if (err instanceof ServerError || err instanceof BadResponseError) return { message: err.message, exitCode: ExitCode.SERVER_ERROR };
  if (err instanceof OutputClosedError) return { message: undefined, exitCode: ExitCode.OUTPUT_CLOSED };
  const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
  return { message: `unexpected error (a bug in jobctl): ${message}`, exitCode: ExitCode.SOFTWARE };
}
