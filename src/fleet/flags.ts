// jobworkerd's fleet flags into a FleetConfig: every value checked here, at
// start, with a message naming the flag (jobworkerd exits 2, as for any bad
// flag); src/fleet trusts what comes out.
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseLabels } from '../common/labels.js';
import { parseBytes, parseDuration } from '../common/units.js';
import { flagPem } from '../supervisor/ops/reload.js';
import type { TlsMaterial } from '../supervisor/rpc/tls-credentials.js';
import { NODE_NAME, type FleetConfig } from './config.js';

export interface FleetFlags {
  fleetEtcd?: string;
  fleetCa?: string;
  fleetCert?: string;
  fleetKey?: string;
  fleetPrefix: string;
  nodeName?: string;
  advertise?: string;
  nodeLabel: string[];
  nodeCpu?: string;
  nodeMemory?: string;
  heartbeat: string;
  nodeLostAfter: string;
  stopJobsAfter: string;
  listen: string;
}

const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$/;
const VERSION = (JSON.parse(fs.readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../package.json'), 'utf8')) as { version: string }).version;

/** Throws an Error whose message names the flag. `tls`: the server's own --ca/--cert/--key. */
export function fleetConfig(flags: FleetFlags, tls: TlsMaterial): FleetConfig {
  const etcd = (flags.fleetEtcd ?? '').split(',').map((url) => url.trim());
  for (const url of etcd) {
    if (!/^https:\/\/[^/\s]+:\d{1,5}\/?$/.test(url)) throw new Error(`--fleet-etcd: expected https://host:port[,https://host:port…], got ${JSON.stringify(url)}`);
  }
  const etcdTls: TlsMaterial = {
    ca: flags.fleetCa ? flagPem(flags.fleetCa, '--fleet-ca') : tls.ca,
    cert: flags.fleetCert ? flagPem(flags.fleetCert, '--fleet-cert') : tls.cert,
    key: flags.fleetKey ? flagPem(flags.fleetKey, '--fleet-key') : tls.key,
  };
  const nodeName = flags.nodeName ?? os.hostname().toLowerCase();
  if (!NODE_NAME.test(nodeName)) throw new Error(`--node-name: ${JSON.stringify(nodeName)} is not a node name (lower-case letters, digits, . and -, at most 63)`);
  const cert = new X509Certificate(tls.cert);
  // Other nodes check it before they forward a caller to this one: better to learn it here.
  const subject = Object.fromEntries(cert.subject.split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
  if (subject.OU !== 'node' || subject.CN !== nodeName) {
    throw new Error(`--cert: a fleet node's certificate must have OU node and CN ${nodeName} (the node's name); this one has OU ${JSON.stringify(subject.OU ?? '')} and CN ${JSON.stringify(subject.CN ?? '')}`);
  }
  const advertise = parseAdvertise(flags.advertise, flags.listen);
  const labels = parseLabels(flags.nodeLabel);
  if ('problem' in labels) throw new Error(`--node-label: ${labels.problem}`);
  const cpuPercent = flags.nodeCpu === undefined ? os.availableParallelism() * 100 : Number(flags.nodeCpu);
  if (!Number.isInteger(cpuPercent) || cpuPercent < 1) throw new Error(`--node-cpu: expected a percent of one core such as 400, got ${JSON.stringify(flags.nodeCpu)}`);
  const memoryBytes = flags.nodeMemory === undefined ? os.totalmem() : parseBytes(flags.nodeMemory);
  if (memoryBytes === null || memoryBytes < 1024 * 1024) throw new Error(`--node-memory: expected a size such as 16G, got ${JSON.stringify(flags.nodeMemory)}`);
  const heartbeatMs = duration(flags.heartbeat, '--heartbeat', 50);
  const nodeLostAfterMs = duration(flags.nodeLostAfter, '--node-lost-after', 1_000);
  if (nodeLostAfterMs % 1000 !== 0) throw new Error(`--node-lost-after: etcd leases count whole seconds, got ${flags.nodeLostAfter}`);
  if (heartbeatMs * 2 > nodeLostAfterMs) throw new Error(`--heartbeat (${flags.heartbeat}) must be at most half of --node-lost-after (${flags.nodeLostAfter})`);
  const stopJobsAfterMs = duration(flags.stopJobsAfter, '--stop-jobs-after', 0);
  if (!/^\/([^/\s]+\/)*$/.test(flags.fleetPrefix)) throw new Error(`--fleet-prefix: expected a path such as /jobworker/ (starting and ending with /), got ${JSON.stringify(flags.fleetPrefix)}`);
  return {
    etcd,
    etcdTls,
    nodeTls: tls,
    nodeName,
    advertise,
    labels: labels.labels,
    capacity: { cpuPercent, memoryMb: Math.floor(memoryBytes / (1024 * 1024)) },
    heartbeatMs,
    nodeLostAfterMs,
    stopJobsAfterMs,
    prefix: flags.fleetPrefix,
    version: VERSION,
  };
}

function duration(text: string, flag: string, minMs: number): number {
  const ms = parseDuration(text);
  if (ms === null || ms < minMs) throw new Error(`${flag}: expected a duration of at least ${minMs}ms such as 500ms, 5s or 1m, got ${JSON.stringify(text)}`);
  return ms;
}

function parseAdvertise(advertise: string | undefined, listen: string): FleetConfig['advertise'] {
  if (advertise === undefined) {
    const match = HOST_PORT.exec(listen);
    const host = match?.[1];
    if (!host || host === '0.0.0.0' || host === '[::]' || host === '::') {
      throw new Error(`--advertise: required when --listen (${listen}) is on every address: say where other nodes reach this one`);
    }
    return { host, port: null };
  }
  const match = HOST_PORT.exec(advertise);
  const port = match?.[2] === undefined ? null : Number(match[2]);
  if (!match || (port !== null && (port < 1 || port > 65535))) throw new Error(`--advertise: expected HOST:PORT or HOST, got ${JSON.stringify(advertise)}`);
  return { host: match[1]!, port };
}
