// Memory for the blocks of jobs' output tails (log.ts), reused. A new block
// is memory V8 maps on its own: every page of it faults and is zeroed as the
// first bytes are copied in, and is unmapped (a TLB shootdown across the
// server's threads) once collected. With four jobs writing flat out, that
// was a third of the RPC thread's time (bench scenario 3's profile: copying
// a ring into a fresh block ran at 1.5 GB/s, into a used one at 30 GB/s).
//
// A block comes back only once no reader can still see it: a log gives it
// back when it drops the block (written, and no longer kept for
// followers), and readers only ever see a block's bytes inside a
// synchronous call (cursor.ts, SliceTaker), never across an await.

/** Bytes of free blocks kept at most, all sizes together: past this, a returned block is left to the collector. */
const KEEP_BYTES = 4 * 1024 * 1024;

const free = new Map<number, Buffer[]>();
let freeBytes = 0;

/**
 * Memory for a block. A resizable ArrayBuffer (never resized) is mapped by
 * V8 on its own and unmapped when collected; a plain one comes from malloc,
 * and once glibc's mmap threshold has risen past the block size (it does
 * after the first free) a chatty job's stream of dead blocks leaves the
 * heap grown by ~100 MB that is never given back (measured: 1 GiB written).
 * Its bytes are whatever the last user left: a block is read only up to
 * what its log has written into it.
 */
export function takeBlockMemory(size: number): Buffer {
  const reused = free.get(size)?.pop();
  if (reused) {
    freeBytes -= size;
    return reused;
  }
  return Buffer.from(new ArrayBuffer(size, { maxByteLength: size }));
}

/** Memory nothing will read or write again (its log dropped the block), for the next block of its size. */
export function giveBlockMemory(memory: Buffer): void {
  if (freeBytes + memory.length > KEEP_BYTES) return;
  let list = free.get(memory.length);
  if (!list) free.set(memory.length, (list = []));
  list.push(memory);
  freeBytes += memory.length;
}

/** Bytes kept for reuse now: for tests. */
export function pooledBlockBytes(): number {
  return freeBytes;
}
