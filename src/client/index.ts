// jobworker/client: the typed client library (README, "Client library").
export { connect, exitCodeOf, JobworkerClient, RunAbortedError, CONNECT_TIMEOUT_MS } from './client.js';
export type { Cancellable, ClientOptions, JobSpec, ListFilter, RunOptions, RunResult, StreamOptions } from './client.js';
export { BadResponseError, ClientError, ConfigError, ServerError, UnavailableError } from './errors.js';
export { JobStatus, Network, OutputStream } from '../gen/jobworker/v1/jobworker.js';
export type { DataChunk, Isolation, Job, Limits, ResourceUsage } from '../gen/jobworker/v1/jobworker.js';
