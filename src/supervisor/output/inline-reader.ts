// The output path the rings replaced: the main thread reading a job's pipes
// itself. Only `--output-path inline` uses it, so that bench scenario 3 can
// measure what moving this work off the RPC thread buys (see OutputPath).
import net from 'node:net';
import { StreamId } from '../../workers/protocol.js';
import type { OutputLog } from './log.js';

export interface InlineReader {
  /** Resolves once both pipes have ended (or failed). */
  done: Promise<void>;
  /** Stops reading: for a job whose supervision failed, before its log is closed. */
  stop(): void;
}

/** Appends everything read from the two pipes to the log. */
export function readPipesInline([stdout, stderr]: [number, number], log: Pick<OutputLog, 'append' | 'closed'>): InlineReader {
  const sockets: net.Socket[] = [];
  const read = (fd: number, stream: StreamId) =>
    new Promise<void>((resolve) => {
      const socket = new net.Socket({ fd, readable: true, writable: false });
      sockets.push(socket);
      socket.on('data', (bytes: Buffer) => {
        if (!log.closed) log.append(stream, bytes);
      });
      // 'close' follows the end, an error or stop(); the error itself needs a listener, or it is thrown.
      socket.once('close', () => resolve());
      socket.on('error', () => undefined);
    });
  const done = Promise.all([read(stdout, StreamId.Stdout), read(stderr, StreamId.Stderr)]).then(() => undefined);
  return { done, stop: () => sockets.forEach((socket) => socket.destroy()) };
}
