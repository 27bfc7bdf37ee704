// Every error the server reports to a client, with a stable code (their
// gRPC statuses: src/common/error-codes.ts). Anything else that reaches
// the RPC boundary is a bug: it is logged and the client sees only INTERNAL.
import { Metadata, status as Status } from '@grpc/grpc-js';
import { ERROR_CODE_TRAILER, ErrorCodes, type ErrorCode } from '../common/error-codes.js';
import type { StartFailureCode } from '../workers/protocol.js';

export class JobworkerError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'JobworkerError';
  }

  get grpcStatus(): Status {
    return ErrorCodes[this.code];
  }
}

export const Errors = {
  invalidArgument: (message: string) => new JobworkerError('INVALID_ARGUMENT', message),
  invalidLimits: (message: string) => new JobworkerError('INVALID_LIMITS', message),
  jobNotFound: (id: string) => new JobworkerError('JOB_NOT_FOUND', `job ${id} not found`),
  unauthenticated: (message: string) => new JobworkerError('UNAUTHENTICATED', message),
  permissionDenied: (message: string) => new JobworkerError('PERMISSION_DENIED', message),
  shuttingDown: () => new JobworkerError('SHUTTING_DOWN', 'the server is shutting down'),
  notRecorded: (message: string) => new JobworkerError('NOT_RECORDED', message),
  outputUnreadable: (id: string, reason: string) => new JobworkerError('OUTPUT_UNREADABLE', `job ${id}: ${reason}`),
  startFailed: (code: StartFailureCode, message: string) => new JobworkerError(code, message),
};

export interface StatusObject {
  code: Status;
  details: string;
  metadata?: Metadata;
}

/**
 * The RPC boundary: known errors keep their status and message, and their
 * code goes along in a trailer (the client library's ServerError.code);
 * anything else becomes INTERNAL.
 */
export function toStatus(err: unknown): { status: StatusObject; unexpected: boolean } {
  if (err instanceof JobworkerError) {
    const metadata = new Metadata();
    metadata.set(ERROR_CODE_TRAILER, err.code);
    return { status: { code: err.grpcStatus, details: err.message, metadata }, unexpected: false };
  }
  return { status: { code: Status.INTERNAL, details: 'internal error (see the server log)' }, unexpected: true };
}
