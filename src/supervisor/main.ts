// jobworkerd: the server binary.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Builtins, Cli, Command, Option } from 'clipanion';
import { pino, type Logger } from 'pino';
import * as t from 'typanion';
import { colorsFor } from '../common/terminal.js';
import { MAX_TIMEOUT_MS } from '../common/api-limits.js';
import { formatDuration, parseBytes, parseDuration } from '../common/units.js';
import type { DeadlinePolicy } from './policy/job-meta.js';
import type { DenyList } from './rpc/deny-list.js';
import { IsolationConfigError } from './policy/isolation.js';
import { parseListen } from './ops/metrics-endpoint.js';
import { HistoryError } from './jobs/history.js';
import { loadDenyList, loadQuotas, loadTls, watchConfig, type ConfigFiles } from './ops/reload.js';
import type { QuotaRules } from './policy/quotas.js';
import type { TlsMaterial } from './rpc/tls-credentials.js';
import { StartAbortedError, startServer } from './server.js';
import { fleetBackend, FleetStartError } from '../fleet/backend.js';
import { fleetConfig } from '../fleet/flags.js';
import { SystemdNotifier } from './ops/systemd-notify.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

const CGROUP_NAME = /^[A-Za-z0-9_.-]+$/;

/** jobworker, a/b, /a/b: names of letters, digits, `_.-`, none of them `.` or `..`. */
const isCgroupPath = t.makeValidator<unknown, string>({
  test: (value, state): value is string => {
    const names = typeof value === 'string' ? value.replace(/^\//, '').split('/') : [];
    if (names.length > 0 && names.every((name) => CGROUP_NAME.test(name) && name !== '.' && name !== '..')) return true;
    state?.errors?.push(`${state.p ?? '.'}: expected a cgroup path such as jobworker or /jobworker (got ${JSON.stringify(value)})`);
    return false;
  },
});

function isSize(min: number) {
  return t.makeValidator<unknown, string>({
    test: (value, state): value is string => {
      const bytes = typeof value === 'string' ? parseBytes(value) : null;
      if (bytes !== null && bytes >= min) return true;
      state?.errors?.push(`${state.p ?? '.'}: expected a size of at least ${min} bytes such as 1G, 512M or 1073741824 (got ${JSON.stringify(value)})`);
      return false;
    },
  });
}

const isListenAddress = t.makeValidator<unknown, string>({
  test: (value, state): value is string => {
    if (typeof value === 'string' && parseListen(value)) return true;
    state?.errors?.push(`${state.p ?? '.'}: expected host:port such as 127.0.0.1:9464 (got ${JSON.stringify(value)})`);
    return false;
  },
});

const isDuration = t.makeValidator<unknown, string>({
  test: (value, state): value is string => {
    if (typeof value === 'string' && parseDuration(value) !== null) return true;
    state?.errors?.push(`${state.p ?? '.'}: expected a duration such as 30m, 12h or 7d (got ${JSON.stringify(value)})`);
    return false;
  },
});

class ServeCommand extends Command {
  static override usage = Command.Usage({
    description: 'Run the jobworker server: a mutual-TLS gRPC API that runs, streams and stops jobs in cgroups',
    details: `
      Must run as root (it creates cgroups). Clients authenticate with certificates issued by the CA given with \`--ca\`; the Subject OU of a client certificate is its role: \`admin\` may do everything, \`viewer\` may only read.

      SIGTERM or SIGINT stops accepting calls, stops every running job (SIGTERM, grace period, SIGKILL), removes their cgroups and exits 0.

      The certificate, key, CA bundle, deny list and quota file are re-read when their files change (checked every second) and on SIGHUP, which also reopens \`--audit-log\`. New connections use the new material; a reload that fails keeps the old and logs why.
    `,
  });

  listen = Option.String('--listen', '0.0.0.0:50051', { description: 'Address to listen on (host:port) (default 0.0.0.0:50051)' });
  ca = Option.String('--ca', 'certs/ca-cert.pem', { description: 'CA certificate(s) that client certificates must chain to (default certs/ca-cert.pem)' });
  cert = Option.String('--cert', 'certs/server-cert.pem', { description: 'Server certificate (PEM) (default certs/server-cert.pem)' });
  key = Option.String('--key', 'certs/server-key.pem', { description: 'Server private key (PEM) (default certs/server-key.pem)' });
  cgroupDriver = Option.String('--cgroup-driver', 'auto', {
    description: 'cgroup driver: v1, v2, or auto (default; v2 when /sys/fs/cgroup is a cgroup2 mount with controllers)',
    validator: t.isEnum(['auto', 'v1', 'v2'] as const),
  });
  cgroupParent = Option.String('--cgroup-parent', 'jobworker', {
    description:
      'cgroup under which job cgroups are created: relative to the hierarchy root, or with --cgroup-delegated to the server\'s own cgroup; a leading / always means the root (default jobworker)',
    validator: isCgroupPath,
  });
  cgroupDelegated = Option.Boolean('--cgroup-delegated', false, {
    description:
      "cgroup v2: the server's own cgroup is delegated to it (systemd Delegate=yes, as in deploy/jobworkerd.service). It moves itself into <own>/supervisor and creates job cgroups under <own>/<cgroup-parent>",
  });
  workers = Option.String('--workers', String(os.availableParallelism()), {
    description: 'Job-supervisor threads (each supervises any number of jobs) (default one per core)',
    validator: t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(1, 64)]),
  });
  stopGrace = Option.String('--stop-grace', '100', {
    description: 'Default milliseconds between SIGTERM and SIGKILL when a job is stopped (default 100)',
    validator: t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(0, 600_000)]),
  });
  dataDir = Option.String('--data-dir', '/var/lib/jobworker', {
    description: 'Directory for the job history (jobs.db, SQLite) and output (output/), kept across restarts; created if missing, its parent must exist (default /var/lib/jobworker)',
  });
  maxOutputBytes = Option.String('--max-output-bytes', '1G', {
    description: "Output kept per job; past it the oldest is discarded, an eighth of this at a time: bytes, or with K, M, G, T (powers of 1024) (default 1G, at least 1M)",
    validator: isSize(1024 * 1024),
  });
  retainJobs = Option.String('--retain-jobs', '10000', {
    description: 'Ended jobs kept (record and output); the oldest are removed past this (default 10000)',
    validator: t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(0, 10_000_000)]),
  });
  retainFor = Option.String('--retain-for', '7d', {
    description: 'How long an ended job is kept: 30m, 12h, 7d, ... (default 7d)',
    validator: isDuration,
  });
  defaultTimeout = Option.String('--default-timeout', {
    description: 'Deadline of jobs whose request sets none (30s, 2h, …): stopped then, ending TIMED_OUT (default: none)',
    validator: isDuration,
  });
  maxTimeout = Option.String('--max-timeout', {
    description: 'Longest deadline a request may set (30s, 2h, …); a request past it is refused (default: 366d)',
    validator: isDuration,
  });
  denyCn = Option.Array('--deny-cn', [], { description: 'Refuse client certificates with this CN (repeatable)' });
  denyList = Option.String('--deny-list', {
    description: 'File of refused client certificates, one "CN=<name>" or "serial=<hex>" per line (# comments)',
  });
  quotaFile = Option.String('--quota-file', {
    description:
      'File of quotas, one rule a line: "default", "role=<role>" or "cn=<common name>", then any of running=N cpu=N (percent of a core) memory=N (MiB) output=SIZE rate=N/s|m|h calls=N rps=N; the most specific rule applies (with --fleet-etcd, running, cpu, memory and rate count the whole fleet: give every node the same file)',
  });
  auditLog = Option.String('--audit-log', {
    description: 'Append the audit trail (one JSON line per call) to this file instead of the main log',
  });
  isolationDefault = Option.String('--isolation-default', 'full', {
    description:
      "What a job gets where its request says nothing: full (default; its own PID, mount, hostname and IPC namespaces and no network but lo) or none (the host's namespaces and network; for trusted setups)",
    validator: t.isEnum(['full', 'none'] as const),
  });
  allowHostNetwork = Option.Boolean('--allow-host-network', false, { description: "Jobs may ask for the host's network (network HOST); implied by --isolation-default none" });
  allowHostNamespaces = Option.Boolean('--allow-host-namespaces', false, {
    description: "Jobs may run without their own PID or mount namespace, seeing the host's processes and files; implied by --isolation-default none",
  });
  allowRootJobs = Option.Boolean('--allow-root-jobs', false, {
    description: 'Jobs may run as uid or gid 0 (still without CAP_SYS_ADMIN and most other capabilities)',
  });
  allowUsers = Option.Array('--allow-users', {
    description:
      'Users jobs may ask to run as, besides the default user: names, uids or uid ranges such as 10000-19999 (repeatable or comma-separated), each only with its own primary group. Default: any user and group but root',
  });
  defaultUser = Option.String('--default-user', {
    description: 'Who jobs run as when their request names nobody: NAME, UID, NAME:GROUP or UID:GID (default nobody, or 65534:65534 where the host has no such user)',
  });
  outputPath = Option.String('--output-path', 'ring', {
    description:
      'Who reads job pipes: ring (default; supervisor threads, through a ring buffer per job) or inline (the main thread itself: only for measuring what the rings buy, npm run bench scenario 3)',
    validator: t.isEnum(['ring', 'inline'] as const),
  });
  metricsListen = Option.String('--metrics-listen', {
    description:
      'Serve Prometheus metrics at http://HOST:PORT/metrics: plain HTTP on a loopback address (127.0.0.1:9464); anywhere else HTTPS needing a client certificate from --ca with an admin or viewer role, as on the gRPC port (default: off)',
    validator: isListenAddress,
  });
  fleetEtcd = Option.String('--fleet-etcd', {
    description: 'Join a fleet whose state is in etcd at these client URLs (https://h1:2379,https://h2:2379,…); without it the server is a single host',
  });
  fleetCa = Option.String('--fleet-ca', { description: "CA bundle etcd's certificates chain to (default: --ca)" });
  fleetCert = Option.String('--fleet-cert', { description: 'Client certificate for etcd; its CN is the etcd user (default: --cert)' });
  fleetKey = Option.String('--fleet-key', { description: 'Key of --fleet-cert (default: --key)' });
  fleetPrefix = Option.String('--fleet-prefix', '/jobworker/', { description: 'Every etcd key of the fleet is under this prefix (default /jobworker/)' });
  nodeName = Option.String('--node-name', { description: "This node's name in the fleet (default: the host name); its certificate's CN must be the same" });
  advertise = Option.String('--advertise', {
    description: 'HOST:PORT (or HOST: the port bound) where other nodes and clients reach this node; required when --listen is on 0.0.0.0 or ::',
  });
  nodeLabel = Option.Array('--node-label', [], { description: 'key=value label of this node, matched by jobctl create --constraint (repeatable)' });
  nodeCpu = Option.String('--node-cpu', { description: 'CPU this node offers to placement, in percent of one core (default: cores×100)' });
  nodeMemory = Option.String('--node-memory', { description: 'Memory this node offers to placement, e.g. 16G (default: the host memory)' });
  heartbeat = Option.String('--heartbeat', '1s', { description: 'How often this node renews its lease and reports its load (default 1s)' });
  nodeLostAfter = Option.String('--node-lost-after', '10s', {
    description: "A node silent this long is lost: the fleet ends its unfinished jobs as lost (default 10s; whole seconds, etcd's lease TTL)",
  });
  stopJobsAfter = Option.String('--stop-jobs-after', '1m', {
    description: 'A node cut off from etcd past its lease takes no new jobs at once, and stops its running ones after this long (default 1m)',
  });
  logLevel = Option.String('--log-level', 'info', {
    description: 'Log level: trace, debug, info, warn, error, fatal, silent (default info)',
    validator: t.isEnum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const),
  });

  async execute(): Promise<number> {
    const logger = pino({ level: this.logLevel, base: { pid: process.pid } });
    const files: ConfigFiles = { ca: this.ca, cert: this.cert, key: this.key, denyList: this.denyList, denyCns: this.denyCn, quotaFile: this.quotaFile };
    let tls: TlsMaterial;
    let denyList: DenyList;
    let quotas: QuotaRules;
    let audit: { logger: Logger; reopen(): void } | undefined;
    let fleet;
    let deadlines: DeadlinePolicy;
    try {
      deadlines = deadlinePolicy(this.defaultTimeout, this.maxTimeout);
      tls = loadTls(files);
      denyList = loadDenyList(files);
      quotas = loadQuotas(files);
      if (this.fleetEtcd !== undefined) fleet = fleetConfig(this, tls);
      if (this.auditLog) audit = openAuditLog(this.auditLog);
    } catch (err) {
      this.context.stderr.write(`jobworkerd: ${(err as Error).message}\n`);
      return 2;
    }
    if (process.getuid?.() !== 0) {
      this.context.stderr.write('jobworkerd: must run as root to create cgroups\n');
      return 2;
    }
    // Installed before the start, and they stay installed: a signal at any
    // point — reading back the history, clearing a crash's cgroups, or a
    // second one during shutdown — must not kill the server with jobs and
    // cgroups still to clean up. One during the start lets it finish what it
    // has begun, then undo itself instead of serving.
    const stop = new AbortController();
    const signalled = new Promise<NodeJS.Signals>((resolve) => {
      const onSignal = (signal: NodeJS.Signals): void => {
        if (stop.signal.aborted) logger.warn({ signal }, 'already shutting down: stopping jobs and removing their cgroups');
        else resolve(signal);
        stop.abort();
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
    });
    logger.info('jobworkerd starting');
    let server;
    try {
      server = await startServer({
        listen: this.listen,
        tls,
        cgroupDriver: this.cgroupDriver,
        cgroupParent: this.cgroupParent,
        cgroupDelegated: this.cgroupDelegated,
        workers: this.workers,
        stopGraceMs: this.stopGrace,
        outputPath: this.outputPath,
        dataDir: this.dataDir,
        maxOutputBytes: parseBytes(this.maxOutputBytes)!,
        retainJobs: this.retainJobs,
        retainForMs: parseDuration(this.retainFor)!,
        jobInitPath: path.join(ROOT, 'build', 'job-init'),
        isolation: {
          default: this.isolationDefault,
          allowHostNetwork: this.allowHostNetwork,
          allowHostNamespaces: this.allowHostNamespaces,
          allowRootJobs: this.allowRootJobs,
          defaultUser: this.defaultUser,
          allowUsers: this.allowUsers?.flatMap((list) => list.split(',')),
        },
        keyFiles: [this.key],
        metricsListen: this.metricsListen,
        logger,
        auditLogger: audit?.logger,
        denyList,
        quotas,
        signal: stop.signal,
        backend: fleet && fleetBackend(fleet),
        deadlines,
      });
    } catch (err) {
      if (err instanceof StartAbortedError) {
        logger.info({ signal: await signalled }, 'stopped while starting: nothing was served');
        return 0;
      }
      this.context.stderr.write(`jobworkerd: cannot start: ${(err as Error).message}\n`);
      // A data directory it cannot use is a configuration error, like a bad certificate.
      return err instanceof HistoryError || err instanceof IsolationConfigError || err instanceof FleetStartError ? 2 : 1;
    }
    const unwatch = watchConfig(files, server, logger, () => audit?.reopen());
    const systemd = new SystemdNotifier(logger);
    // A signal while the port was being bound: stop at once, never tell systemd "ready".
    if (!stop.signal.aborted && !(await systemd.notify({ READY: '1', STATUS: `serving on port ${server.port}` }))) {
      // systemd would time the start out and kill the server, with whatever jobs it had started by then.
      this.context.stderr.write('jobworkerd: cannot tell systemd it is ready (NOTIFY_SOCKET is set, systemd-notify failed; see the log)\n');
      unwatch();
      await server.shutdown();
      return 1;
    }
    logger.info({ signal: await signalled }, 'shutting down');
    const stopping = systemd.notify({ STOPPING: '1', STATUS: 'stopping every job' });
    unwatch();
    await server.shutdown();
    await stopping;
    return 0;
  }
}

