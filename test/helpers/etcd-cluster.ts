// A real etcd cluster for fleet tests: members of the system's etcd (3.4, the
// etcd-server package) on loopback ports picked free, mutual TLS on the client
// and the peer ports, auth by client certificate CN, all torn down with the
// test. Never the system etcd on 2379.
//
// Certificates, all from one CA (as in a fleet, where nodes, members and users
// share it): each member serves its client port with its own `etcd-<name>`
// certificate; every member presents the one `etcd-peer` certificate on the
// peer port, which accepts only that CN. etcd 3.4's --peer-cert-allowed-cn
// takes a single CN and checks it both ways (the dialing member also checks
// the certificate the peer port serves), so per-member CNs cannot be used
// there: such a cluster never forms.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Teardown } from './server.js';
import { Etcd3, Range } from 'etcd3';
import { execa } from 'execa';
import { createCa, issueCert, issueEtcdMemberCert, type PemPair } from '../../certs/pki.js';
import { EtcdProcess, type EtcdMember } from './etcd-member.js';

export type { EtcdMember } from './etcd-member.js';

export interface EtcdCluster {
  /** https://127.0.0.1:PORT per member, in the order of `members`. */
  endpoints: string[];
  members: EtcdMember[];
  /** The cluster's tmp dir: pki/ and one dir per member (data/, etcd.log); removed by stop(). */
  dir: string;
  ca: PemPair;
  /** What every member presents on its peer port: CN `etcd-peer`, the only CN that port accepts. */
  peerCert: PemPair;
  /** Whether auth is enabled: then a client's certificate CN is its etcd user. */
  auth: boolean;
  /** A client as etcd's root user (certificate CN `root`), through every endpoint; calls time out after 3 s. */
  root: Etcd3;
  /** The member the live members agree is the leader; waits up to 5 s for them to agree (e.g. during an election). */
  leader(): Promise<EtcdMember>;
  /**
   * Creates etcd user `cn` (no password: its certificate CN authenticates it)
   * with a role that may read and write every key under `prefix` except under
   * `${prefix}nodes/`, where it may read everything and write only under
   * `${prefix}nodes/<nodeName>/`. Resolves once every live member has
   * applied the grants.
   */
  grantNode(cn: string, nodeName: string, prefix: string): Promise<void>;
  /** SIGKILLs every member, waits for them, removes `dir`. Runs in teardown; safe to call twice. */
  stop(): Promise<void>;
}

export interface EtcdClusterOptions {
  /** Default 3. */
  members?: number;
  /** Default: a fresh CA. */
  ca?: PemPair;
  /** Enable auth with a root user (CN `root`); default true. */
  auth?: boolean;
}

export interface ConnectOptions {
  /** Default: all of the cluster's endpoints. */
  endpoints?: string[];
  /** Deadline of each non-streaming call; default 3000. */
  callTimeoutMs?: number;
}

const START_TIMEOUT_MS = 15_000;
const LEADER_TIMEOUT_MS = 5_000;
const CALL_TIMEOUT_MS = 3_000;
/** Per etcdctl request: short, so polling a dead member costs little. */
const ETCDCTL_TIMEOUT = '1s';
const PORT_ATTEMPTS = 3;
const PEER_NAME = 'peer';
const PEER_CN = `etcd-${PEER_NAME}`;

/**
 * Starts a cluster and resolves once a linearizable read succeeds through
 * every member. Every process is killed and the dir removed in `t`'s
 * teardown, whether the test passes, fails, or this function throws.
 */
