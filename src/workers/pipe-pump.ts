// Moves a job's stdout and stderr into its output ring. When the ring is
// full both pipes are paused (their order is kept by sharing one queue), so a
// job that outruns the main thread blocks in write(2) on a full pipe: it is
// slowed down, its output is never dropped, and the worker never holds more
// than the chunks already read when the pause began.
import type { Readable } from 'node:stream';
import type { StreamId } from './protocol.js';
import type { RingWriter } from './ring-writer.js';

export interface OutputSource {
  stream: StreamId;
  readable: Readable;
}

/**
 * Resolves once every source has ended and all its bytes are in the ring.
 * onBlocked hears how long the pipes stayed paused, each time the ring was full.
 */
export function pumpOutput(sources: readonly OutputSource[], ring: RingWriter, onBlocked?: (ms: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const queue: { stream: StreamId; bytes: Uint8Array }[] = [];
    let open = sources.length;
    let parked = false;
    let parkedAt = 0;

    const flush = (): void => {
      while (queue.length > 0) {
        const head = queue[0]!;
        const taken = ring.write(head.stream, head.bytes);
        if (taken === head.bytes.length) {
          queue.shift();
          continue;
        }
        head.bytes = head.bytes.subarray(taken);
        if (!parked) {
          parked = true;
          parkedAt = performance.now();
          for (const { readable } of sources) readable.pause();
        }
        ring.waitForSpace().then(flush, reject);
        return;
      }
      if (parked) {
        parked = false;
        onBlocked?.(performance.now() - parkedAt);
        for (const { readable } of sources) readable.resume();
      }
      if (open === 0) resolve();
    };

    for (const { stream, readable } of sources) {
      readable.on('data', (bytes: Buffer) => {
        queue.push({ stream, bytes });
        if (!parked) flush();
      });
      readable.once('end', () => {
        open -= 1;
        if (!parked) flush();
      });
      readable.once('error', reject);
    }
    if (open === 0) resolve();
  });
}
