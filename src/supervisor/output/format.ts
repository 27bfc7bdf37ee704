// A job's output on disk: <data dir>/output/<job id>/, a run of segments,
// each a pair of files named for the log offset of its first byte (16 hex
// digits, so names sort in log order):
//
//   <start>.out  the output bytes as the job wrote them, stdout and stderr
//                interleaved in the order they were read: byte N of the log
//                is byte N - start of the file.
//   <start>.idx  one 20-byte entry per frame, a run of bytes of one stream
//                that arrived together, in log order:
//                  0  u48 LE  log offset of the frame's first byte
//                  6  u8      stream: 1 stdout, 2 stderr
//                  7  u8      format version (1)
//                  8  u32 LE  frame length in bytes (> 0)
//                 12  f64 LE  arrival time, ms since the epoch (never decreasing)
//
// The data is written before the entries that describe it, so after a crash
// an index never claims bytes the data file lacks, unless the disk lost them;
// a data file longer than its index holds bytes whose entries were not
// written, and those are cut off when the job's output is next opened.
import type { FileHandle } from 'node:fs/promises';
import { StreamId } from '../../workers/protocol.js';

export const ENTRY_BYTES = 20;
export const FORMAT_VERSION = 1;

export interface Frame {
  offset: number;
  stream: StreamId;
  length: number;
  time: number;
}

export function writeEntry(out: Buffer, at: number, frame: Frame): void {
  out.writeUIntLE(frame.offset, at, 6);
  out[at + 6] = frame.stream === StreamId.Stderr ? 2 : 1;
  out[at + 7] = FORMAT_VERSION;
  out.writeUInt32LE(frame.length, at + 8);
  out.writeDoubleLE(frame.time, at + 12);
}

/** The entry at `at`, or why it is not one. */
export function readEntry(buf: Buffer, at: number): Frame | string {
  const streamByte = buf[at + 6];
  if (buf[at + 7] !== FORMAT_VERSION) return `entry at byte ${at}: unknown format version ${buf[at + 7]}`;
  if (streamByte !== 1 && streamByte !== 2) return `entry at byte ${at}: unknown stream ${streamByte}`;
  const length = buf.readUInt32LE(at + 8);
  if (length === 0) return `entry at byte ${at}: empty frame`;
  const time = buf.readDoubleLE(at + 12);
  if (!Number.isFinite(time)) return `entry at byte ${at}: time is not a number`;
  return { offset: buf.readUIntLE(at, 6), stream: streamByte === 2 ? StreamId.Stderr : StreamId.Stdout, length, time };
}

/** Offset of frame `at`, without checking it: for searches over entries already checked. */
export const entryOffset = (buf: Buffer, at: number): number => buf.readUIntLE(at, 6);
export const entryLength = (buf: Buffer, at: number): number => buf.readUInt32LE(at + 8);
export const entryTime = (buf: Buffer, at: number): number => buf.readDoubleLE(at + 12);
export const entryStream = (buf: Buffer, at: number): StreamId => (buf[at + 6] === 2 ? StreamId.Stderr : StreamId.Stdout);
/** Grows the frame at `at` (a frame still being appended to, whose entry is not yet written out). */
export const setEntryLength = (buf: Buffer, at: number, length: number): void => {
  buf.writeUInt32LE(length, at + 8);
};

/** A run of the log's offsets in one pair of files. */
export interface Segment {
  readonly start: number;
  /** Data bytes appended to it (on disk, or still in a block). */
  bytes: number;
  /** Entries appended to it. */
  entries: number;
  /** Time of its first entry; NaN while it has none. */
  firstTime: number;
}

const SEGMENT_NAME = /^([0-9a-f]{16})\.(out|idx)$/;

export const segmentName = (start: number, kind: 'out' | 'idx'): string => `${start.toString(16).padStart(16, '0')}.${kind}`;

/** The segment start a file name stands for, or null for a file that is not a segment. */
export function parseSegmentName(name: string): { start: number; kind: 'out' | 'idx' } | null {
  const match = SEGMENT_NAME.exec(name);
  if (!match) return null;
  const start = Number.parseInt(match[1]!, 16);
  return Number.isSafeInteger(start) ? { start, kind: match[2] as 'out' | 'idx' } : null;
}

/**
 * The first of entries [lo, hi) of an index file that `past` holds for (hi
 * when none does): entries are in log order, so once it holds it holds for
 * the rest. An entry not (yet) in the file counts as past.
 */
export async function searchIndex(file: FileHandle, lo: number, hi: number, past: (entry: Buffer) => boolean): Promise<number> {
  const entry = Buffer.alloc(ENTRY_BYTES);
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const { bytesRead } = await file.read(entry, 0, ENTRY_BYTES, mid * ENTRY_BYTES);
    if (bytesRead < ENTRY_BYTES || past(entry)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
