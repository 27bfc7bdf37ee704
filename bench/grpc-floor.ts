// A bare grpc-js server that answers GetJobsStream with N MiB of zeros from
// memory, in chunks of jobworkerd's largest size (MAX_CHUNK_BYTES: what one
// follower alone gets), over the same mutual TLS: what grpc-js itself can
// stream here, the floor under jobworkerd's own output path (scenario 2).
// Run as `node dist/bench/grpc-floor.js <pki dir> <MiB>`; prints its port.
import fs from 'node:fs';
import path from 'node:path';
import { Server, ServerCredentials, status, type ServerWritableStream, type UntypedHandleCall } from '@grpc/grpc-js';
import { JobServiceService, OutputStream, type DataChunk, type GetJobsStreamReq } from '../src/gen/jobworker/v1/jobworker.js';
import { encodeDataChunk } from '../src/supervisor/rpc/chunk-encoder.js';
import { MAX_CHUNK_BYTES } from '../src/supervisor/rpc/job-service.js';
import { MAX_STREAMS_PER_CONNECTION } from '../src/supervisor/rpc/grpc-server.js';

const [pki, mib] = process.argv.slice(2);
const read = (name: string) => fs.readFileSync(path.join(pki!, name));
const chunk = Buffer.alloc(MAX_CHUNK_BYTES);
const total = Number(mib) * 2 ** 20;

async function stream(call: ServerWritableStream<GetJobsStreamReq, DataChunk>): Promise<void> {
  for (let offset = 0; offset < total; offset += chunk.length) {
    const message: DataChunk = { data: chunk.subarray(0, Math.min(chunk.length, total - offset)), stream: OutputStream.OUTPUT_STREAM_STDOUT, offset, time: undefined };
    if (!call.write(message)) await new Promise((resolve) => call.once('drain', resolve));
  }
  call.end();
}

const unimplemented: UntypedHandleCall = (_call: unknown, callback: (err: { code: number }) => void) => callback({ code: status.UNIMPLEMENTED });
const server = new Server({ 'grpc.max_concurrent_streams': MAX_STREAMS_PER_CONNECTION });
server.addService(
  { ...JobServiceService, getJobsStream: { ...JobServiceService.getJobsStream, responseSerialize: encodeDataChunk } },
  { createJob: unimplemented, getJob: unimplemented, stopJob: unimplemented, getJobs: unimplemented, getJobsStream: (call: ServerWritableStream<GetJobsStreamReq, DataChunk>) => void stream(call) },
);
const credentials = ServerCredentials.createSsl(read('ca-cert.pem'), [{ private_key: read('server-key.pem'), cert_chain: read('server-cert.pem') }], true);
server.bindAsync('127.0.0.1:0', credentials, (err, port) => {
  if (err) throw err;
  process.stdout.write(`${port}\n`);
});
