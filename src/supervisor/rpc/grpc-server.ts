// The gRPC server: its transport limits, the JobService behind the RPC
// boundary, and the standard health and reflection services beside it.
import { Server, type ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import { JobServiceService, type DataChunk, type GetJobsStreamReq } from '../../gen/jobworker/v1/jobworker.js';
import type { RpcBoundary } from './boundary.js';
import { encodeDataChunk } from './chunk-encoder.js';
import { encodeJobsPage } from './job-pages.js';
import type { JobService } from './job-service.js';
import { addStandardServices, type Health } from './standard-services.js';

export const MAX_STREAMS_PER_CONNECTION = 128;
/** A CreateJob is small (its stored part is capped at MAX_REQUEST_BYTES); anything near this is abuse. */
export const MAX_RECEIVE_BYTES = 4 * 1024 * 1024;

export function createGrpcServer(service: JobService, boundary: RpcBoundary): { server: Server; health: Health } {
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
    getJobsStream: { ...JobServiceService.getJobsStream, responseSerialize: encodeDataChunk },
  };
  const health = addStandardServices(server);
  server.addService(definition, {
    createJob: boundary.unary('CreateJob', async (caller, req) => ({ job: await service.createJob(caller, req) })),
    getJob: boundary.unary('GetJob', async (_caller, req) => ({ job: await service.getJob(req) })),
    stopJob: boundary.unary('StopJob', async (_caller, req) => ({ job: await service.stopJob(req) })),
    getJobs: boundary.unary('GetJobs', (_caller, req) => service.getJobs(req)),
    getJobsStream: boundary.serverStream('GetJobsStream', (_caller, call: ServerWritableStream<GetJobsStreamReq, DataChunk>) => service.streamOutput(call)),
  });
  return { server, health };
}

/** Binds the server; resolves with the port actually bound (port 0 picks a free one). */
export function bind(server: Server, listen: string, credentials: ServerCredentials): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.bindAsync(listen, credentials, (err, port) => (err ? reject(err) : resolve(port)));
  });
}
