// The main thread's side of a job's stdin (CreateJobReq.stdin): one writer
// at a time, once; its bytes go to the job's supervisor thread (InputData)
// at most INPUT_WINDOW_BYTES ahead of what the job's pipe has taken
// (InputTaken), so a job that reads slowly holds its writer back, and so
// gRPC flow control holds the client, with nothing buffered without bound.
import type { MessagePort } from 'node:worker_threads';
import type { InputData, InputEnd, TaskToMain } from '../../workers/protocol.js';

/** Bytes sent to the supervisor thread and not yet taken by the job's pipe, at most (one message may pass it). */
export const INPUT_WINDOW_BYTES = 1024 * 1024;

/** Why a job's input takes no writer now, or why a write failed. */
export class InputRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputRefusedError';
  }
}

type State = 'open' | 'writing' | 'closing' | 'closed';

export class InputChannel {
  readonly #port: MessagePort;
  readonly #jobId: string;
  #state: State = 'open';
  /** Why it closed, when that was not its writer's end. */
  #closedBy: string | null = null;
  #inFlight = 0;
  #taken = 0;
  /** Its writer asked for the end (EOF). */
  #ending = false;
  readonly #closed = new AbortController();
  /** Woken as bytes are taken and when the input closes. */
  #wake: (() => void) | undefined;

  constructor(jobId: string, port: MessagePort) {
    this.#jobId = jobId;
    this.#port = port;
  }

  /** Bytes the job's stdin has taken. */
  get taken(): number {
    return this.#taken;
  }

  /** Aborted once the input is closed, whoever closed it: a writer waiting for its client's next bytes stops waiting. */
  get closed(): AbortSignal {
    return this.#closed.signal;
  }

  /** A message from the job's supervisor thread (the runner passes each on). */
  onMessage(message: TaskToMain): void {
    if (message.type === 'input-taken') {
      this.#inFlight -= message.bytes;
      this.#taken += message.bytes;
    } else if (message.type === 'input-closed') {
      this.#close(message.error);
    } else {
      return;
    }
    this.#wake?.();
  }

  /** The job has ended (its thread may have died without saying so): no write can go on. */
  jobEnded(): void {
    this.#close('the job ended');
    this.#wake?.();
  }

  /** Makes the caller the input's one writer; InputRefusedError when it cannot be. */
  claim(): void {
    if (this.#state === 'open') {
      this.#state = 'writing';
      return;
    }
    if (this.#state === 'writing') throw new InputRefusedError(`job ${this.#jobId} already has a writer on its input (one at a time)`);
    throw new InputRefusedError(`job ${this.#jobId}'s input was closed${this.#closedBy ? ` (${this.#closedBy})` : ' by its writer'}: a job's input takes one writer, once`);
  }

  /**
   * Sends bytes on once the window has room; InputRefusedError when the
   * input closed first (the job stopped reading, or ended).
   */
  async write(data: Uint8Array, signal: AbortSignal): Promise<void> {
    while (this.#state === 'writing' && this.#inFlight >= INPUT_WINDOW_BYTES && !signal.aborted) await this.#changed(signal);
    this.#failIfClosed();
    if (signal.aborted || data.length === 0) return;
    // A copy of its own, moved to the thread: the request's bytes may be a view of a larger buffer.
    const copy = new Uint8Array(data);
    this.#inFlight += copy.length;
    const message: InputData = { type: 'input', data: copy };
    this.#port.postMessage(message, [copy.buffer]);
  }

  /**
   * Closes the job's stdin. With wait, resolves once the job has taken
   * every byte (it then reads EOF), or throws InputRefusedError when it
   * stopped reading first; without, the close happens as it may (a writer
   * that went away).
   */
  async end(signal?: AbortSignal): Promise<void> {
    this.#ending = true;
    if (this.#state === 'writing') {
      this.#state = 'closing';
      const end: InputEnd = { type: 'input-end' };
      this.#port.postMessage(end);
    }
    if (!signal) return;
    while (this.#state === 'closing' && !signal.aborted) await this.#changed(signal);
    this.#failIfClosed();
  }

  #failIfClosed(): void {
    if (this.#state !== 'closed' || this.#closedBy === null) return;
    throw new InputRefusedError(`job ${this.#jobId} took ${this.#taken} bytes of input, then ${this.#closedBy}`);
  }

  #close(error: string | null): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    // The job ended before the end reached its thread, with every byte taken: the writer's end is what happened.
    this.#closedBy = this.#ending && this.#inFlight === 0 ? null : error;
    this.#closed.abort();
  }

  #changed(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        signal.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      this.#wake = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
