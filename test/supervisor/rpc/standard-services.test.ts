// gRPC health checking and server reflection on the real server, through
// its mutual TLS, with clients made from the services' own .proto files (as
// grpc_health_probe and grpcurl would speak to it).
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { credentials, loadPackageDefinition, type ClientDuplexStream, type ClientReadableStream, type GrpcObject, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { startTestServer, type TestServer } from '../../helpers/server.js';

const REFLECTION_PROTO = path.join(path.dirname(createRequire(import.meta.url).resolve('@grpc/reflection')), '../proto/grpc/reflection/v1/reflection.proto');

/** A client of `service` (e.g. "grpc.health.v1.Health") from its .proto, with the admin certificate. */
async function clientOf(ts: TestServer, protoFile: string, service: string): Promise<InstanceType<ServiceClientConstructor>> {
  let object: GrpcObject | ServiceClientConstructor = loadPackageDefinition(loadSync(protoFile, { enums: String }));
  for (const name of service.split('.')) object = (object as GrpcObject)[name] as GrpcObject | ServiceClientConstructor;
  const file = (name: string) => readFile(path.join(ts.pki, name));
  const creds = credentials.createSsl(await file('ca-cert.pem'), await file('client-admin-key.pem'), await file('client-admin-cert.pem'));
  const Client = object as ServiceClientConstructor;
  return new Client(`localhost:${ts.server.port}`, creds);
}

type Status = { status: string };

test('health: SERVING once the server listens, for the server and for the JobService; a watcher hears NOT_SERVING at shutdown', async (t) => {
  const ts = await startTestServer(t);
  const health = await clientOf(ts, healthProto, 'grpc.health.v1.Health');
  t.teardown(() => health.close());
  const check = (service: string) =>
    new Promise<Status>((resolve, reject) => (health.check as (req: object, cb: (err: Error | null, res: Status) => void) => void)({ service }, (err, res) => (err ? reject(err) : resolve(res))));
  t.is((await check('')).status, 'SERVING');
  t.is((await check('jobworker.v1.JobService')).status, 'SERVING');

  const watch = (health.watch as (req: object) => ClientReadableStream<Status>)({ service: '' });
  watch.on('error', () => undefined); // the stream ends with the server
  const seen: string[] = [];
  const notServing = new Promise<void>((resolve) =>
    watch.on('data', ({ status }: Status) => {
      seen.push(status);
      if (status === 'NOT_SERVING') resolve();
    }),
  );
  await new Promise((resolve) => watch.once('data', resolve));
  await Promise.all([ts.stop(), notServing]);
  t.deepEqual(seen, ['SERVING', 'NOT_SERVING']);
});

test('reflection: lists the JobService and describes it, methods and fields', async (t) => {
  const ts = await startTestServer(t);
  const reflection = await clientOf(ts, REFLECTION_PROTO, 'grpc.reflection.v1.ServerReflection');
  t.teardown(() => reflection.close());
  const ask = async (request: object): Promise<Record<string, unknown>> => {
    const call = (reflection.serverReflectionInfo as () => ClientDuplexStream<object, Record<string, unknown>>)();
    const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
      call.once('data', resolve);
      call.once('error', reject);
    });
    call.write(request);
    call.end();
    return answer;
  };
  const listed = (await ask({ listServices: '' })) as { listServicesResponse: { service: { name: string }[] } };
  const names = listed.listServicesResponse.service.map((s) => s.name);
  t.true(names.includes('jobworker.v1.JobService'), names.join(', '));
  const described = (await ask({ fileContainingSymbol: 'jobworker.v1.JobService' })) as { fileDescriptorResponse?: { fileDescriptorProto: Buffer[] } };
  const files = described.fileDescriptorResponse?.fileDescriptorProto ?? [];
  const text = files.map((file) => Buffer.from(file).toString('latin1')).join('\n');
  // The service with its methods, and the fields under their .proto names (what grpcurl sends).
  for (const name of ['jobworker.v1', 'JobService', 'CreateJob', 'GetJobsStream', 'max_cpu_percent', 'pid_namespace']) t.true(text.includes(name), name);
});
