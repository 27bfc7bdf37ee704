// Reads the V8 CPU profiles `node --cpu-prof` wrote (one per thread) and
// lists each thread's functions by self time: enough to see where a
// scenario's CPU goes without opening a profiler.
import fs from 'node:fs';
import path from 'node:path';

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  file: string;
  /** Node names the files CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: 0 is the main thread. */
  thread: string;
  totalMs: number;
  top: { frame: string; percent: number }[];
}

function frameName({ functionName, url, lineNumber }: CpuProfile['nodes'][number]['callFrame']): string {
  if (!url) return functionName; // (program), (garbage collector), (idle)
  const where = url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, '').replace(/^.*\/dist\//, '');
  return `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
}

export function summarizeProfile(file: string, count: number): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const frames = new Map(profile.nodes.map((node) => [node.id, frameName(node.callFrame)]));
  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    total += delta;
    const frame = frames.get(id)!;
    self.set(frame, (self.get(frame) ?? 0) + delta);
  });
  const top = [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([frame, micros]) => ({ frame, percent: (micros / total) * 100 }));
  const thread = path.basename(file).split('.')[4] === '0' ? 'main thread' : `thread ${path.basename(file).split('.')[4]}`;
  return { file, thread, totalMs: total / 1000, top };
}

export function summarizeProfiles(dir: string, count: number): ProfileSummary[] {
  return fs
    .readdirSync(dir)
    .filter((name) => name.endsWith('.cpuprofile'))
    .sort()
    .map((name) => summarizeProfile(path.join(dir, name), count));
}
