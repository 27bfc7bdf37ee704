// Every error the server reports to a client, with a stable code, and the
// one mapping from those codes to gRPC statuses. Anything else that reaches
// the RPC boundary is a bug: it is logged and the client sees only INTERNAL.
import { Metadata, status as Status } from '@grpc/grpc-js';
import { ERROR_CODE_TRAILER } from '../client/errors.js';
import type { StartFailureCode } from '../workers/protocol.js';

export const ErrorCodes = {
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  INVALID_LIMITS: Status.INVALID_ARGUMENT,
  JOB_NOT_FOUND: Status.NOT_FOUND,
  UNAUTHENTICATED: Status.UNAUTHENTICATED,
  PERMISSION_DENIED: Status.PERMISSION_DENIED,
  EXEC_FAILED: Status.FAILED_PRECONDITION,
  // The host cannot give the job the isolation asked for (a kernel without
  // some namespace, a workdir missing in the job's filesystem).
  ISOLATION_FAILED: Status.FAILED_PRECONDITION,
  CONTROLLER_UNAVAILABLE: Status.FAILED_PRECONDITION,
  CGROUP_SETUP_FAILED: Status.INTERNAL,
  SPAWN_FAILED: Status.INTERNAL,
  SHUTTING_DOWN: Status.UNAVAILABLE,
  // Disk full, most likely: what gRPC's RESOURCE_EXHAUSTED names.
  NOT_RECORDED: Status.RESOURCE_EXHAUSTED,
  OUTPUT_UNREADABLE: Status.DATA_LOSS,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

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
