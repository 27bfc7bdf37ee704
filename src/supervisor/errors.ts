// Every error the server reports to a client, with a stable code (their
// gRPC statuses: src/common/error-codes.ts; rpc/status.ts turns them into
// a call's status). Anything else that reaches the RPC boundary is a bug: it
// is logged and the client sees only INTERNAL.
import type { status as Status } from '@grpc/grpc-js';
import { ErrorCodes, type ErrorCode } from '../common/error-codes.js';
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
  noJobNamed: (name: string) => new JobworkerError('JOB_NOT_FOUND', `no job is named ${quoted(name)}`),
  nameTaken: (name: string, holder: string | null) =>
    new JobworkerError('NAME_TAKEN', `job name ${quoted(name)} is taken ${holder ? `by job ${holder}, which has not ended` : 'by a job that is starting'}`),
  quotaExceeded: (message: string) => new JobworkerError('QUOTA_EXCEEDED', message),
  inputRefused: (message: string) => new JobworkerError('INPUT_REFUSED', message),
  noStdin: (id: string) => new JobworkerError('INPUT_REFUSED', `job ${id} was not created with stdin (CreateJobReq.stdin, jobctl create -i): its stdin is /dev/null`),
  inputAfterEnd: (id: string, state: string) => new JobworkerError('INPUT_REFUSED', `job ${id} has ended (${state}): it takes no more input`),
  unauthenticated: (message: string) => new JobworkerError('UNAUTHENTICATED', message),
  permissionDenied: (message: string) => new JobworkerError('PERMISSION_DENIED', message),
  shuttingDown: () => new JobworkerError('SHUTTING_DOWN', 'the server is shutting down'),
  notRecorded: (message: string) => new JobworkerError('NOT_RECORDED', message),
  outputUnreadable: (id: string, reason: string) => new JobworkerError('OUTPUT_UNREADABLE', `job ${id}: ${reason}`),
  startFailed: (code: StartFailureCode, message: string) => new JobworkerError(code, message),
  scheduleNotFound: (ref: string) => new JobworkerError('SCHEDULE_NOT_FOUND', `schedule ${quoted(ref)} not found`),
  scheduleNameTaken: (name: string, holder: string) => new JobworkerError('SCHEDULE_NAME_TAKEN', `schedule name ${quoted(name)} is taken by schedule ${holder}`),
  tooManySchedules: (max: number) => new JobworkerError('TOO_MANY_SCHEDULES', `this server keeps at most ${max} schedules: delete one first`),
  notAFleet: (what: string) => new JobworkerError('NOT_A_FLEET', `${what}: this server is not part of a fleet (jobworkerd --fleet-etcd)`),
};

/** What a client sent, as an error message quotes it: JSON (control characters escaped), cut at `max` characters. */
export function quoted(text: string, max = 64): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text);
}
