// A job's output: one append-only log of bytes, stdout and stderr interleaved
// in the order they were read, each run of bytes tagged with its stream and
// the time it arrived. Readers are cursors into it (cursor.ts: a
// position, open files, a batch of index entries), so a reader that
// switches from history to live output cannot miss what was appended in
// between.
//
// The bytes go to files under the job's directory (format: format.ts; after a restart: recovery.ts)
// and only a bounded tail stays in memory: the blocks not yet written, and
// the last two, from which live followers read without touching the disk.
// Memory per job is therefore bounded whatever the job prints; a job that
// prints faster than the disk takes it is held back through its ring (the
// pump waits for room(), the ring fills, the job blocks on its pipe).
import fs from 'node:fs';
import { mkdir, open, rm, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { messageOf } from '../../common/error-message.js';
import { StreamId } from '../../workers/protocol.js';
import { giveBlockMemory, takeBlockMemory } from './block-pool.js';
import { ENTRY_BYTES, entryLength, entryStream, entryTime, segmentName, setEntryLength, writeEntry, type Segment } from './format.js';
import { recoverSegments } from './recovery.js';

/** Blocks start small so the many jobs that print little cost little, and grow by 4× to this. */
const FIRST_BLOCK = 4 * 1024;
const MAX_BLOCK = 256 * 1024;
/** Written blocks kept in memory for live followers, the newest being appended to. */
const KEPT_BLOCKS = 2;
/**
 * Memory of a job's tail (blocks and their indexes, written or not) past
 * which the pump must wait (room() is 0): about 1.4 MiB not yet written
 * besides the two blocks kept for followers.
 */
const MAX_TAIL_MEMORY = 2 * 1024 * 1024;
/**
 * A block is written once it is full; the block being filled, at most this
 * long after its first unwritten byte arrived (at once when the log closes).
 * Handing a write to libuv's pool costs the RPC thread ~13 µs, far more
 * when the pool's lock is contended: with a write per pump pass, four jobs
 * writing flat out kept it 39% busy, 34% with writes of whole blocks (a
 * profile of bench scenario 3's flood). Followers read the tail from memory
 * and do not wait for this; a server killed outright loses at most this
 * much more of what its jobs had printed.
 */
const FLUSH_MS = 5;
/** While the disk refuses writes (full), they are retried this often. */
export const RETRY_MS = 1_000;
/** Segments per --max-output-bytes: the granularity at which old output is discarded. */
const SEGMENTS_PER_LIMIT = 8;
const MIN_SEGMENT = 64 * 1024;

export interface OutputSlice {
  stream: StreamId;
  /** Offset of data's first byte in the log. */
  offset: number;
  /**
   * May be a view into the log's tail in memory (reused once the log drops
   * the block) or into the reading cursor's buffer (reused by its next
   * read): valid only during the SliceTaker call that receives it (cursor.ts).
   */
  data: Buffer;
  /** When data's first byte arrived, ms since the epoch. */
  time: number;
}

/** Part of the tail in memory: whole frames, all in one segment. */
export interface Block {
  readonly segment: Segment;
  /** Log offset of data[0]. */
  readonly start: number;
  /** Index in its segment of its first entry. */
  readonly firstEntry: number;
  readonly data: Buffer;
  used: number;
  /** Its entries, encoded as on disk. */
  readonly index: Buffer;
  entries: number;
  writtenData: number;
  writtenEntries: number;
  /** Entries handed to a write: the last frame may grow only past these. */
  lockedEntries: number;
}

interface SegmentFiles {
  data: FileHandle;
  index: FileHandle;
}

export interface OutputLogOptions {
  /** This job's directory; created on the first write, its parent must exist. */
  dir: string;
  /** Past this many bytes, the oldest segments are discarded. */
  maxBytes: number;
  logger: Logger;
  /** Named in the log's lines (through a child of `logger` made when the first is logged). */
  jobId?: string;
}

/** Output that cannot be read back as it was written: served as DATA_LOSS. */
export class OutputUnreadableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OutputUnreadableError';
  }
}

