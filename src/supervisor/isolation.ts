// How a job is kept apart from the host: the server's policy (its defaults
// and what it lets admins ask for) and the one place a CreateJob request's
// isolation is checked against it. What comes out is trusted by the rest of
// the server; job-init (src/native-init) carries it out.
import fs from 'node:fs';
import path from 'node:path';
import { Network, type Isolation } from '../gen/jobworker/v1/jobworker.js';
import type { JobIsolation } from '../workers/protocol.js';
import { Errors } from './errors.js';
import { resolveUser, type JobUser } from './job-user.js';

/** full: every namespace, no network; none: the host's namespaces and network (the defaults of a request that says nothing). */
export type IsolationDefault = 'full' | 'none';

export interface IsolationPolicy {
  default: IsolationDefault;
  /** Jobs may ask for the host's network. */
  allowHostNetwork: boolean;
  /** Jobs may turn the PID and mount namespaces off. */
  allowHostNamespaces: boolean;
  /** Jobs may run with uid or gid 0. */
  allowRootJobs: boolean;
  /** Who a job runs as when its request names nobody. */
  defaultUser: JobUser;
  /** The server's paths jobs must not see (hiddenPaths()): never a rootfs either, nor in one. */
  hidden: readonly string[];
}

export interface IsolationConfig {
  default: IsolationDefault;
  allowHostNetwork: boolean;
  allowHostNamespaces: boolean;
  allowRootJobs: boolean;
  /** A user spec (see job-user.ts); default nobody, or 65534:65534 where the host has no such user. */
  defaultUser?: string;
}

export class IsolationConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IsolationConfigError';
  }
}

const NOBODY: JobUser = { uid: 65534, gid: 65534, name: null, home: '/' };
const MAX_PATH_BYTES = 4096;

/** Checks the server's flags once at startup; throws IsolationConfigError. */
export function makePolicy(config: IsolationConfig, hidden: readonly string[]): IsolationPolicy {
  let defaultUser: JobUser;
  try {
    defaultUser = resolveUser(config.defaultUser ?? 'nobody');
  } catch (err) {
    if (config.defaultUser !== undefined) throw new IsolationConfigError(`--default-user: ${(err as Error).message}`);
    defaultUser = NOBODY;
  }
  const policy = { ...config, defaultUser, hidden };
  if (isRoot(defaultUser) && !policy.allowRootJobs) {
    throw new IsolationConfigError('--default-user is root (uid or gid 0): also give --allow-root-jobs to mean it');
  }
  return policy;
}

const isRoot = (user: JobUser): boolean => user.uid === 0 || user.gid === 0;

function checkPath(value: string, what: string): void {
  if (!value.startsWith('/')) throw Errors.invalidArgument(`${what} must be an absolute path, got ${JSON.stringify(value)}`);
  if (value.includes('\0') || Buffer.byteLength(value) > MAX_PATH_BYTES) {
    throw Errors.invalidArgument(`${what} must be a path of at most ${MAX_PATH_BYTES} bytes with no NUL`);
  }
}

/** Kernel and runtime trees: a rootfs there would hand the job the host's devices or its live state. */
const NOT_ROOTFS = ['/proc', '/sys', '/dev', '/run'];

const within = (inner: string, outer: string): boolean => inner === outer || inner.startsWith(outer === '/' ? '/' : `${outer}/`);

/**
 * An existing directory, resolved to its real path (job-init gets no
 * symlinks to follow): not /, not under the kernel's trees, and apart from
 * everything the server hides (a job inside its data directory would read
 * every job's output).
 */
function resolveRootfs(rootfs: string, hidden: readonly string[]): string {
  checkPath(rootfs, 'rootfs');
  let real: string;
  try {
    real = fs.realpathSync(rootfs);
    if (!fs.statSync(real).isDirectory()) throw new Error('not a directory');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message;
    throw Errors.invalidArgument(`rootfs ${rootfs}: ${reason}`);
  }
  if (real === '/') throw Errors.invalidArgument('rootfs / is the host\'s own root: leave rootfs unset instead');
  const kernel = NOT_ROOTFS.find((tree) => within(real, tree));
  if (kernel) throw Errors.invalidArgument(`rootfs ${rootfs} is under ${kernel}, which is the kernel's and the host's own`);
  const clash = hidden.find((path) => within(real, path) || within(path, real));
  if (clash) throw Errors.invalidArgument(`rootfs ${rootfs} would show the server's own files (${clash})`);
  return real;
}

export interface ResolvedIsolation {
  isolation: JobIsolation;
  user: JobUser;
}

/** Fills in the defaults and refuses what the policy does not allow: INVALID_ARGUMENT or PERMISSION_DENIED. */
export function resolveIsolation(requested: Isolation | undefined, workdir: string, policy: IsolationPolicy): ResolvedIsolation {
  const full = policy.default === 'full';
  const pidNamespace = requested?.pidNamespace ?? full;
  const mountNamespace = requested?.mountNamespace ?? full;
  const network = requested?.network ?? Network.NETWORK_UNSPECIFIED;
  // The decoder passes any number through: only the three values are known.
  if (network !== Network.NETWORK_UNSPECIFIED && network !== Network.NETWORK_NONE && network !== Network.NETWORK_HOST) {
    throw Errors.invalidArgument(`network must be NONE or HOST, got ${network}`);
  }
  const hostNetwork = network === Network.NETWORK_UNSPECIFIED ? !full : network === Network.NETWORK_HOST;
  // What the default gives may always be asked for explicitly.
  if (hostNetwork && full && !policy.allowHostNetwork) {
    throw Errors.permissionDenied('network HOST is not allowed on this server (jobworkerd --allow-host-network)');
  }
  if ((!pidNamespace || !mountNamespace) && full && !policy.allowHostNamespaces) {
    throw Errors.permissionDenied('running without a PID or mount namespace is not allowed on this server (jobworkerd --allow-host-namespaces)');
  }
  const rootfs = requested?.rootfs ? resolveRootfs(requested.rootfs, policy.hidden) : null;
  if (rootfs && !mountNamespace) throw Errors.invalidArgument('rootfs needs the mount namespace');
  if (workdir !== '') checkPath(workdir, 'workdir');
  const user = requested?.user ? resolveUser(requested.user, rootfs ?? '/') : policy.defaultUser;
  if (isRoot(user) && !policy.allowRootJobs) {
    throw Errors.permissionDenied(`running as root (uid or gid 0) is not allowed on this server (jobworkerd --allow-root-jobs): user ${JSON.stringify(requested?.user ?? '')}`);
  }
  return {
    isolation: { pidNamespace, mountNamespace, network: hostNetwork ? 'host' : 'none', uid: user.uid, gid: user.gid, rootfs, workdir: workdir || '/' },
    user,
  };
}

/** Where a link (a certificate's live/ → archive/) really points: the target is what must be covered. */
function realPath(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    return path.resolve(file);
  }
}

/**
 * What jobs must not see of the server: its data directory and the
 * directory of its key and certificate; a file alone where its directory is
 * a top-level one (/etc, /opt…) that the job needs to see.
 */
export function hiddenPaths(dataDir: string, files: readonly string[]): string[] {
  const paths = [realPath(dataDir)];
  for (const file of files.map(realPath)) {
    const dir = path.dirname(file);
    paths.push(dir.split('/').length > 2 ? dir : file);
  }
  return [...new Set(paths)];
}