export async function startEtcdCluster(t: Teardown, options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const size = options.members ?? 3;
  if (!Number.isInteger(size) || size < 1) throw new Error(`members must be a positive integer, got ${size}`);
  const auth = options.auth ?? true;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'jobworker-etcd-'));

  let members: EtcdProcess[] = [];
  let root: Etcd3 | undefined;
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      root?.close();
      await Promise.all(members.map((member) => member.kill('SIGKILL')));
      await rm(dir, { recursive: true, force: true });
    })();
    return stopped;
  };
  t.teardown(stop);

  const ca = options.ca ?? await createCa({ cn: 'etcd test CA' });
  const names = Array.from({ length: size }, (_, i) => `m${i + 1}`);
  const pki = await writePki(path.join(dir, 'pki'), ca, names);
  const ctl = etcdctl(pki);
  const waitServing = (member: EtcdProcess) => waitHealthy(ctl, [member], START_TIMEOUT_MS);

  // A port picked free can be taken by someone else before etcd binds it:
  // then start over with new ports (the data dirs know the old ones).
  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(2 * size);
    const urls = names.map((name, i) => ({ name, clientUrl: `https://127.0.0.1:${ports[2 * i]}`, peerUrl: `https://127.0.0.1:${ports[2 * i + 1]}` }));
    const initialCluster = urls.map(({ name, peerUrl }) => `${name}=${peerUrl}`).join(',');
    // A token of its own: members of another test's cluster that ever reach
    // these ports are refused instead of joining.
    const token = `jobworker-test-${randomBytes(6).toString('hex')}`;
    members = await Promise.all(urls.map(async (member) => {
      const memberDir = path.join(dir, member.name);
      await rm(memberDir, { recursive: true, force: true });
      await mkdir(memberDir);
      return new EtcdProcess({
        ...member,
        args: memberArgs(member, path.join(memberDir, 'data'), initialCluster, token, pki),
        logFile: path.join(memberDir, 'etcd.log'),
        env: cleanEnv({}),
        waitServing,
      });
    }));
    for (const member of members) member.start();
    try {
      await waitHealthy(ctl, members, START_TIMEOUT_MS);
      break;
    } catch (error) {
      if (!(error instanceof PortTakenError) || attempt === PORT_ATTEMPTS) throw error;
      await Promise.all(members.map((member) => member.kill('SIGKILL')));
    }
  }

  const endpoints = members.map((member) => member.clientUrl);
  root = newClient(ca, pki.root, endpoints, CALL_TIMEOUT_MS);
  if (auth) await enableAuth(root);
  const rootClient = root;

  return {
    endpoints,
    members,
    dir,
    ca,
    peerCert: pki.peer,
    auth,
    root: rootClient,
    leader: () => leader(ctl, members),
    grantNode: async (cn, nodeName, prefix) => {
      if (!auth) throw new Error('grantNode needs a cluster started with auth: true');
      await grantNode(rootClient, cn, nodeName, prefix);
      // A member stamps each request with the auth revision it has applied:
      // one that has not applied these grants yet fails the user's first
      // write with "revision of auth store is old" (etcd3, unlike Go's
      // clientv3, does not retry it). A linearizable read through a member
      // waits until it has applied them.
      await waitHealthy(ctl, members.filter((member) => member.running && !member.paused), START_TIMEOUT_MS);
    },
    stop,
  };
}

/** A client certificate (clientAuth only) from the cluster's CA: with auth on, `cn` is its etcd user. */
export function issueClient(cluster: Pick<EtcdCluster, 'ca'>, cn: string, options: { ou?: string } = {}): Promise<PemPair> {
  return issueCert(cluster.ca, { cn, ou: options.ou, kind: 'client' });
}

/**
 * An etcd3 client authenticated by `pair`'s certificate, closed in teardown.
 * etcd3 sets no deadline of its own: without one, a call to a stopped member
 * hangs for many seconds instead of failing and moving on.
 */
export function connectEtcd(t: Teardown, cluster: Pick<EtcdCluster, 'ca' | 'endpoints'>, pair: PemPair, options: ConnectOptions = {}): Etcd3 {
  const client = newClient(cluster.ca, pair, options.endpoints ?? cluster.endpoints, options.callTimeoutMs ?? CALL_TIMEOUT_MS);
  t.teardown(() => client.close());
  return client;
}

function newClient(ca: PemPair, pair: PemPair, endpoints: string[], callTimeoutMs: number): Etcd3 {
  return new Etcd3({
    hosts: endpoints,
    credentials: {
      rootCertificate: Buffer.from(ca.certPem),
      certChain: Buffer.from(pair.certPem),
      privateKey: Buffer.from(pair.keyPem),
    },
    // grpc-js would send the IP as TLS ServerName, and Node warns (DEP0123)
    // in the test's output; the member certificates name localhost too.
    grpcOptions: { 'grpc.ssl_target_name_override': 'localhost' },
    // Streams (watches) live on; each attempt of every other call gets its own deadline.
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: new Date(Date.now() + callTimeoutMs) }),
  });
}

// ---------------------------------------------------------------------------
// Start-up

interface PkiFiles {
  caFile: string;
  peer: PemPair;
  peerCertFile: string;
  peerKeyFile: string;
  /** Each member's client-port pair, by name. */
  members: Map<string, { certFile: string; keyFile: string }>;
  root: PemPair;
  rootCertFile: string;
  rootKeyFile: string;
}

