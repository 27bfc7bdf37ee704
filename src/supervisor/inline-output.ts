// The output path the rings replaced: the main thread reading a job's pipes
// itself. Only `--output-path inline` uses it, so that bench scenario 3 can
// measure what moving this work off the RPC thread buys (see OutputPath).
import net from 'node:net';
import { StreamId } from '../workers/protocol.js';
import type { OutputLog } from './output-log.js';

/** Appends everything read from the two pipes to the log; resolves once both have ended (or failed). */
export function readPipesInline([stdout, stderr]: [number, number], log: OutputLog): Promise<void> {
  const read = (fd: number, stream: StreamId) =>
    new Promise<void>((resolve) => {
      const socket = new net.Socket({ fd, readable: true, writable: false });
      socket.on('data', (bytes: Buffer) => log.append(stream, bytes));
      socket.once('end', resolve);
      socket.once('error', () => resolve());
    });
  return Promise.all([read(stdout, StreamId.Stdout), read(stderr, StreamId.Stderr)]).then(() => undefined);
}
