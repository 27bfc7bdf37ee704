// Reading back a job's output after a restart, clean or not. Every
// segment's two files are checked against each other and, where a crash or
// the disk left them disagreeing, cut back to what both hold: a data file
// longer than its index (a crash between the two writes) is cut back to what
// is indexed, an index that claims more than its data file holds (the disk
// lost a write) to the frames the data covers. A segment file without its
// pair (a crash between creating the two) is deleted. Each cut, a gap
// between segments, and output shorter than the job's record says it wrote
// are reported. The format is output/format.ts's.
import { open, readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { messageOf } from '../../common/error-message.js';
import { ENTRY_BYTES, entryLength, entryOffset, parseSegmentName, readEntry, searchIndex, segmentName, type Segment } from './format.js';

/** What is left of a job's output on disk: its segments in log order, and what was wrong ('' when nothing). */
export async function recoverSegments(dir: string, recordedBytes: number): Promise<{ segments: Segment[]; problem: string }> {
  const problems: string[] = [];
  const segments: Segment[] = [];
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problems.push(`cannot read ${dir}: ${messageOf(err)}`);
    names = [];
  }
  const starts = new Map<number, Set<string>>();
  for (const name of names) {
    const parsed = parseSegmentName(name);
    if (!parsed) continue;
    if (!starts.has(parsed.start)) starts.set(parsed.start, new Set());
    starts.get(parsed.start)!.add(parsed.kind);
  }
  let length = 0;
  for (const start of [...starts.keys()].sort((a, b) => a - b)) {
    if (starts.get(start)!.size < 2) {
      // A crash between creating the two files, most likely: unreadable either way.
      const [kind] = [...starts.get(start)!] as ['out' | 'idx'];
      problems.push(`segment ${segmentName(start, 'out')} lacks its ${kind === 'out' ? 'index' : 'data'} file: deleted`);
      await unlink(path.join(dir, segmentName(start, kind))).catch(() => undefined);
      continue;
    }
    const segment = await checkSegment(dir, start, problems).catch((err: unknown) => {
      problems.push(`${segmentName(start, 'out')}: ${messageOf(err)}, left out`);
      return null;
    });
    if (!segment) continue;
    const previous = segments[segments.length - 1];
    if (previous && previous.start + previous.bytes !== start) problems.push(`bytes ${previous.start + previous.bytes} to ${start} are missing`);
    segments.push(segment);
    length = start + segment.bytes;
  }
  if (recordedBytes > length) problems.push(`the job wrote ${recordedBytes} bytes, ${recordedBytes - length} of them are not on disk`);
  return { segments, problem: problems.length > 0 ? `output damaged: ${problems.join('; ')}` : '' };
}

/** One segment's files checked and, where they disagree, cut back to what both hold; null when nothing of it is usable. */
async function checkSegment(dir: string, start: number, problems: string[]): Promise<Segment | null> {
  const dataPath = path.join(dir, segmentName(start, 'out'));
  const indexPath = path.join(dir, segmentName(start, 'idx'));
  const name = segmentName(start, 'out');
  const data = await open(dataPath, 'r+');
  const index = await open(indexPath, 'r+').catch(async (err: unknown) => {
    await data.close();
    throw err;
  });
  try {
    const dataBytes = (await data.stat()).size;
    const indexBytes = (await index.stat()).size;
    const inFile = Math.floor(indexBytes / ENTRY_BYTES);
    if (indexBytes % ENTRY_BYTES !== 0) problems.push(`${name}: its index ends in a partial entry, cut off`);
    const entry = Buffer.alloc(ENTRY_BYTES);
    const at = async (i: number): Promise<ReturnType<typeof readEntry>> => {
      await index.read(entry, 0, ENTRY_BYTES, i * ENTRY_BYTES);
      return readEntry(entry, 0);
    };
    const first = inFile > 0 ? await at(0) : null;
    if (typeof first === 'string' || (first && first.offset !== start)) {
      problems.push(`${name}: its index is unreadable (${typeof first === 'string' ? first : `first entry at offset ${first!.offset}`}), left out`);
      return null;
    }
    // The first entry whose frame runs past the data file: the ones before it are whole.
    const entries = await searchIndex(index, 0, inFile, (e) => entryOffset(e, 0) + entryLength(e, 0) - start > dataBytes);
    if (entries < inFile) problems.push(`${name}: ${inFile - entries} frames claim bytes its data file lacks, cut off`);
    let bytes = 0;
    if (entries > 0) {
      const last = await at(entries - 1);
      if (typeof last === 'string') {
        problems.push(`${name}: its index is unreadable (${last}), left out`);
        return null;
      }
      bytes = last.offset + last.length - start;
    }
    // (After frames were cut, the bytes they left behind are no news.)
    if (bytes < dataBytes && entries === inFile) problems.push(`${name}: ${dataBytes - bytes} bytes without index entries, cut off`);
    if (bytes !== dataBytes) await data.truncate(bytes);
    if (entries * ENTRY_BYTES !== indexBytes) await index.truncate(entries * ENTRY_BYTES);
    const firstTime = entries > 0 ? first!.time : Number.NaN;
    return { start, bytes, entries, firstTime };
  } finally {
    await data.close();
    await index.close();
  }
}