async function writePki(dir: string, ca: PemPair, names: string[]): Promise<PkiFiles> {
  await mkdir(dir, { mode: 0o700 });
  const write = async (name: string, pair: PemPair) => {
    const certFile = path.join(dir, `${name}-cert.pem`);
    const keyFile = path.join(dir, `${name}-key.pem`);
    await writeFile(certFile, pair.certPem);
    await writeFile(keyFile, pair.keyPem, { mode: 0o600 });
    return { certFile, keyFile };
  };
  const caFile = path.join(dir, 'ca-cert.pem');
  await writeFile(caFile, ca.certPem);
  const [peer, root, ...memberPairs] = await Promise.all([
    issueEtcdMemberCert(ca, { name: PEER_NAME }),
    issueCert(ca, { cn: 'root', kind: 'client' }),
    ...names.map((name) => issueEtcdMemberCert(ca, { name })),
  ]);
  const peerFiles = await write('peer', peer!);
  const rootFiles = await write('root', root!);
  const members = new Map<string, { certFile: string; keyFile: string }>();
  for (const [i, name] of names.entries()) members.set(name, await write(`member-${name}`, memberPairs[i]!));
  return {
    caFile,
    peer: peer!,
    peerCertFile: peerFiles.certFile,
    peerKeyFile: peerFiles.keyFile,
    members,
    root: root!,
    rootCertFile: rootFiles.certFile,
    rootKeyFile: rootFiles.keyFile,
  };
}

function memberArgs(
  member: { name: string; clientUrl: string; peerUrl: string },
  dataDir: string,
  initialCluster: string,
  token: string,
  pki: PkiFiles,
): string[] {
  const own = pki.members.get(member.name)!;
  return [
    '--name', member.name,
    '--data-dir', dataDir,
    '--listen-client-urls', member.clientUrl,
    '--advertise-client-urls', member.clientUrl,
    '--listen-peer-urls', member.peerUrl,
    '--initial-advertise-peer-urls', member.peerUrl,
    '--initial-cluster', initialCluster,
    '--initial-cluster-state', 'new',
    '--initial-cluster-token', token,
    // Fast elections, so that leader-loss tests take well under a second.
    '--heartbeat-interval', '50',
    '--election-timeout', '500',
    '--cert-file', own.certFile,
    '--key-file', own.keyFile,
    '--client-cert-auth',
    '--trusted-ca-file', pki.caFile,
    '--peer-cert-file', pki.peerCertFile,
    '--peer-key-file', pki.peerKeyFile,
    '--peer-client-cert-auth',
    '--peer-trusted-ca-file', pki.caFile,
    // Without it any certificate of the shared CA (a node's, a user's) is a
    // valid peer: it could read /members and speak raft.
    '--peer-cert-allowed-cn', PEER_CN,
    '--auto-compaction-mode', 'revision',
    '--auto-compaction-retention', '1000',
    // Structured logs on stderr, which goes to the member's etcd.log; the
    // default (capnslog) would try journald under systemd.
    '--logger', 'zap',
    '--log-outputs', 'stderr',
  ];
}

