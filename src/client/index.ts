// jobworker/client: the typed client library (README, "Client library").
export { connect, exitCodeOf, JobworkerClient } from './client.js';
export type { Cancellable, ClientOptions, JobSpec, ScheduleSpec, ListFilter, RunOptions, RunResult, StreamOptions, WaitOptions } from './client.js';
export { BadResponseError, ClientError, ConfigError, RunAbortedError, ServerError, UnavailableError, type GrpcStatusName } from './errors.js';
export type { ErrorCode } from '../common/error-codes.js';
export { CatchUpPolicy, ConcurrencyPolicy, DependencyCondition, FiringOutcome, JobStatus, Network, NodeState, OutputStream } from '../gen/jobworker/v1/jobworker.js';
export type { DataChunk, Dependency, Firing, Isolation, Job, Limits, Node, ResourceUsage, Schedule } from '../gen/jobworker/v1/jobworker.js';
