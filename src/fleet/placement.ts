// Which node takes a job. A pure decision on the node table: the entry node
// picks, and the chosen node admits the job against its own exact figures
// (admission.ts), so two entry nodes placing at once on a table a heartbeat
// old cannot overfill a node; a refusal sends the job to the next candidate.
import type { CreateJobReq } from '../gen/jobworker/v1/jobworker.js';
import { DEFAULT_CPU_PERCENT, DEFAULT_MEMORY_MB } from '../supervisor/policy/limits.js';
import type { NodeView } from './nodes.js';

export interface JobNeeds {
  cpuPercent: number;
  memoryMb: number;
  /** Run on this node only, when set. */
  node: string;
  constraints: Record<string, string>;
}

export interface Placement {
  /** Best first. */
  candidates: NodeView[];
  /** Why each node that is not a candidate was refused, by name. */
  refused: Map<string, string>;
}

/** What a CreateJob asks of its node. */
export function needsOf(request: CreateJobReq): JobNeeds {
  return {
    cpuPercent: request.limits?.maxCpuPercent || DEFAULT_CPU_PERCENT,
    memoryMb: request.limits?.maxMemoryMb || DEFAULT_MEMORY_MB,
    node: request.node,
    constraints: request.constraints,
  };
}

export function freeOf(view: NodeView): { cpuPercent: number; memoryMb: number } {
  return {
    cpuPercent: view.info.cpuPercent - (view.alive?.reservedCpuPercent ?? 0),
    memoryMb: view.info.memoryMb - (view.alive?.reservedMemoryMb ?? 0),
  };
}

/** Why the node cannot take the job, or null when it can. */
export function refusal(view: NodeView, needs: JobNeeds): string | null {
  if (view.state === 'lost') return 'lost';
  if (view.state === 'draining') return 'draining';
  return labelRefusal(view, needs) ?? capacityRefusal(view.info, freeOf(view), needs);
}

function labelRefusal(view: NodeView, needs: JobNeeds): string | null {
  for (const [key, value] of Object.entries(needs.constraints)) {
    const has = view.info.labels[key];
    if (has !== value) return has === undefined ? `no label ${key}` : `label ${key}=${has}, not ${value}`;
  }
  return null;
}

/**
 * Why no node of the fleet could take the job even with nothing running on
 * it (its labels, its whole capacity), or null when one could: a job that
 * waits for others is placed later, and must not wait for what can never be.
 */
export function neverFits(nodes: Iterable<NodeView>, needs: JobNeeds): string | null {
  const refused = new Map<string, string>();
  for (const view of nodes) {
    if (needs.node !== '' && view.info.name !== needs.node) continue;
    const why = labelRefusal(view, needs) ?? capacityRefusal(view.info, view.info, needs);
    if (!why) return null;
    refused.set(view.info.name, why);
  }
  return describeRefusals(refused) || 'the fleet has no nodes';
}

type Resources = { cpuPercent: number; memoryMb: number };

/** Why `free` of `capacity` cannot hold `needs`, or null. The entry node asks it of its table, the chosen node of its own figures. */
export function capacityRefusal(capacity: Resources, free: Resources, needs: Resources): string | null {
  if (free.cpuPercent < needs.cpuPercent) return `${free.cpuPercent}% CPU free of ${capacity.cpuPercent}%, the job needs ${needs.cpuPercent}%`;
  if (free.memoryMb < needs.memoryMb) return `${free.memoryMb} MiB free of ${capacity.memoryMb} MiB, the job needs ${needs.memoryMb} MiB`;
  return null;
}

/**
 * The nodes that can take the job, the one with the most free capacity
 * first (free CPU and memory as shares of the node's, the scarcer of the
 * two; ties at random), and why the others cannot.
 */
export function place(nodes: Iterable<NodeView>, needs: JobNeeds, random: () => number = Math.random): Placement {
  const refused = new Map<string, string>();
  const scored: { view: NodeView; score: number; tie: number }[] = [];
  for (const view of nodes) {
    if (needs.node !== '' && view.info.name !== needs.node) continue;
    const why = refusal(view, needs);
    if (why) {
      refused.set(view.info.name, why);
      continue;
    }
    const free = freeOf(view);
    const score = Math.min(free.cpuPercent / Math.max(1, view.info.cpuPercent), free.memoryMb / Math.max(1, view.info.memoryMb));
    scored.push({ view, score, tie: random() });
  }
  scored.sort((a, b) => b.score - a.score || a.tie - b.tie);
  return { candidates: scored.map(({ view }) => view), refused };
}

/** "n1: draining; n2: 50% CPU free…" for RESOURCE_EXHAUSTED. */
export function describeRefusals(refused: Map<string, string>): string {
  return [...refused].map(([name, why]) => `${name}: ${why}`).join('; ');
}
