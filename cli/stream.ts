// jobctl stream: a job's output (all that is kept, or from --since / the
// last --tail lines), byte for byte, stdout to stdout and stderr to stderr.
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { Command, Option } from 'clipanion';
import { OutputStream, type DataChunk } from '../src/gen/jobworker/v1/jobworker.js';
import type { JobworkerClient, StreamOptions } from '../src/client/client.js';
import { OutputClosedError } from './errors.js';
import { chunkJsonLine } from './format.js';
import { JobctlCommand, isLineCount, isSince } from './options.js';

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

/**
 * Puts the chunk's time before every line that starts in it, as
 * `docker logs --timestamps` does; one per output, each remembering whether
 * its last chunk ended a line.
 */
class LineStamper {
  #atLineStart = true;

  stamp(chunk: DataChunk): Buffer {
    const prefix = Buffer.from(`${(chunk.time ?? new Date(0)).toISOString()} `);
    const data = Buffer.from(chunk.data.buffer, chunk.data.byteOffset, chunk.data.byteLength);
    const parts: Buffer[] = [];
    let from = 0;
    while (from < data.length) {
      if (this.#atLineStart) parts.push(prefix);
      const newline = data.indexOf(10, from);
      const end = newline < 0 ? data.length : newline + 1;
      parts.push(data.subarray(from, end));
      this.#atLineStart = newline >= 0;
      from = end;
    }
    return Buffer.concat(parts);
  }
}

/** Writes each chunk of a job's output where it belongs (or as a JSON line), holding the stream back while the output is slow. */
export function outputWriter(outputs: Outputs, json: boolean, timestamps: boolean): (chunk: DataChunk) => Promise<void> {
  const stdout = new Sink(outputs.stdout);
  const stderr = new Sink(outputs.stderr);
  const stampers = timestamps ? { stdout: new LineStamper(), stderr: new LineStamper() } : undefined;
  return (chunk) => {
    if (json) return stdout.write(chunkJsonLine(chunk));
    const toStderr = chunk.stream === OutputStream.OUTPUT_STREAM_STDERR;
    const data = stampers ? stampers[toStderr ? 'stderr' : 'stdout'].stamp(chunk) : chunk.data;
    return (toStderr ? stderr : stdout).write(data);
  };
}

export class StreamCommand extends JobctlCommand {
  static override paths = [['stream']];
  static override usage = Command.Usage({
    description: "Print a job's output: all of it, or from --since or the last --tail lines",
    details: `
      The job's stdout goes to stdout and its stderr to stderr, byte for byte (binary output is not altered). Without \`--follow\` jobctl prints what the job has written so far and exits; with it, it goes on until the job has ended and all of its output is out. Exits 0 when the stream ends, whatever the job's exit code (\`jobctl get\` has it).

      \`--since\` starts with the output that arrived at or after a time (\`10m\` back from now, or \`2026-11-29T12:00:00Z\`); \`--tail N\` with the last N lines written so far; given both, whichever starts later. \`--timestamps\` puts the time the server read each line's first byte (RFC 3339, UTC, milliseconds) and a space before the line. Output the server discarded for its \`--max-output-bytes\` is skipped.

      With \`--json\`, every chunk is one JSON line on stdout: \`{"stream":"stdout","offset":0,"data_base64":"..."}\` (with \`--timestamps\`, also \`"time"\`); \`offset\` counts bytes of stdout and stderr together, in the order the job wrote them.
    `,
    examples: [
      ['Output so far', '$0 stream 123e4567-e89b-12d3-a456-426614174000'],
      ['Follow until the job ends', '$0 stream --follow 123e4567-e89b-12d3-a456-426614174000'],
      ['The last 100 lines of the last 10 minutes, with times, then follow', '$0 stream --timestamps --since 10m --tail 100 --follow 123e4567-e89b-12d3-a456-426614174000'],
      ['Only stdout, into a file', '$0 stream 123e4567-e89b-12d3-a456-426614174000 2>/dev/null > out.bin'],
    ],
  });

  follow = Option.Boolean('-f,--follow', false, { description: 'Keep streaming until the job has ended' });
  since = Option.String('--since', { description: 'Only output that arrived at or after this time: 90s, 10m, 2h, 1d back from now, or an RFC 3339 time', validator: isSince });
  tail = Option.String('--tail', { description: 'Only the last N lines (of the output there is now)', validator: isLineCount });
  timestamps = Option.Boolean('-t,--timestamps', false, { description: 'Put the time each line arrived before it' });
  id = Option.String({ name: 'id|name' });

  protected override async run(client: JobworkerClient): Promise<number> {
    const options: StreamOptions = { follow: this.follow, since: this.since, tailLines: this.tail, timestamps: this.timestamps };
    const write = outputWriter(this.context, this.json, this.timestamps);
    for await (const chunk of client.stream(this.id, options)) await write(chunk);
    return 0;
  }
}