/** --default-timeout and --max-timeout: each at least 1 ms and at most MAX_TIMEOUT_MS, the default within the ceiling. */
function deadlinePolicy(defaultText: string | undefined, maxText: string | undefined): DeadlinePolicy {
  const read = (flag: string, text: string | undefined): number | null => {
    if (text === undefined) return null;
    const ms = parseDuration(text)!;
    if (ms < 1 || !Number.isInteger(ms) || ms > MAX_TIMEOUT_MS) throw new Error(`${flag} must be a whole number of milliseconds from 1ms to ${formatDuration(MAX_TIMEOUT_MS)}, got ${text}`);
    return ms;
  };
  const policy = { defaultMs: read('--default-timeout', defaultText), maxMs: read('--max-timeout', maxText) };
  if (policy.defaultMs !== null && policy.maxMs !== null && policy.defaultMs > policy.maxMs) {
    throw new Error(`--default-timeout ${defaultText} is past --max-timeout ${maxText}`);
  }
  return policy;
}

/** Its own file, apart from the debug log; reopened on SIGHUP so logrotate can move it. */
function openAuditLog(file: string): { logger: Logger; reopen(): void } {
  let destination;
  try {
    fs.closeSync(fs.openSync(file, 'a', 0o600));
    destination = pino.destination({ dest: file, append: true, sync: true });
  } catch (err) {
    throw new Error(`--audit-log ${file}: ${(err as Error).message}`);
  }
  return { logger: pino({ base: null }, destination), reopen: () => destination.reopen() };
}

const cli = new Cli({ binaryName: 'jobworkerd', binaryLabel: 'jobworker server', binaryVersion: '0.1.0', enableColors: colorsFor(process.stdout) });
cli.register(ServeCommand);
cli.register(Builtins.HelpCommand);
cli.register(Builtins.VersionCommand);
/**
 * clipanion reports a parse error on stdout with the whole usage, and exits
 * 1; a bad flag is a configuration error like a bad certificate: one line on
 * stderr naming the flag, and exit 2.
 */
async function main(args: string[]): Promise<number> {
  let command;
  try {
    command = cli.process(args);
  } catch (err) {
    const first = (err instanceof Error ? err.message : String(err)).split('\n')[0]!.replace(/[.:;]$/, '').trim();
    // clipanion's "Command not found; did you mean…" is all it says of an unknown flag or one missing its value.
    const what = first.startsWith('Command not found') ? 'unknown flag, or a flag without its value' : first.charAt(0).toLowerCase() + first.slice(1);
    process.stderr.write(`jobworkerd: ${what} (see "jobworkerd --help")\n`);
    return 2;
  }
  return cli.run(command);
}

process.exitCode = await main(process.argv.slice(2));