export class OutputLog {
  readonly dir: string;
  readonly #maxBytes: number;
  readonly #segmentBytes: number;
  readonly #parentLogger: Logger;
  readonly #jobId: string | undefined;
  #jobLogger: Logger | undefined;
  #length = 0;
  #closed = false;
  #removed = false;
  /** Given up (shutdown, pruning): appends are dropped, nothing more is written. */
  #disposed = false;
  /** The job's processes are gone: what is left of its output is bounded, and taken whatever the disk does. */
  #holdingBack = true;
  #lastTime = 0;
  readonly #segments: Segment[] = [];
  #blocks: Block[] = [];
  /** Bytes allocated for #blocks. */
  #tailMemory = 0;
  /** Write handles of segments that still have blocks to write; none (no map) once all are closed. */
  #files: Map<Segment, SegmentFiles> | undefined;
  /** Log offset up to which data is on disk. */
  #written = 0;
  #writing = false;
  /** Settles when the write loop in progress (if any) has stopped. */
  #idle: Promise<void> = Promise.resolve();
  #dirMade = false;
  #retry: NodeJS.Timeout | undefined;
  /** Armed while the block being filled has bytes not yet written: see FLUSH_MS. */
  #flush: NodeJS.Timeout | undefined;
  /** The flush timer fired: the block being filled is due too. */
  #flushDue = false;
  #pausedSince: Date | null = null;
  #pauseReason = '';
  /** Found when the files were opened after a restart, or a write that failed for good. */
  #problem = '';
  // Made when the first waiter comes and dropped when woken: a log is kept
  // for every ended job (up to --retain-jobs, 10,000 by default), and these
  // would cost it ~150 bytes each for nothing.
  #readers: Waiters;
  #roomWaiters: Waiters;
  #settledWaiters: Waiters;

  constructor(options: OutputLogOptions) {
    this.dir = options.dir;
    this.#maxBytes = options.maxBytes;
    this.#segmentBytes = Math.max(MIN_SEGMENT, Math.floor(options.maxBytes / SEGMENTS_PER_LIMIT));
    this.#parentLogger = options.logger;
    this.#jobId = options.jobId;
  }

