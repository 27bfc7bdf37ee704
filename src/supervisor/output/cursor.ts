// Reading a job's output log: from the tail in memory when the bytes are
// still there, else from the job's files. A cursor is one reader's position
// and the files it has open; many cursors share one log.
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { ENTRY_BYTES, entryLength, entryOffset, entryStream, entryTime, readEntry, searchIndex, segmentName, type Segment } from './format.js';
import { OutputUnreadableError, type Block, type OutputLog, type OutputSlice } from './log.js';

/**
 * Receives each slice a cursor reads. Its data may be a view into the log's
 * tail, whose memory is reused once the log drops the block
 * (block-pool.ts), or into the cursor's own read buffer, reused by its next
 * read: it is valid only during the call. Copy or encode what you keep;
 * never hold it across an await.
 */
export type SliceTaker<T> = (slice: OutputSlice) => T;

/**
 * Reads from disk this big and bigger go into one buffer the cursor keeps
 * (the chunks of the few fastest streams: job-service.ts chunkBytes), not
 * into new memory every time, faulted in page by page and collected.
 */
const REUSED_READ_BYTES = 128 * 1024;
/** Index entries read from disk at a time. */
const BATCH_ENTRIES = 819;
/** Bytes read at a time when searching backwards for line ends. */
const SCAN_BYTES = 64 * 1024;

export class OutputCursor {
  readonly #log: OutputLog;
  offset: number;
  #segment: Segment | null = null;
  #data: FileHandle | null = null;
  #index: FileHandle | null = null;
  /** Entries of #segment read from disk, #batchCount of them. */
  #batch = Buffer.alloc(0);
  #batchCount = 0;
  /** The batch entry the last read started in. */
  #batchPos = 0;
  /** Closed by its reader, maybe while a read was opening files. */
  #closed = false;
  /** Where reads of REUSED_READ_BYTES and more go. */
  #readBuffer: Buffer | null = null;
  /** A next() in flight: a second one would read into the same buffer. */
  #reading = false;

  constructor(log: OutputLog, offset: number) {
    this.#log = log;
    this.offset = offset;
  }

