// Reading a WriteInput call: its first message (which names the job), then
// the rest, until the client ends the call or goes away. A cancelled call
// may never end its stream, so its going away ends the reading too.
import { unlessAborted } from '../../common/abortable.js';
import type { InputChunk } from '../../gen/jobworker/v1/jobworker.js';
import { Errors, quoted } from '../errors.js';
import type { InputCall } from './job-api.js';

export interface InputStream {
  /** The first message: its id names the job. */
  first: InputChunk;
  /** The next message's data, or null once the call has ended, the client has gone, or `stop` aborts (its input closed). */
  next(stop?: AbortSignal): Promise<Buffer | null>;
  /** Aborted when the client goes away. */
  gone: AbortSignal;
  /** Stop listening to the call. */
  close(): void;
}

export async function openInput(call: InputCall): Promise<InputStream> {
  const gone = new AbortController();
  const onCancel = (): void => gone.abort();
  call.once('cancelled', onCancel);
  const close = (): void => void call.off('cancelled', onCancel);
  const iterator = call[Symbol.asyncIterator]() as AsyncIterator<InputChunk>;
  // Not a race with one promise of the client's going away: each race would leave a reaction on it
  // holding that message (its data) for the whole call, 256 MiB for 256 MiB of input (bench scenario 2).
  const goneAway: IteratorResult<InputChunk> = { done: true, value: undefined };
  const read = (): Promise<IteratorResult<InputChunk>> => unlessAborted(iterator.next(), gone.signal, goneAway);
  const first = await read();
  if (first.done) {
    close();
    throw Errors.invalidArgument('WriteInput: the first message must name the job (id)');
  }
  const next = async (stop?: AbortSignal): Promise<Buffer | null> => {
    const message = await unlessAborted(read(), stop, null);
    if (message === null || message.done) return null;
    if (message.value.id !== '' && message.value.id !== first.value.id) {
      throw Errors.invalidArgument(`WriteInput: a call writes to one job (${first.value.id}), got ${quoted(message.value.id)}`);
    }
    return message.value.data;
  };
  return { first: first.value, next, gone: gone.signal, close };
}