  /**
   * Made when first needed: a pino child costs an ended job's log some 400
   * bytes of heap (its own bindings, formatters and hidden classes), and
   * almost no log ever says anything.
   */
  get #logger(): Logger {
    this.#jobLogger ??= this.#jobId === undefined ? this.#parentLogger : this.#parentLogger.child({ jobId: this.#jobId });
    return this.#jobLogger;
  }

  /** Bytes appended so far; offsets run from 0 to this. */
  get length(): number {
    return this.#length;
  }

  /** Offset of the first byte still kept: past 0 once old output has been discarded. */
  get start(): number {
    return this.#segments[0]?.start ?? this.#length;
  }

  /** No more bytes will come. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Why output is not being written now, or what is wrong with what was written; '' when all is well. */
  get problem(): string {
    if (this.#pausedSince) return `output capture paused since ${this.#pausedSince.toISOString()}: ${this.#pauseReason}; the job waits, retrying every ${RETRY_MS / 1000} s`;
    return this.#problem;
  }

  /** For readers (cursor.ts): the segments in log order, and the tail in memory. */
  get segments(): readonly Segment[] {
    return this.#segments;
  }

  get blocks(): readonly Block[] {
    return this.#blocks;
  }

  /** True once the job's files are gone (pruned): readers stop. */
  get removed(): boolean {
    return this.#removed;
  }

  /** How many bytes append() may take before the writer should wait for whenRoom(). */
  room(): number {
    if (this.#disposed || !this.#holdingBack) return Number.POSITIVE_INFINITY;
    return MAX_TAIL_MEMORY - this.#tailMemory;
  }

  whenRoom(): Promise<void> {
    if (this.room() > 0) return Promise.resolve();
    return new Promise((resolve) => (this.#roomWaiters ??= new Set()).add(resolve));
  }

  append(stream: StreamId, bytes: Uint8Array, time = Date.now()): void {
    if (this.#disposed) return;
    if (this.#closed) throw new Error('append to a closed output log');
    if (bytes.length === 0) return;
    // Arrival times never go backwards, even when the clock does: readers search them.
    time = Math.max(time, this.#lastTime);
    this.#lastTime = time;
    let copied = 0;
    while (copied < bytes.length) {
      const block = this.#writableBlock();
      const n = Math.min(bytes.length - copied, block.data.length - block.used);
      block.data.set(copied === 0 && n === bytes.length ? bytes : bytes.subarray(copied, copied + n), block.used);
      const last = (block.entries - 1) * ENTRY_BYTES;
      // Bytes of the same stream that arrived with the last frame (and after its entry went out to no write) extend it.
      if (block.entries > block.lockedEntries && entryStream(block.index, last) === stream && entryTime(block.index, last) === time) {
        setEntryLength(block.index, last, entryLength(block.index, last) + n);
      } else {
        writeEntry(block.index, block.entries * ENTRY_BYTES, { offset: this.#length, stream, length: n, time });
        block.entries += 1;
        block.segment.entries += 1;
        if (Number.isNaN(block.segment.firstTime)) block.segment.firstTime = time;
      }
      block.used += n;
      block.segment.bytes += n;
      this.#length += n;
      copied += n;
    }
    this.#startWriting();
    this.#readers = wakeAll(this.#readers);
  }

  /** Resolves once length > offset or the log is closed; rejects with the signal's reason on abort. */
  waitFor(offset: number, signal?: AbortSignal): Promise<void> {
    if (offset < this.#length || this.#closed) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#readers?.delete(wake);
        reject(signal!.reason);
      };
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      (this.#readers ??= new Set()).add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** How many readers are parked; for tests that check nothing leaks. */
  get waiting(): number {
    return this.#readers?.size ?? 0;
  }

  /**
   * No more bytes will come. Resolves once every byte is on disk, or at once
   * while the disk refuses writes (they go on being retried: the end of a job
   * must not wait for disk space).
   */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#readers = wakeAll(this.#readers);
      this.#startWriting();
    }
    if (this.#settled()) return Promise.resolve();
    return new Promise((resolve) => (this.#settledWaiters ??= new Set()).add(resolve));
  }

  /**
   * Every process of the job is gone: from now on append() takes whatever
   * comes (what the pipes and the ring hold) without waiting for the disk,
   * so that the job's end never waits for disk space.
   */
  stopHoldingBack(): void {
    this.#holdingBack = false;
    this.#roomWaiters = wakeAll(this.#roomWaiters);
  }

  /** Stops writing for good: closes the files, drops retries and whatever was not written (logged). */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    clearTimeout(this.#retry);
    this.#retry = undefined;
    clearTimeout(this.#flush);
    this.#flush = undefined;
    if (this.#written < this.#length && !this.#removed) {
      this.#logger.error({ dir: this.dir, lostBytes: this.#length - this.#written }, 'output that could not be written is lost');
      this.#problem = `output from byte ${this.#written} on could not be written and is lost`;
    }
    this.#pausedSince = null;
    this.#closed = true;
    this.#readers = wakeAll(this.#readers);
    this.#roomWaiters = wakeAll(this.#roomWaiters);
    this.#settledWaiters = wakeAll(this.#settledWaiters);
    const files = [...(this.#files?.values() ?? [])];
    this.#files = undefined;
    await Promise.all(files.map(closeFiles));
  }

  /** Deletes the job's files (pruning). Open readers stop: their next read ends their stream with DATA_LOSS. */
  async remove(): Promise<void> {
    this.#removed = true;
    await this.dispose();
    await this.#idle;
    this.#blocks = [];
    this.#tailMemory = 0;
    await rm(this.dir, { recursive: true, force: true });
  }

  /** Nothing left to do, or nothing doable until the disk takes writes again, or nothing to be done at all. */
  #settled(): boolean {
    return this.#disposed || (this.#written === this.#length && this.#files === undefined) || (this.#pausedSince !== null && !this.#writing);
  }

  #hasWork(): boolean {
    return this.#blocks.some((b) => b.writtenEntries < b.entries) || (this.#closed && this.#files !== undefined);
  }

  #writableBlock(): Block {
    const last = this.#blocks[this.#blocks.length - 1];
    if (last && last.used < last.data.length && (last.entries + 1) * ENTRY_BYTES <= last.index.length) return last;
    let segment = this.#segments[this.#segments.length - 1];
    if (!segment || segment.bytes >= this.#segmentBytes) {
      segment = { start: this.#length, bytes: 0, entries: 0, firstTime: Number.NaN };
      this.#segments.push(segment);
    }
    // Sized by what the last block held: one that filled its index with
    // tiny frames long before its data does not make the next one bigger.
    const size = Math.min(last ? Math.max(FIRST_BLOCK, 2 ** Math.ceil(Math.log2(last.used * 4))) : FIRST_BLOCK, MAX_BLOCK, this.#segmentBytes);
    const block: Block = {
      segment,
      start: this.#length,
      firstEntry: segment.entries,
      data: takeBlockMemory(size),
      used: 0,
      // An entry per 80 bytes on average before the block counts as full:
      // a job printing one byte at a time cannot make an index bigger than this.
      index: takeBlockMemory(Math.max(ENTRY_BYTES * 16, Math.floor(size / 4))),
      entries: 0,
      writtenData: 0,
      writtenEntries: 0,
      lockedEntries: 0,
    };
    this.#blocks.push(block);
    this.#tailMemory += block.data.length + block.index.length;
    return block;
  }

  #startWriting(): void {
    if (this.#writing || this.#retry || this.#disposed) return;
    if (!this.#closed && !this.#nextWrite()) {
      // Only the block being filled has unwritten bytes: they go out with the flush timer, or once it is full.
      if (this.#hasWork() && !this.#flush) {
        this.#flush = setTimeout(() => {
          this.#flush = undefined;
          this.#flushDue = true;
          this.#startWriting();
        }, FLUSH_MS);
      }
      return;
    }
    clearTimeout(this.#flush);
    this.#flush = undefined;
    this.#writing = true;
    // After the current drain pass: its appends go out in one write.
    this.#idle = new Promise((resolve) => queueMicrotask(() => void this.#writeAll().finally(resolve)));
  }

  /** The first block with unwritten entries, if it is due: full, or the log closed, or flushed. */
  #nextWrite(): Block | undefined {
    const block = this.#blocks.find((b) => b.writtenEntries < b.entries);
    if (!block) return undefined;
    return block !== this.#filling || this.#closed || this.#flushDue ? block : undefined;
  }

  /** The block appends go to, the last one. */
  get #filling(): Block | undefined {
    return this.#blocks[this.#blocks.length - 1];
  }

  async #writeAll(): Promise<void> {
    try {
      for (;;) {
        const block = this.#nextWrite();
        if (!block) break;
        // The block being filled: what it holds now is written, what comes meanwhile waits for the next flush (or for it to fill).
        if (block === this.#filling) this.#flushDue = false;
        await this.#writeBlock(block);
        if (this.#disposed) return;
        this.#dropWrittenBlocks();
        await this.#closeFinishedSegments();
        this.#afterWrite();
      }
      if (this.#disposed) return;
      this.#dropWrittenBlocks();
      await this.#closeFinishedSegments();
      this.#afterWrite();
      if (this.#pausedSince) {
        this.#logger.info({ pausedSince: this.#pausedSince }, 'output capture resumed');
        this.#pausedSince = null;
      }
    } catch (err) {
      if (this.#disposed) return;
      // A partial write before the failure may have made room.
      this.#afterWrite();
      if (!this.#pausedSince) {
        this.#pausedSince = new Date();
        this.#pauseReason = `cannot write to ${this.dir}: ${messageOf(err)}`;
        this.#logger.warn({ dir: this.dir, err: messageOf(err) }, 'output capture paused: the job waits until its output can be written');
      }
      this.#retry = setTimeout(() => {
        this.#retry = undefined;
        this.#startWriting();
      }, RETRY_MS);
    } finally {
      this.#writing = false;
    }
    // Appended to, or closed, while the last write was finishing.
    if (this.#disposed) return;
    if (!this.#retry && this.#hasWork()) this.#startWriting();
    else if (this.#settled()) {
      this.#settledWaiters = wakeAll(this.#settledWaiters);
    }
  }

  async #writeBlock(block: Block): Promise<void> {
    // The entries are fixed before their data goes out, so the index never
    // claims bytes this write did not cover.
    const entries = block.entries;
    block.lockedEntries = entries;
    const dataEnd = block.used;
    const files = await this.#filesOf(block.segment);
    while (block.writtenData < dataEnd) {
      const { bytesWritten } = await files.data.write(block.data, block.writtenData, dataEnd - block.writtenData, block.start - block.segment.start + block.writtenData);
      block.writtenData += bytesWritten;
      this.#written = block.start + block.writtenData;
    }
    while (block.writtenEntries < entries) {
      const from = block.writtenEntries * ENTRY_BYTES;
      const { bytesWritten } = await files.index.write(block.index, from, entries * ENTRY_BYTES - from, (block.firstEntry + block.writtenEntries) * ENTRY_BYTES);
      // A partial entry is rewritten whole next time.
      block.writtenEntries += Math.floor(bytesWritten / ENTRY_BYTES);
    }
  }

  async #filesOf(segment: Segment): Promise<SegmentFiles> {
    const open_ = this.#files?.get(segment);
    if (open_) return open_;
    if (this.#disposed) throw new Error('output log disposed');
    if (!this.#dirMade) {
      await mkdir(this.dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      this.#dirMade = true;
    }
    const data = await open(path.join(this.dir, segmentName(segment.start, 'out')), 'w', 0o600);
    const index = await open(path.join(this.dir, segmentName(segment.start, 'idx')), 'w', 0o600).catch(async (err: unknown) => {
      await data.close();
      throw err;
    });
    const files = { data, index };
    if (this.#disposed) {
      // Disposed while the files were being opened: dispose() could not close these.
      await closeFiles(files);
      throw new Error('output log disposed');
    }
    (this.#files ??= new Map()).set(segment, files);
    return files;
  }

  /** Drops written blocks no follower needs (all of them once the log is closed). */
  #dropWrittenBlocks(): void {
    const keep = this.#closed ? 0 : KEPT_BLOCKS;
    while (this.#blocks.length > keep && this.#blocks[0]!.writtenEntries === this.#blocks[0]!.entries) {
      const dropped = this.#blocks.shift()!;
      this.#tailMemory -= dropped.data.length + dropped.index.length;
      // Written, and no reader can hold a view of it (cursor.ts reads blocks only synchronously).
      giveBlockMemory(dropped.data);
      giveBlockMemory(dropped.index);
    }
  }

  /** Wakes a waiting pump, discards old segments. */
  #afterWrite(): void {
    if (this.room() > 0) this.#roomWaiters = wakeAll(this.#roomWaiters);
    this.#discardOld();
  }

  /** Closes the write handles of segments with nothing left to write. */
  async #closeFinishedSegments(): Promise<void> {
    const current = this.#closed ? undefined : this.#segments[this.#segments.length - 1];
    if (!this.#files) return;
    const done = [...this.#files].filter(([segment]) => segment !== current && !this.#blocks.some((b) => b.segment === segment));
    for (const [segment] of done) this.#files.delete(segment);
    if (this.#files.size === 0) this.#files = undefined;
    await Promise.all(done.map(([, files]) => closeFiles(files)));
  }

  /** --max-output-bytes: whole segments, oldest first, never one still being written. */
  #discardOld(): void {
    while (this.#segments.length > 1 && this.#length - this.#segments[0]!.start > this.#maxBytes) {
      const oldest = this.#segments[0]!;
      if (this.#files?.has(oldest) || this.#blocks.some((b) => b.segment === oldest)) break;
      this.#segments.shift();
      for (const kind of ['out', 'idx'] as const) {
        unlink(path.join(this.dir, segmentName(oldest.start, kind))).catch((err: unknown) =>
          this.#logger.error({ dir: this.dir, err: messageOf(err) }, 'could not delete discarded output'),
        );
      }
    }
  }

  /**
   * The output of a job from an earlier run of the server, never appended
   * to: its files checked and, where damaged, cut back (output/recovery.ts);
   * what was wrong is in `problem`.
   */
  static async open(options: OutputLogOptions, recordedBytes: number): Promise<OutputLog> {
    const { segments, problem } = await recoverSegments(options.dir, recordedBytes);
    const log = new OutputLog(options);
    log.#closed = true;
    log.#dirMade = true;
    log.#segments.push(...segments);
    const last = segments[segments.length - 1];
    log.#length = last ? last.start + last.bytes : 0;
    log.#written = log.#length;
    log.#problem = problem;
    return log;
  }
}

async function closeFiles(files: SegmentFiles): Promise<void> {
  await Promise.allSettled([files.data.close(), files.index.close()]);
}

/** Waiters to wake, made by the first: none is undefined, not an empty set. */
type Waiters = Set<() => void> | undefined;

/** Wakes every waiter; what the waiters are then (none). A wake only resolves a promise: none can add a waiter meanwhile. */
function wakeAll(waiters: Waiters): undefined {
  if (waiters) for (const wake of waiters) wake();
  return undefined;
}

/** A job's log lives in its own directory under the output root and logs with its id. */
export function jobLogOptions(root: string, jobId: string, maxBytes: number, logger: Logger): OutputLogOptions {
  return { dir: path.join(root, jobId), maxBytes, logger, jobId };
}

/** Creates `<dataDir>/output` if missing; jobs' directories go in it. */
export function makeOutputRoot(dataDir: string): string {
  const root = path.join(dataDir, 'output');
  try {
    fs.mkdirSync(root, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cannot create the output directory ${root}: ${(err as Error).message}`);
  }
  return root;
}
