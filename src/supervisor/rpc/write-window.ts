// Backpressure for a server stream: how far a writer may run ahead of what
// grpc-js has handed to the connection.
import type { ServerWritableStream } from '@grpc/grpc-js';

/** Chunks a stream may have handed to grpc-js and not yet seen written to the connection. */
export const CHUNKS_IN_FLIGHT = 2;

/**
 * Holds a stream's writer back once CHUNKS_IN_FLIGHT chunks are queued.
 * grpc-js queues 16 messages per call before write() says false: at 64 KiB
 * a chunk (a hundred streams get no more, job-service.ts chunkBytes), plus
 * its encoded copy, a hundred followers held 2 MiB each.
 */
export class WriteWindow {
  #inFlight = 0;
  #wake: (() => void) | undefined;

  constructor(
    readonly call: ServerWritableStream<unknown, unknown>,
    readonly signal: AbortSignal,
  ) {
    // A cancelled call never calls back: the signal ends the wait.
    signal.addEventListener('abort', () => this.#wake?.(), { once: true });
  }

  /** `written` is called once grpc-js has the chunk written (never for a call that went away). */
  async write(chunk: unknown, written?: () => void): Promise<void> {
    this.#inFlight += 1;
    this.call.write(chunk, () => {
      this.#inFlight -= 1;
      written?.();
      this.#wake?.();
    });
    if (this.#inFlight < CHUNKS_IN_FLIGHT) return;
    try {
      while (this.#inFlight >= CHUNKS_IN_FLIGHT) {
        if (this.signal.aborted) throw this.signal.reason;
        await new Promise<void>((resolve) => (this.#wake = resolve));
      }
    } finally {
      this.#wake = undefined;
    }
  }
}

