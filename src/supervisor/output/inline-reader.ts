// The output path the rings replaced: the main thread reading a job's pipes
// itself. Only `--output-path inline` uses it, so that bench scenario 3 can
// measure what moving this work off the RPC thread buys (see OutputPath).
// It is bounded as the ring path is: while the log has no room (its disk is
// slow or full), the pipes are not read, and the job waits on them.
import net from 'node:net';
import { StreamId } from '../../workers/protocol.js';
import type { OutputLog } from './log.js';
import type { PumpTarget } from './ring-reader.js';

export interface InlineReader {
  /** Resolves once both pipes have ended (or failed). */
  done: Promise<void>;
  /** Stops reading: for a job whose supervision failed, before its log is closed. */
  stop(): void;
}

/** Appends everything read from the two pipes to the log, pausing while it has no room. */
export function readPipesInline([stdout, stderr]: [number, number], log: PumpTarget & Pick<OutputLog, 'closed'>): InlineReader {
  const sockets: net.Socket[] = [];
  const read = (fd: number, stream: StreamId) =>
    new Promise<void>((resolve) => {
      const socket = new net.Socket({ fd, readable: true, writable: false });
      sockets.push(socket);
      socket.on('data', (bytes: Buffer) => {
        if (log.closed) return;
        log.append(stream, bytes, Date.now());
        if (log.room() > 0 || socket.isPaused()) return;
        socket.pause();
        void log.whenRoom().then(() => socket.resume());
      });
      // 'close' follows the end, an error or stop(); the error itself needs a listener, or it is thrown.
      socket.once('close', () => resolve());
      socket.on('error', () => undefined);
    });
  const done = Promise.all([read(stdout, StreamId.Stdout), read(stderr, StreamId.Stderr)]).then(() => undefined);
  return { done, stop: () => sockets.forEach((socket) => socket.destroy()) };
}
