// The server under test: the real jobworkerd in a process of its own (so
// the benchmark's clients do not share its event loop), with a throwaway
// PKI and a cgroup parent of its own.
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { writeDevPki } from '../certs/pki.js';
import { openChannel } from '../src/client/channel.js';
import type { JobServiceClient } from '../src/gen/jobworker/v1/jobworker.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface BenchServer {
  port: number;
  /** Where GET /metrics answers (plain HTTP on loopback). */
  metricsPort: number;
  pid: number;
  pki: string;
  cgroupDriver: string;
  /** A new channel (its own connection) with the role's certificate. */
  client(role?: 'admin' | 'viewer'): JobServiceClient;
  /** jobctl's environment for this server. */
  env(): Record<string, string>;
  /** The start phases the server logged (src/workers/protocol.ts StartPhases, plus totalMs) since the last call. */
  takeStartPhases(): Record<string, number>[];
  /** Resident memory of the server process now, in bytes. */
  memory(): { rss: number };
  /**
   * The server's highest resident memory while `work` runs, read every 50 ms:
   * VmHWM would be its peak over its whole life, earlier scenarios included.
   */
  peakRss(work: () => Promise<unknown>): Promise<number>;
  stop(): Promise<void>;
}

export interface BenchServerOptions {
  /** Names this server's cgroup parent apart from another bench server's running at the same time. */
  name?: string;
  /** More jobworkerd flags. */
  args?: string[];
  /** Flags for node itself, e.g. --cpu-prof. */
  nodeArgs?: string[];
}

export async function startBenchServer(options: BenchServerOptions = {}): Promise<BenchServer> {
  const pki = fs.mkdtempSync('/tmp/jobworker-bench-pki-');
  await writeDevPki(pki);
  const parent = `jobworker-bench-${process.pid}${options.name ? `-${options.name}` : ''}`;
  const child: ResultPromise = execa(
    'node',
    [
      ...(options.nodeArgs ?? []),
      path.join(REPO, 'bin/jobworkerd.js'),
      ...['--listen', '127.0.0.1:0', '--ca', `${pki}/ca-cert.pem`, '--cert', `${pki}/server-cert.pem`, '--key', `${pki}/server-key.pem`],
      ...['--cgroup-parent', parent, '--audit-log', path.join(pki, 'audit.log'), '--data-dir', path.join(pki, 'data')],
      // Scenario 1 measures what isolation costs against a job in the host's namespaces.
      ...['--allow-host-namespaces', '--allow-host-network'],
      // Scenario 8 scrapes it.
      ...['--metrics-listen', '127.0.0.1:0'],
      ...(options.args ?? []),
    ],
    { reject: false, stderr: 'inherit' },
  );
  const lines = readline.createInterface({ input: child.stdout! });
  let startPhases: Record<string, number>[] = [];
  // pino writes to the pipe synchronously: keep reading or the server blocks.
  const started = await new Promise<{ port: number; cgroupDriver: string; metricsPort: number }>((resolve, reject) => {
    let listening: { port: number; cgroupDriver: string } | undefined;
    lines.on('line', (line) => {
      const entry = JSON.parse(line) as { msg?: string; port?: number; cgroupDriver?: string; start?: Record<string, number> };
      if (entry.msg === 'jobworkerd listening') listening = { port: entry.port!, cgroupDriver: entry.cgroupDriver! };
      // Logged right after "listening".
      if (entry.msg === 'metrics at /metrics' && listening) resolve({ ...listening, metricsPort: entry.port! });
      if (entry.msg === 'job started' && entry.start) startPhases.push(entry.start);
    });
    lines.on('close', () => reject(new Error('jobworkerd exited before listening')));
  });
  const clients: JobServiceClient[] = [];
  return {
    ...started,
    pid: child.pid!,
    pki,
    client(role = 'admin') {
      const client = openChannel({ server: `127.0.0.1:${started.port}`, ca: `${pki}/ca-cert.pem`, cert: `${pki}/client-${role}-cert.pem`, key: `${pki}/client-${role}-key.pem` });
      clients.push(client);
      return client;
    },
    takeStartPhases() {
      const taken = startPhases;
      startPhases = [];
      return taken;
    },
    env: () => ({
      JOBWORKER_SERVER: `127.0.0.1:${started.port}`,
      JOBWORKER_CA: `${pki}/ca-cert.pem`,
      JOBWORKER_CERT: `${pki}/client-admin-cert.pem`,
      JOBWORKER_KEY: `${pki}/client-admin-key.pem`,
    }),
    memory() {
      return { rss: rssOf(child.pid!) };
    },
    async peakRss(work) {
      let peak = rssOf(child.pid!);
      const timer = setInterval(() => (peak = Math.max(peak, rssOf(child.pid!))), 50);
      try {
        await work();
      } finally {
        clearInterval(timer);
      }
      return Math.max(peak, rssOf(child.pid!));
    },
    async stop() {
      for (const client of clients) client.close();
      child.kill('SIGTERM');
      await child;
      fs.rmSync(pki, { recursive: true, force: true });
      // The server removed its job groups; the parent is ours to remove, in every hierarchy.
      for (const hierarchy of ['', ...fs.readdirSync('/sys/fs/cgroup')]) {
        try {
          fs.rmdirSync(path.join('/sys/fs/cgroup', hierarchy, parent));
        } catch {
          // not a hierarchy, or no parent there
        }
      }
    },
  };
}

function rssOf(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}
