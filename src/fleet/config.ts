// What a fleet node is told at start (jobworkerd --fleet-* and --node-*
// flags), checked in main.ts; everything in src/fleet trusts it.
import type { TlsMaterial } from '../supervisor/rpc/tls-credentials.js';

export interface FleetConfig {
  /** etcd client URLs, https://host:port. */
  etcd: string[];
  /** How this node authenticates to etcd (default: its own node certificate). */
  etcdTls: TlsMaterial;
  /** How this node calls other nodes and is known to them: its node certificate (OU node). */
  nodeTls: TlsMaterial;
  nodeName: string;
  /** host:port other nodes and clients reach this node at; the port may be left to the one bound. */
  advertise: { host: string; port: number | null };
  labels: Record<string, string>;
  /** What this node offers to placement. */
  capacity: { cpuPercent: number; memoryMb: number };
  heartbeatMs: number;
  /** Lease TTL: a node silent this long is lost, and its unfinished jobs with it. */
  nodeLostAfterMs: number;
  /** A node that has lost its lease this long stops its own jobs. */
  stopJobsAfterMs: number;
  /** Every key of the fleet is under it; ends with /. */
  prefix: string;
  version: string;
}

export const DEFAULT_HEARTBEAT_MS = 1_000;
export const DEFAULT_NODE_LOST_AFTER_MS = 10_000;
export const DEFAULT_STOP_JOBS_AFTER_MS = 60_000;
export const DEFAULT_PREFIX = '/jobworker/';
/** A node's name is a DNS label or name: it goes into etcd keys, certificates and tables. */
export const NODE_NAME = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/;