/** Loopback ports free right now: all held open at once, so they differ. */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise<net.Server>((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  })));
  const ports = servers.map((server) => (server.address() as net.AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

/** etcd and etcdctl read ETCD_* / ETCDCTL_* variables as flags: none from the test's environment may reach them. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^ETCD(CTL)?_/.test(key)) env[key] = value;
  }
  return { ...env, ...extra };
}

class PortTakenError extends Error {}

async function exitedError(member: EtcdProcess): Promise<Error> {
  const log = await member.log();
  const message = `etcd member ${member.name} exited during start-up:\n${tail(log)}`;
  return /address already in use/.test(log) ? new PortTakenError(message) : new Error(message);
}

/** Resolves once a linearizable read succeeds through each member, which needs the member to have joined a quorum. */
async function waitHealthy(ctl: Etcdctl, members: EtcdProcess[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const pending = new Set(members);
  const lastError = new Map<EtcdProcess, string>();
  for (;;) {
    for (const member of pending) {
      if (!member.running) throw await exitedError(member);
    }
    await Promise.all([...pending].map(async (member) => {
      const error = await health(ctl, member);
      if (error === undefined) pending.delete(member);
      else lastError.set(member, error);
    }));
    if (pending.size === 0) return;
    if (Date.now() >= deadline) {
      const logs = await Promise.all(members.map(async (member) => `--- ${member.name} (${member.clientUrl}) log:\n${tail(await member.log())}`));
      const why = [...pending].map((member) => `${member.name}: ${lastError.get(member)}`).join('; ');
      throw new Error(`etcd not serving within ${timeoutMs / 1000} s (${why})\n${logs.join('\n')}`);
    }
    await delay(100);
  }
}

/** undefined when a linearizable read through the member succeeds, else why not. */
async function health(ctl: Etcdctl, member: EtcdMember): Promise<string | undefined> {
  // endpoint health reads a key with the default, linearizable, consistency.
  const { stdout, stderr } = await ctl([member.clientUrl], ['endpoint', 'health', '-w', 'json']);
  try {
    const [result] = JSON.parse(stdout) as { health: boolean; error?: string }[];
    if (result?.health === true) return undefined;
    return result?.error ?? 'unhealthy';
  } catch {
    return lastLine(stderr) || 'no answer';
  }
}

async function enableAuth(root: Etcd3): Promise<void> {
  // With no password, etcd authenticates the user by the client
  // certificate's CN; enabling auth requires a root user with the root role.
  await root.auth.roleAdd({ name: 'root' });
  await root.auth.userAdd({ name: 'root', options: { no_password: true } });
  await root.auth.userGrantRole({ user: 'root', role: 'root' });
  await root.auth.authEnable();
}

// ---------------------------------------------------------------------------
// Queries

async function grantNode(root: Etcd3, cn: string, nodeName: string, prefix: string): Promise<void> {
  const nodes = Range.prefix(`${prefix}nodes/`);
  const all = Range.prefix(prefix);
  // Permissions only add up: "all of prefix but nodes/" is the range
  // before nodes/ plus the range after it.
  const role = root.role(`node-${cn}`);
  await role.create();
  for (const grant of [
    { permission: 'Readwrite', range: new Range(all.start, nodes.start) },
    { permission: 'Readwrite', range: new Range(nodes.end, all.end) },
    { permission: 'Read', range: nodes },
    { permission: 'Readwrite', range: Range.prefix(`${prefix}nodes/${nodeName}/`) },
  ] as const) {
    await role.grant(grant);
  }
  await root.auth.userAdd({ name: cn, options: { no_password: true } });
  await root.auth.userGrantRole({ user: cn, role: role.name });
}

interface MemberStatus {
  member: EtcdMember;
  id: string;
  leader: string;
}

async function leader(ctl: Etcdctl, members: EtcdProcess[]): Promise<EtcdMember> {
  const deadline = Date.now() + LEADER_TIMEOUT_MS;
  for (;;) {
    // A stopped member would only cost etcdctl's timeout.
    const statuses = await memberStatuses(ctl, members.filter((member) => member.running && !member.paused));
    // During an election members disagree, or name a leader that is gone.
    const named = new Set(statuses.map((status) => status.leader));
    const [id] = named;
    const found = named.size === 1 ? statuses.find((status) => status.id === id) : undefined;
    if (found) return found.member;
    if (Date.now() >= deadline) {
      const seen = statuses.map((status) => `${status.member.name} (id ${status.id}) says ${status.leader}`).join(', ');
      throw new Error(`the live members did not agree on a leader among them within ${LEADER_TIMEOUT_MS / 1000} s: ${seen || 'none answered'}`);
    }
    await delay(50);
  }
}

/** The status of each member that answers; ids as decimal strings (JSON numbers would lose their low bits). */
async function memberStatuses(ctl: Etcdctl, members: EtcdMember[]): Promise<MemberStatus[]> {
  if (members.length === 0) return [];
  const { stdout } = await ctl(members.map((member) => member.clientUrl), ['endpoint', 'status', '-w', 'fields']);
  // -w fields prints a block of `"Key" : value` lines per endpoint that answered.
  const statuses: MemberStatus[] = [];
  for (const block of stdout.split(/\n\s*\n/)) {
    const fields = new Map([...block.matchAll(/^"(\w+)" : (.*)$/gm)].map(([, key, value]) => [key!, value!.replace(/^"|"$/g, '')]));
    const member = members.find((candidate) => candidate.clientUrl === fields.get('Endpoint'));
    const id = fields.get('MemberID');
    const leaderId = fields.get('Leader');
    if (member && id && leaderId) statuses.push({ member, id, leader: leaderId });
  }
  return statuses;
}

type Etcdctl = (endpoints: string[], args: string[]) => Promise<{ stdout: string; stderr: string }>;

/** Runs etcdctl as root (auth or not, root's certificate is trusted); never throws for its exit code. */
function etcdctl(pki: PkiFiles): Etcdctl {
  return async (endpoints, args) => {
    const result = await execa('etcdctl', [
      '--endpoints', endpoints.join(','),
      '--cacert', pki.caFile, '--cert', pki.rootCertFile, '--key', pki.rootKeyFile,
      '--dial-timeout', ETCDCTL_TIMEOUT, '--command-timeout', ETCDCTL_TIMEOUT,
      ...args,
    ], { env: cleanEnv({ ETCDCTL_API: '3' }), extendEnv: false, reject: false, stdin: 'ignore', timeout: 10_000 });
    // A timeout is an answer like any other (the member did not reply); a
    // spawn failure is not.
    if (result.exitCode === undefined && !result.timedOut) throw new Error(`cannot run etcdctl (package etcd-client): ${result.shortMessage}`);
    return { stdout: result.stdout, stderr: result.stderr };
  };
}

function tail(text: string, lines = 40): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

function lastLine(text: string): string {
  return text.trim().split('\n').at(-1) ?? '';
}
