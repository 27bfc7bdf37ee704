// A job's stdin, on its supervisor thread (RunJobTask.stdin): the bytes the
// main thread sends, written to the pipe job-init made on the job's fd 0.
// Each InputData is answered once the pipe has taken it: the main thread
// sends more only as those answers come, so a job that reads slowly holds
// its writer back instead of filling memory here.
import type net from 'node:net';
import { messageOf } from '../common/error-message.js';
import type { InputClosed, InputTaken, TaskToMain } from './protocol.js';

function why(err: NodeJS.ErrnoException): string {
  return err.code === 'EPIPE' ? 'the job closed its stdin' : messageOf(err);
}

export class JobInput {
  readonly #pipe: net.Socket;
  readonly #post: (message: TaskToMain) => void;
  #closed = false;

  constructor(pipe: net.Socket, post: (message: TaskToMain) => void) {
    this.#pipe = pipe;
    this.#post = post;
    // EPIPE once nothing reads it (the job closed its stdin or ended): what is still queued is dropped.
    pipe.on('error', (err: NodeJS.ErrnoException) => this.#close(why(err)));
  }

  write(data: Uint8Array): void {
    if (this.#closed) return;
    this.#pipe.write(data, (err) => {
      if (err || this.#closed) return;
      const taken: InputTaken = { type: 'input-taken', bytes: data.length };
      this.#post(taken);
    });
  }

  /** EOF for the job, once it has taken every byte written. */
  end(): void {
    if (this.#closed) return;
    // Node calls this with the error of a write still queued (EPIPE) before it emits 'error'.
    this.#pipe.end((err?: NodeJS.ErrnoException | null) => this.#close(err ? why(err) : null));
  }

  /** The job has ended: nothing will read what is left. */
  destroy(): void {
    this.#close('the job ended');
  }

  #close(error: string | null): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pipe.destroy();
    const closed: InputClosed = { type: 'input-closed', error };
    this.#post(closed);
  }
}