  /**
   * Hands `take` the next bytes from the cursor, at most maxBytes, all of one
   * stream; with `split`, all of one frame (so they have one arrival time);
   * resolves with what `take` returned, or null at the log's end. Skips
   * ahead when the bytes at the cursor were discarded: the slice's offset
   * says where it is.
   */
  async next<T>(maxBytes: number, split: boolean, take: SliceTaker<T>): Promise<T | null> {
    if (this.#reading) throw new Error('a cursor reads one slice at a time');
    this.#reading = true;
    try {
      return await this.#next(maxBytes, split, take);
    } finally {
      this.#reading = false;
    }
  }

  async #next<T>(maxBytes: number, split: boolean, take: SliceTaker<T>): Promise<T | null> {
    const log = this.#log;
    if (log.removed) throw new OutputUnreadableError('the job was removed from the history while its output was being read');
    for (;;) {
      if (this.offset < log.start) this.offset = log.start;
      if (this.offset >= log.length || maxBytes <= 0) return null;
      const blocks = log.blocks;
      let slice: OutputSlice | null;
      if (blocks.length > 0 && this.offset >= blocks[0]!.start) {
        // From memory: handed over in the same synchronous run that found it, before its block can be dropped and reused.
        slice = fromBlocks(blocks, this.offset, maxBytes, split);
        // Caught up with the tail: the read buffer is not needed while it keeps up.
        this.#readBuffer = null;
      } else {
        slice = await this.#fromDisk(maxBytes, split);
      }
      // null: the segment was discarded as it was opened; go on from the first byte kept.
      if (!slice) continue;
      this.offset = slice.offset + slice.data.length;
      return take(slice);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#readBuffer = null;
    await this.#closeFiles();
  }

  /** Lets its read buffer go: for a reader that waits for output, and may wait long. */
  release(): void {
    this.#readBuffer = null;
  }

  async #fromDisk(maxBytes: number, split: boolean): Promise<OutputSlice | null> {
    const segment = this.#segmentAt();
    if (segment !== this.#segment && !(await this.#openSegment(segment))) return null;
    if (!this.#batchHolds(this.offset)) await this.#loadBatch(await this.#entryAt(this.offset));
    const batch = this.#batch;
    // Readers move forwards: search on from where the last read ended.
    let i = entryOffset(batch, this.#batchPos * ENTRY_BYTES) <= this.offset ? this.#batchPos : 0;
    while (i + 1 < this.#batchCount && entryOffset(batch, (i + 1) * ENTRY_BYTES) <= this.offset) i += 1;
    this.#batchPos = i;
    const end = sliceEnd(batch, i, this.#batchCount, this.offset + maxBytes, split);
    const data = this.#readInto(end - this.offset);
    const { bytesRead } = await this.#data!.read(data, 0, data.length, this.offset - segment.start);
    if (bytesRead !== data.length) throw this.#unreadable(`bytes ${this.offset} to ${end} are missing from ${segmentName(segment.start, 'out')}`);
    return { stream: entryStream(batch, i * ENTRY_BYTES), offset: this.offset, data, time: entryTime(batch, i * ENTRY_BYTES) };
  }

  #readInto(length: number): Buffer {
    if (length < REUSED_READ_BYTES) return Buffer.allocUnsafe(length);
    if (!this.#readBuffer || this.#readBuffer.length < length) this.#readBuffer = Buffer.allocUnsafeSlow(length);
    return this.#readBuffer.subarray(0, length);
  }

  /** The segment holding the cursor's offset, moving the cursor past a gap in the files. */
  #segmentAt(): Segment {
    const segments = this.#log.segments;
    let lo = 0;
    let hi = segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (segments[mid]!.start <= this.offset) lo = mid;
      else hi = mid - 1;
    }
    let segment = segments[lo]!;
    if (this.offset >= segment.start + segment.bytes && segments[lo + 1]) {
      segment = segments[lo + 1]!;
      this.offset = segment.start;
    }
    return segment;
  }

  /** False when the segment was discarded (--max-output-bytes) before it could be opened. */
  async #openSegment(segment: Segment): Promise<boolean> {
    await this.#closeFiles();
    const dir = this.#log.dir;
    try {
      this.#data = await open(path.join(dir, segmentName(segment.start, 'out')), 'r');
      this.#index = await open(path.join(dir, segmentName(segment.start, 'idx')), 'r');
      if (this.#closed) throw new Error('cursor closed');
    } catch (err) {
      await this.#closeFiles();
      if (this.#log.removed) throw new OutputUnreadableError('the job was removed from the history while its output was being read');
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && this.#log.start > segment.start) return false;
      throw this.#unreadable(`cannot open ${segmentName(segment.start, 'out')}: ${(err as Error).message}`);
    }
    this.#segment = segment;
    this.#batchCount = 0;
    return true;
  }

  #batchHolds(offset: number): boolean {
    if (this.#batchCount === 0) return false;
    const last = (this.#batchCount - 1) * ENTRY_BYTES;
    return entryOffset(this.#batch, 0) <= offset && offset < entryOffset(this.#batch, last) + entryLength(this.#batch, last);
  }

  /** Index in the open segment of the entry whose frame holds offset. */
  async #entryAt(offset: number): Promise<number> {
    const next = await searchIndex(this.#index!, 0, this.#segment!.entries, (entry) => entryOffset(entry, 0) > offset);
    return Math.max(0, next - 1);
  }

  /** Reads entries from `first` on, checking each one and that they follow on from each other. */
  async #loadBatch(first: number): Promise<void> {
    if (this.#batch.length === 0) this.#batch = Buffer.allocUnsafe(BATCH_ENTRIES * ENTRY_BYTES);
    const { bytesRead } = await this.#index!.read(this.#batch, 0, this.#batch.length, first * ENTRY_BYTES);
    const count = Math.floor(bytesRead / ENTRY_BYTES);
    let expected = -1;
    for (let i = 0; i < count; i += 1) {
      const entry = readEntry(this.#batch, i * ENTRY_BYTES);
      if (typeof entry === 'string') throw this.#unreadable(`${segmentName(this.#segment!.start, 'idx')}: ${entry}`);
      if (expected >= 0 && entry.offset !== expected) throw this.#unreadable(`${segmentName(this.#segment!.start, 'idx')}: entry ${first + i} starts at ${entry.offset}, not ${expected}`);
      expected = entry.offset + entry.length;
    }
    this.#batchCount = count;
    this.#batchPos = 0;
    if (!this.#batchHolds(this.offset)) throw this.#unreadable(`${segmentName(this.#segment!.start, 'idx')} has no entry for offset ${this.offset}`);
  }

  #unreadable(what: string): OutputUnreadableError {
    return new OutputUnreadableError(`output unreadable at offset ${this.offset}: ${what}`);
  }

  async #closeFiles(): Promise<void> {
    const files = [this.#data, this.#index];
    this.#data = null;
    this.#index = null;
    this.#segment = null;
    await Promise.allSettled(files.map((file) => file?.close()));
  }
}

/** A slice from the tail in memory: a view into a block, valid until the log drops the block. */
function fromBlocks(blocks: readonly Block[], offset: number, maxBytes: number, split: boolean): OutputSlice {
  let b = blocks.length - 1;
  while (blocks[b]!.start > offset) b -= 1;
  const block = blocks[b]!;
  const { index } = block;
  let lo = 0;
  let hi = block.entries - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (entryOffset(index, mid * ENTRY_BYTES) <= offset) lo = mid;
    else hi = mid - 1;
  }
  const end = sliceEnd(index, lo, block.entries, offset + maxBytes, split);
  return { stream: entryStream(index, lo * ENTRY_BYTES), offset, data: block.data.subarray(offset - block.start, end - block.start), time: entryTime(index, lo * ENTRY_BYTES) };
}

/**
 * Where a slice that starts in frame `i` of `index` (`count` frames) ends:
 * at the frame's end or, unless split, at the end of the run of frames of
 * its stream; never past `limit`.
 */
function sliceEnd(index: Buffer, i: number, count: number, limit: number, split: boolean): number {
  const stream = entryStream(index, i * ENTRY_BYTES);
  let end = Math.min(entryOffset(index, i * ENTRY_BYTES) + entryLength(index, i * ENTRY_BYTES), limit);
  for (let j = i + 1; !split && end < limit && j < count && entryStream(index, j * ENTRY_BYTES) === stream; j += 1) {
    end = Math.min(entryOffset(index, j * ENTRY_BYTES) + entryLength(index, j * ENTRY_BYTES), limit);
  }
  return end;
}

/** Offset of the first byte that arrived at or after `time` (ms since the epoch); the log's length when none did. */
export async function offsetSince(log: OutputLog, time: number): Promise<number> {
  const { blocks } = log;
  // Times never decrease: when the tail's first frame is older than `time`,
  // the answer is in the tail, read now, before any await lets the log drop
  // (and reuse) a block.
  if (blocks.length > 0 && entryTime(blocks[0]!.index, 0) < time) {
    for (const block of blocks) {
      for (let i = 0; i < block.entries; i += 1) {
        if (entryTime(block.index, i * ENTRY_BYTES) >= time) return entryOffset(block.index, i * ENTRY_BYTES);
      }
    }
    return log.length;
  }
  // Else it is on disk, or it is the tail's first byte (or, with no tail, the end).
  // A copy: the log drops segments from the front while the search waits on the disk.
  const tailStart = blocks.length > 0 ? blocks[0]!.start : log.length;
  for (const segment of [...log.segments]) {
    if (segment.start >= tailStart) break;
    const found = await searchSegmentByTime(log, segment, time);
    if (found !== null) return found;
  }
  return tailStart;
}

/** The offset of the segment's first frame that arrived at or after `time`, or null when none of its frames on disk did. */
async function searchSegmentByTime(log: OutputLog, segment: Segment, time: number): Promise<number | null> {
  if (Number.isNaN(segment.firstTime)) return null;
  if (segment.firstTime >= time) return segment.start;
  let index;
  try {
    index = await open(path.join(log.dir, segmentName(segment.start, 'idx')), 'r');
  } catch (err) {
    if (log.removed) throw new OutputUnreadableError('the job was removed from the history while its output was being read');
    // Discarded (--max-output-bytes) since the search began: nothing of it is kept.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    // Entry 0 is earlier than `time` (firstTime).
    const found = await searchIndex(index, 1, segment.entries, (entry) => entryTime(entry, 0) >= time);
    if (found >= segment.entries) return null;
    const entry = Buffer.alloc(ENTRY_BYTES);
    const { bytesRead } = await index.read(entry, 0, ENTRY_BYTES, found * ENTRY_BYTES);
    return bytesRead === ENTRY_BYTES ? entryOffset(entry, 0) : null;
  } finally {
    await index.close();
  }
}

/**
 * Where the last `lines` lines before `end` begin, as `tail -n` counts them:
 * a line is what ends in a newline, plus whatever follows the last newline.
 */
export async function offsetOfLastLines(log: OutputLog, lines: number, end: number): Promise<number> {
  if (lines === 0) return end;
  let wanted = lines;
  let to = end;
  // The byte before `end` ends the last line whether or not it is a newline.
  let skip = 1;
  const cursor = new OutputCursor(log, 0);
  try {
    while (to > log.start) {
      const { from, bytes: piece } = await readRange(cursor, Math.max(log.start, to - SCAN_BYTES), to);
      // Nothing kept before `to` (discarded, or a gap in damaged files): the lines begin there.
      if (piece.length === 0) return to;
      let at = piece.length - 1 - skip;
      skip = 0;
      while (at >= 0) {
        const newline = piece.lastIndexOf(10, at);
        if (newline < 0) break;
        wanted -= 1;
        if (wanted === 0) return from + newline + 1;
        at = newline - 1;
      }
      to = from;
    }
    return log.start;
  } finally {
    await cursor.close();
  }
}

/** The bytes from `from` (or, past a jump, from where they continue without one) up to `to`. */
async function readRange(cursor: OutputCursor, from: number, to: number): Promise<{ from: number; bytes: Buffer }> {
  let pieces: Buffer[] = [];
  let start = from;
  cursor.offset = from;
  while (cursor.offset < to) {
    const expected = cursor.offset;
    // A copy: slice data is not kept past the call (SliceTaker).
    const slice = await cursor.next(to - cursor.offset, false, ({ offset, data }) => ({ offset, data: Buffer.from(data) }));
    if (!slice || slice.offset >= to) break;
    if (slice.offset !== expected) {
      pieces = [];
      start = slice.offset;
    }
    pieces.push(slice.data);
  }
  return { from: start, bytes: pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces) };
}
