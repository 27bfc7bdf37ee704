// What the JobService RPCs are answered by: the one host's jobs (JobService,
// job-service.ts) or a fleet's (src/fleet), which answers through the local
// one for the jobs of its own node. The RPC boundary has authenticated and
// authorized the caller before any of these runs.
import type { ServerReadableStream, ServerWritableStream } from '@grpc/grpc-js';
import type {
  CreateJobReq,
  CreateJobRes,
  DataChunk,
  DrainNodeReq,
  DrainNodeRes,
  GetJobReq,
  GetJobsReq,
  GetJobsStreamReq,
  GetNodesReq,
  GetQuotaReq,
  InputChunk,
  Job,
  Jobs,
  Nodes,
  Quota,
  StartJobReq,
  StopJobReq,
  WaitJobReq,
  WriteInputRes,
} from '../../gen/jobworker/v1/jobworker.js';
import type { Caller } from './authz.js';
import type { JobsPage } from './job-pages.js';

/**
 * What a GetJobsStream handler writes: a chunk to encode, or the encoded
 * bytes of one relayed as they came from another node.
 */
export type OutputMessage = DataChunk | Buffer;

export type OutputCall = ServerWritableStream<GetJobsStreamReq, OutputMessage>;

export type InputCall = ServerReadableStream<InputChunk, WriteInputRes>;

export interface JobApi {
  createJob(caller: Caller, request: CreateJobReq): Promise<Job>;
  getJob(caller: Caller, request: GetJobReq): Promise<Job>;
  stopJob(caller: Caller, request: StopJobReq): Promise<Job>;
  getJobs(caller: Caller, request: GetJobsReq): Promise<Jobs | JobsPage>;
  streamOutput(caller: Caller, call: OutputCall): Promise<void>;
  writeInput(caller: Caller, call: InputCall): Promise<WriteInputRes>;
  /** `signal`: the caller went away. */
  waitJob(caller: Caller, request: WaitJobReq, signal: AbortSignal): Promise<Job>;
  getQuota(caller: Caller, request: GetQuotaReq): Promise<Quota>;
}

/** FleetService: the nodes of a fleet. */
export interface FleetApi {
  getNodes(caller: Caller, request: GetNodesReq): Promise<Nodes>;
  drainNode(caller: Caller, request: DrainNodeReq): Promise<DrainNodeRes>;
  undrainNode(caller: Caller, request: DrainNodeReq): Promise<DrainNodeRes>;
}

/** NodeService: how the nodes of a fleet hand jobs to each other. */
export interface NodeApi {
  startJob(caller: Caller, request: StartJobReq): Promise<CreateJobRes>;
}
