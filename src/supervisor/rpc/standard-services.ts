// The gRPC services every operator's tooling expects beside ours:
// grpc.health.v1.Health (load balancers, probes, `grpc_health_probe`) and
// server reflection (grpcurl without the .proto files). Both sit behind the
// same mutual TLS as the JobService; neither needs a role.
import { fileURLToPath } from 'node:url';
import type { Server } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';

const PROTO_ROOT = fileURLToPath(new URL('../../../../proto', import.meta.url));
export const JOB_SERVICE_NAME = 'jobworker.v1.JobService';

export interface Health {
  /** The cgroup driver and the supervisor pool are ready: calls will be served. */
  serving(): void;
  /** Shutting down: probes should send traffic elsewhere. */
  notServing(): void;
}

/** Adds both to the server; health starts NOT_SERVING, for the whole server ("") and for the JobService. */
export function addStandardServices(server: Server): Health {
  const health = new HealthImplementation({ '': 'NOT_SERVING', [JOB_SERVICE_NAME]: 'NOT_SERVING' });
  health.addToServer(server);
  // Reflection describes the API from the same .proto files the stubs are generated from.
  // keepCase: field names as the .proto has them (max_cpu_percent), which is what grpcurl must send.
  const definitions = loadSync('jobworker/v1/jobworker.proto', { includeDirs: [PROTO_ROOT], keepCase: true });
  new ReflectionService(definitions).addToServer(server);
  const set = (status: 'SERVING' | 'NOT_SERVING') => (): void => {
    for (const name of ['', JOB_SERVICE_NAME]) health.setStatus(name, status);
  };
  return { serving: set('SERVING'), notServing: set('NOT_SERVING') };
}
