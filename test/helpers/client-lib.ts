// Small pieces for tests that drive a server through the client library (jobworker/client).
import { ServerError, type JobworkerClient } from 'jobworker/client';

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
