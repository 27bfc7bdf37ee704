// jobctl stream: a job's output from its first byte, byte for byte, stdout
// to stdout and stderr to stderr.
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { Command, Option } from 'clipanion';
import { OutputStream, type GetJobsStreamReq } from '../src/gen/jobworker/v1/jobworker.js';
import type { Session } from './connect.js';
import { OutputClosedError } from './errors.js';
import { chunkJsonLine } from './format.js';
import { JobctlCommand } from './options.js';

/**
 * A local output with backpressure: write() settles once the data is taken
 * (at once, or at 'drain'), so a slow reader of our stdout holds the gRPC
 * stream back instead of jobctl buffering the job's output without bound.
 */
class Sink {
  #error: unknown;

  constructor(readonly target: Writable) {
    // Kept for the rest of the process: an EPIPE is emitted asynchronously,
    // possibly after the last write, and an unheard 'error' would crash
    // jobctl with a stack trace.
    target.on('error', (error: unknown) => {
      this.#error ??= error;
    });
  }

  async write(data: Uint8Array | string): Promise<void> {
    if (this.#error !== undefined) throw new OutputClosedError(this.#error);
    if (this.target.write(data)) return;
    try {
      await once(this.target, 'drain');
    } catch (error) {
      throw new OutputClosedError(error);
    }
  }
}

export interface Outputs {
  stdout: Writable;
  stderr: Writable;
}

/** Copies a job's output until the server ends the stream (with follow: once the job has ended and every byte is out). */
export async function copyOutput(session: Session, request: GetJobsStreamReq, outputs: Outputs, json: boolean): Promise<void> {
  const stdout = new Sink(outputs.stdout);
  const stderr = new Sink(outputs.stderr);
  await session.stream(request, (chunk) => {
    if (json) return stdout.write(chunkJsonLine(chunk));
    return (chunk.stream === OutputStream.OUTPUT_STREAM_STDERR ? stderr : stdout).write(chunk.data);
  });
}

export class StreamCommand extends JobctlCommand {
  static override paths = [['stream']];
  static override usage = Command.Usage({
    description: "Print a job's output from its first byte",
    details: `
      The job's stdout goes to stdout and its stderr to stderr, byte for byte (binary output is not altered). Without \`--follow\` jobctl prints what the job has written so far and exits; with it, it goes on until the job has ended and all of its output is out. Exits 0 when the stream ends, whatever the job's exit code (\`jobctl get\` has it).

      With \`--json\`, every chunk is one JSON line on stdout: \`{"stream":"stdout","offset":0,"data_base64":"..."}\`; \`offset\` counts bytes of stdout and stderr together, in the order the job wrote them.
    `,
    examples: [
      ['Output so far', '$0 stream 123e4567-e89b-12d3-a456-426614174000'],
      ['Follow until the job ends', '$0 stream --follow 123e4567-e89b-12d3-a456-426614174000'],
      ['Only stdout, into a file', '$0 stream 123e4567-e89b-12d3-a456-426614174000 2>/dev/null > out.bin'],
    ],
  });

  follow = Option.Boolean('-f,--follow', false, { description: 'Keep streaming until the job has ended' });
  id = Option.String({ name: 'id' });

  protected override async run(session: Session): Promise<number> {
    await copyOutput(session, { id: this.id, follow: this.follow }, this.context, this.json);
    return 0;
  }
}
