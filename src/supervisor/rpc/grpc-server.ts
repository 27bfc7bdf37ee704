// The gRPC server: its transport limits, the JobService behind the RPC
// boundary, and the standard health and reflection services beside it.
import { Server, type ServerCredentials } from '@grpc/grpc-js';
import { FleetServiceService, JobServiceService, NodeServiceService, ScheduleServiceService } from '../../gen/jobworker/v1/jobworker.js';
import type { ScheduleApi } from '../schedules/scheduler.js';
import { Errors } from '../errors.js';
import type { RpcBoundary } from './boundary.js';
import { encodeDataChunk } from './chunk-encoder.js';
import type { FleetApi, JobApi, NodeApi, OutputMessage } from './job-api.js';
import { encodeJobsPage } from './job-pages.js';
import { addStandardServices, type Health } from './standard-services.js';

export const MAX_STREAMS_PER_CONNECTION = 128;
/** A CreateJob is small (its stored part is capped at MAX_REQUEST_BYTES); anything near this is abuse. */
export const MAX_RECEIVE_BYTES = 4 * 1024 * 1024;

/** A relayed chunk is already encoded: its bytes go on as they came. */
const encodeOutput = (message: OutputMessage): Buffer => (Buffer.isBuffer(message) ? message : encodeDataChunk(message));

/** What a server that is not part of a fleet answers FleetService calls with. */
const NO_FLEET: FleetApi = {
  getNodes: () => Promise.reject(Errors.notAFleet('there are no nodes to list')),
  drainNode: () => Promise.reject(Errors.notAFleet('there are no nodes to drain')),
  undrainNode: () => Promise.reject(Errors.notAFleet('there are no nodes to undrain')),
};

/** The fleet's services, when the server is a node of one; NodeService is then served too. */
export interface FleetServices {
  fleet: FleetApi;
  node: NodeApi;
}

export function createGrpcServer(service: JobApi, schedules: ScheduleApi, boundary: RpcBoundary, fleet?: FleetServices): { server: Server; health: Health } {
  const server = new Server({
    'grpc.max_receive_message_length': MAX_RECEIVE_BYTES,
    // One connection cannot hold more than this many calls open at once; its
    // client queues the rest. Enough for a harness following 100 jobs.
    'grpc.max_concurrent_streams': MAX_STREAMS_PER_CONNECTION,
    // Dead peers (a client host that vanished) are found and their
    // connections closed, streams included.
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
    'grpc.max_connection_idle_ms': 15 * 60_000,
    // Clients reconnect at least hourly, so a client certificate that has
    // expired or whose CA left the bundle stops working within the hour
    // (the deny list needs no reconnect); calls in flight are let finish.
    'grpc.max_connection_age_ms': 60 * 60_000,
  });
  const definition = {
    ...JobServiceService,
    getJobs: { ...JobServiceService.getJobs, responseSerialize: encodeJobsPage },
    getJobsStream: { ...JobServiceService.getJobsStream, responseSerialize: encodeOutput },
  };
  const health = addStandardServices(server);
  server.addService(definition, {
    createJob: boundary.unary('CreateJob', async (caller, req) => ({ job: await service.createJob(caller, req) })),
    getJob: boundary.unary('GetJob', async (caller, req) => ({ job: await service.getJob(caller, req) })),
    stopJob: boundary.unary('StopJob', async (caller, req) => ({ job: await service.stopJob(caller, req) })),
    getJobs: boundary.unary('GetJobs', (caller, req) => service.getJobs(caller, req)),
    getJobsStream: boundary.serverStream('GetJobsStream', (caller, call) => service.streamOutput(caller, call)),
    writeInput: boundary.clientStream('WriteInput', (caller, call) => service.writeInput(caller, call)),
    waitJob: boundary.unary('WaitJob', async (caller, req, signal) => ({ job: await service.waitJob(caller, req, signal) })),
    getQuota: boundary.unary('GetQuota', (caller, req) => service.getQuota(caller, req)),
  });
  server.addService(ScheduleServiceService, {
    createSchedule: boundary.unary('CreateSchedule', (caller, req) => schedules.createSchedule(caller, req)),
    getSchedule: boundary.unary('GetSchedule', (caller, req) => schedules.getSchedule(caller, req)),
    getSchedules: boundary.unary('GetSchedules', (caller) => schedules.getSchedules(caller)),
    pauseSchedule: boundary.unary('PauseSchedule', (caller, req) => schedules.pauseSchedule(caller, req)),
    resumeSchedule: boundary.unary('ResumeSchedule', (caller, req) => schedules.resumeSchedule(caller, req)),
    deleteSchedule: boundary.unary('DeleteSchedule', (caller, req) => schedules.deleteSchedule(caller, req)),
    runSchedule: boundary.unary('RunSchedule', (caller, req) => schedules.runSchedule(caller, req)),
  });
  const nodes = fleet?.fleet ?? NO_FLEET;
  server.addService(FleetServiceService, {
    getNodes: boundary.unary('GetNodes', (caller, req) => nodes.getNodes(caller, req)),
    drainNode: boundary.unary('DrainNode', (caller, req) => nodes.drainNode(caller, req)),
    undrainNode: boundary.unary('UndrainNode', (caller, req) => nodes.undrainNode(caller, req)),
  });
  if (fleet) server.addService(NodeServiceService, { startJob: boundary.unary('StartJob', (caller, req) => fleet.node.startJob(caller, req)) });
  return { server, health };
}

/** Binds the server; resolves with the port actually bound (port 0 picks a free one). */
export function bind(server: Server, listen: string, credentials: ServerCredentials): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.bindAsync(listen, credentials, (err, port) => (err ? reject(err) : resolve(port)));
  });
}
