// A real fleet on one machine: a 3-member etcd cluster (etcd-cluster.ts) and
// jobworkerd nodes, each a real process with its own port, data dir, cgroup
// parent, node certificate and etcd user, all from one CA; short timers.
// Everything is killed and removed in teardown.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { issueCert, issueNodeCert, type PemPair } from '../../certs/pki.js';
import { openChannel, withoutIpServerName } from '../../src/client/channel.js';
import { FleetServiceClient, type JobServiceClient, type Nodes } from '../../src/gen/jobworker/v1/jobworker.js';
import { launchDaemon, type LaunchedDaemon } from './daemon.js';
import { startEtcdCluster, type EtcdCluster } from './etcd-cluster.js';
import { removeParentTree } from './host.js';
import type { Teardown } from './server.js';

export const PREFIX = '/jobworker/';
/** Short timers: a node is lost 2 s after its last heartbeat. */
export const FLEET_TIMERS = ['--heartbeat', '200ms', '--node-lost-after', '2s', '--stop-jobs-after', '3s'];

export interface FleetNode {
  name: string;
  /** ca-cert.pem, server-cert.pem (the node's certificate), client-{admin,viewer}-*.pem, data/ */
  dir: string;
  parent: string;
  port: number;
  daemon: LaunchedDaemon;
  /** As admin, through this node. */
  jobs: JobServiceClient;
  fleet: FleetServiceClient;
  /** Starts it again after a kill: same name, dir, port, parent. */
  restart(): Promise<void>;
}

export interface Fleet {
  etcd: EtcdCluster;
  ca: PemPair;
  nodes: FleetNode[];
}

export interface FleetOptions {
  nodes?: number;
  /** Extra flags per node, by index. */
  args?: (index: number) => string[];
  /** Environment of each node's first start, by index (a restart gets none). */
  env?: (index: number) => Record<string, string>;
  /** The etcd members each node is given, by index; default all (a node given one member is cut off when that member is paused). */
  etcdEndpoints?: (index: number, all: string[]) => string[];
}

let fleets = 0;

export async function startFleet(t: Teardown, options: FleetOptions = {}): Promise<Fleet> {
  const etcd = await startEtcdCluster(t);
  const ca = etcd.ca;
  const count = options.nodes ?? 3;
  const fleetId = `${process.pid}-${++fleets}`;
  const admin = await issueCert(ca, { cn: 'admin', ou: 'admin', kind: 'client' });
  const viewer = await issueCert(ca, { cn: 'viewer', ou: 'viewer', kind: 'client' });
  const nodes = await Promise.all(
    Array.from({ length: count }, async (_, i): Promise<FleetNode> => {
      const name = `n${i + 1}`;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), `jobworker-fleet-${name}-`));
      t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
      const cert = await issueNodeCert(ca, { name });
      write(dir, 'ca-cert.pem', ca.certPem);
      write(dir, 'server-cert.pem', cert.certPem);
      write(dir, 'server-key.pem', cert.keyPem, 0o600);
      for (const [role, pair] of [['admin', admin], ['viewer', viewer]] as const) {
        write(dir, `client-${role}-cert.pem`, pair.certPem);
        write(dir, `client-${role}-key.pem`, pair.keyPem, 0o600);
      }
      await etcd.grantNode(name, name, PREFIX);
      const parent = `jobworker-test-fleet-${fleetId}-${name}`;
      t.teardown(() => removeParentTree(parent));
      const node = { name, dir, parent } as FleetNode;
      let listen = '127.0.0.1:0';
      let env = options.env?.(i) ?? {};
      const start = async (): Promise<string | undefined> => {
        const daemon = launchDaemon(t, dir, parent, {
          hostView: true,
          env,
          args: ['--listen', listen, '--fleet-etcd', (options.etcdEndpoints?.(i, etcd.endpoints) ?? etcd.endpoints).join(','), '--node-name', name, '--advertise', '127.0.0.1', ...FLEET_TIMERS, ...(options.args?.(i) ?? [])],
        });
        try {
          node.port = (await daemon.logged('jobworkerd listening')).port!;
        } catch {
          return (await daemon.process).stderr;
        }
        node.daemon = daemon;
        listen = `127.0.0.1:${node.port}`;
        env = {};
        return undefined;
      };
      /** Clients of the node at its port (again, when a restart had to take another). */
      const connect = (): void => {
        node.jobs?.close();
        node.fleet?.close();
        node.jobs = openChannel({ server: `127.0.0.1:${node.port}`, ca: `${dir}/ca-cert.pem`, cert: `${dir}/client-admin-cert.pem`, key: `${dir}/client-admin-key.pem` });
        node.fleet = new FleetServiceClient(`127.0.0.1:${node.port}`, withoutIpServerName(credentials.createSsl(Buffer.from(ca.certPem), Buffer.from(admin.keyPem), Buffer.from(admin.certPem))));
      };
      const failed = await start();
      if (failed !== undefined) throw new Error(`node ${name} exited before listening: ${failed}`);
      connect();
      t.teardown(() => {
        node.jobs.close();
        node.fleet.close();
      });
      node.restart = async () => {
        // Its old port, as a restarted server would take; but between the kill and now the kernel
        // may have given that port to another test's socket: then another (the node advertises it).
        let failed = await start();
        if (failed?.includes('EADDRINUSE')) {
          listen = '127.0.0.1:0';
          failed = await start();
          if (failed === undefined) connect();
        }
        if (failed !== undefined) throw new Error(`node ${name} exited before listening: ${failed}`);
      };
      return node;
    }),
  );
  return { etcd, ca, nodes };
}

function write(dir: string, name: string, text: string, mode = 0o644): void {
  fs.writeFileSync(path.join(dir, name), text, { mode });
}

/** Polls an answer of the fleet until `done` says yes (a state no event announces to a client); returns how long it took. */
export async function waitForFleet<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string, timeoutMs = 20_000): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  for (;;) {
    const value = await read().catch(() => undefined);
    if (value !== undefined && done(value)) return { value, ms: Date.now() - started };
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export function nodesOf(node: FleetNode): Promise<Nodes> {
  return new Promise((resolve, reject) => node.fleet.getNodes({}, (err, res) => (err ? reject(err) : resolve(res))));
}
