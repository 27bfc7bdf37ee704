// Small pieces for tests that drive a server through the client library (jobworker/client).
import { connect, ServerError, type JobworkerClient } from 'jobworker/client';
import type { TestServer } from './server.js';

/** Everything the job writes, stdout and stderr together, followed to its end. */
export async function outputOf(client: JobworkerClient, id: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of client.stream(id, { follow: true })) chunks.push(Buffer.from(chunk.data));
  return Buffer.concat(chunks).toString();
}

/** The server's refusal a call ends with; anything else (success included) fails the test. */
export async function refusal(promise: Promise<unknown>): Promise<ServerError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ServerError)) throw new Error(`expected a ServerError, got ${String(err)}`);
  return err;
}

/** A client library connection to a test server with the role's certificate; the caller closes it. */
export function clientOf(server: TestServer, role: 'admin' | 'viewer' = 'admin'): JobworkerClient {
  const env = server.env(role);
  return connect({ server: server.address, ca: env.JOBWORKER_CA!, cert: env.JOBWORKER_CERT!, key: env.JOBWORKER_KEY! });
}
