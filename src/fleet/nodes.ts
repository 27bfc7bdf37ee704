// The nodes of the fleet as etcd has them: what each registered (info, kept
// while the node is lost), its heartbeat (alive, on its lease), drain marks.
import type { Etcd3 } from 'etcd3';
import { NodeState, type Node } from '../gen/jobworker/v1/jobworker.js';
import { FleetKeys } from './keys.js';

/** nodes/<name>/info: written at each registration. */
export interface NodeInfo {
  name: string;
  /** host:port */
  address: string;
  labels: Record<string, string>;
  cpuPercent: number;
  memoryMb: number;
  version: string;
  /** Differs at each start of the node's process. */
  boot: string;
}

/** nodes/<name>/alive: rewritten at each heartbeat, on the node's lease. */
export interface NodeAlive {
  reservedCpuPercent: number;
  reservedMemoryMb: number;
  runningJobs: number;
  /** ms since the epoch */
  heartbeatAt: number;
  boot: string;
  /** Shutting down: no new jobs, like a drained node. */
  leaving?: boolean;
}

export interface NodeView {
  info: NodeInfo;
  alive: NodeAlive | null;
  drained: boolean;
  state: 'ready' | 'draining' | 'lost';
}

/** Every node the fleet knows, by name (one range read, plus one for the drain marks). */
export async function readNodes(client: Etcd3, keys: FleetKeys): Promise<Map<string, NodeView>> {
  const [entries, drains] = await Promise.all([client.getAll().prefix(keys.nodes()).strings(), client.getAll().prefix(keys.drains()).keys()]);
  const drained = new Set(drains.map(FleetKeys.last));
  const infos = new Map<string, NodeInfo>();
  const alive = new Map<string, NodeAlive>();
  for (const [key, value] of Object.entries(entries)) {
    const rest = key.slice(keys.nodes().length);
    const [name, part] = rest.split('/');
    if (!name || value === '') continue;
    if (part === 'info') infos.set(name, JSON.parse(value) as NodeInfo);
    else if (part === 'alive') alive.set(name, JSON.parse(value) as NodeAlive);
  }
  const views = new Map<string, NodeView>();
  for (const [name, info] of infos) {
    const beat = alive.get(name) ?? null;
    const isDrained = drained.has(name);
    views.set(name, { info, alive: beat, drained: isDrained, state: beat === null ? 'lost' : isDrained || beat.leaving ? 'draining' : 'ready' });
  }
  return views;
}

const STATES = { ready: NodeState.NODE_STATE_READY, draining: NodeState.NODE_STATE_DRAINING, lost: NodeState.NODE_STATE_LOST } as const;

export function toNode(view: NodeView): Node {
  const { info, alive } = view;
  return {
    name: info.name,
    address: info.address,
    labels: info.labels,
    state: STATES[view.state],
    cpuPercent: info.cpuPercent,
    memoryMb: info.memoryMb,
    reservedCpuPercent: alive?.reservedCpuPercent ?? 0,
    reservedMemoryMb: alive?.reservedMemoryMb ?? 0,
    runningJobs: alive?.runningJobs ?? 0,
    lastHeartbeat: alive ? new Date(alive.heartbeatAt) : undefined,
    version: info.version,
  };
}
