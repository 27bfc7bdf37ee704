// The server's stable error codes, shared by the server (which maps each to a
// gRPC status and sends it in a trailer) and the client library (which gives
// it back as ServerError.code).
import { status as Status } from '@grpc/grpc-js';

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
  // Processes of a job's cgroup outlived SIGKILL (stuck in uninterruptible sleep).
  CGROUP_KILL_FAILED: Status.INTERNAL,
  SPAWN_FAILED: Status.INTERNAL,
  SHUTTING_DOWN: Status.UNAVAILABLE,
  // Disk full, most likely: what gRPC's RESOURCE_EXHAUSTED names.
  NOT_RECORDED: Status.RESOURCE_EXHAUSTED,
  OUTPUT_UNREADABLE: Status.DATA_LOSS,
  // A job that has not ended holds the name asked for (the message names it).
  NAME_TAKEN: Status.ALREADY_EXISTS,
  // A CreateJob past the caller's quota (--quota-file): the message names the quota, its limit and the use.
  QUOTA_EXCEEDED: Status.RESOURCE_EXHAUSTED,
  // WriteInput: the job takes no input now (not created with stdin, ended,
  // another writer, closed) or stopped reading before taking every byte.
  INPUT_REFUSED: Status.FAILED_PRECONDITION,
  // ScheduleService: no schedule of that id or name; the name another schedule has; past the most a server keeps.
  SCHEDULE_NOT_FOUND: Status.NOT_FOUND,
  SCHEDULE_NAME_TAKEN: Status.ALREADY_EXISTS,
  TOO_MANY_SCHEDULES: Status.RESOURCE_EXHAUSTED,
  // What a fleet does not do (the message says what). No node sends it now
  // (its last use, `after`, works in a fleet); kept for clients of older nodes.
  FLEET_UNSUPPORTED: Status.UNIMPLEMENTED,
  // Fleet (jobworkerd --fleet-etcd). A fleet call on a server that is not part of one:
  NOT_A_FLEET: Status.FAILED_PRECONDITION,
  NODE_NOT_FOUND: Status.NOT_FOUND,
  // No ready node can take the job (each candidate's reason in the message).
  NO_NODE_FITS: Status.RESOURCE_EXHAUSTED,
  // The job's node cannot be reached, or was lost: its output lives there.
  NODE_UNAVAILABLE: Status.UNAVAILABLE,
  // etcd cannot be reached, or this node lost its lease and takes no work.
  FLEET_UNAVAILABLE: Status.UNAVAILABLE,
  // Node to node: the start of this job id was already claimed or cancelled.
  START_CLAIMED: Status.ALREADY_EXISTS,
  START_CANCELLED: Status.ABORTED,
  // Node to node: a job that waited for others is no longer waiting as its
  // keeper read it (stopped, moved to another keeper, or handed on again).
  START_NOT_WAITING: Status.ABORTED,
  // A start whose claim other starts of its owner kept beating for a while
  // (its quota use, or its name, changed before each claim): nothing started.
  START_CONTENDED: Status.ABORTED,
  // The job's node did not answer and etcd could not say whether it started
  // the job: not UNAVAILABLE, which clients may retry elsewhere — a retry
  // could start it twice. The message names the job's id, to look it up.
  START_UNKNOWN: Status.UNKNOWN,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** The trailer that carries the code of a failed call. */
export const ERROR_CODE_TRAILER = 'jobworker-error-code';

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(ErrorCodes, value);
}
