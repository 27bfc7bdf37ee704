// How a job is kept apart from the host: the server's policy (its defaults
// and what it lets admins ask for) and the one place a CreateJob request's
// isolation is checked against it. What comes out is trusted by the rest of
// the server; job-init (src/native-init) carries it out.
import fs from 'node:fs';
import path from 'node:path';
import { Network, type Isolation } from '../../gen/jobworker/v1/jobworker.js';
import type { JobIsolation } from '../../workers/protocol.js';
import { Errors } from '../errors.js';
import { resolveUser, UserLookupError, type JobUser } from './job-user.js';

/** full: every namespace, no network; none: the host's namespaces and network (the defaults of a request that says nothing). */
export type IsolationDefault = 'full' | 'none';

export interface IsolationPolicy {
  default: IsolationDefault;
  /** Jobs may ask for the host's network (always, with default none). */
  allowHostNetwork: boolean;
  /** Jobs may turn the PID and mount namespaces off (always, with default none). */
  allowHostNamespaces: boolean;
  /** Jobs may run with uid or gid 0. */
  allowRootJobs: boolean;
  /** Who a job runs as when its request names nobody. */
  defaultUser: JobUser;
  /** uids a request may name (--allow-users), besides the default user's; null: any (root as allowRootJobs says). */
  allowedUids: readonly UidRange[] | null;
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
  /** Names, uids and uid ranges (10000-19999) jobs may run as; unset: any. */
  allowUsers?: readonly string[];
}

export interface UidRange {
  from: number;
  to: number;
}

export class IsolationConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IsolationConfigError';
  }
}

/** What a server started without flags allows: nothing beyond the defaults. */
export const DEFAULT_ISOLATION: IsolationConfig = { default: 'full', allowHostNetwork: false, allowHostNamespaces: false, allowRootJobs: false };

const NOBODY: JobUser = { uid: 65534, gid: 65534, primaryGid: 65534, name: null, home: '/' };
const MAX_PATH_BYTES = 4096;

/** Checks the server's flags once at startup; throws IsolationConfigError. */
export function makePolicy(config: IsolationConfig, hidden: readonly string[]): IsolationPolicy {
  let defaultUser: JobUser;
  try {
    defaultUser = resolveUser(config.defaultUser ?? 'nobody');
  } catch (err) {
    if (!(err instanceof UserLookupError) || config.defaultUser !== undefined || err.code !== 'NO_USER') {
      throw new IsolationConfigError(`--default-user: ${(err as Error).message}`);
    }
    defaultUser = NOBODY;
  }
  if (isRoot(defaultUser) && !config.allowRootJobs) {
    throw new IsolationConfigError('--default-user is root (uid or gid 0): also give --allow-root-jobs to mean it');
  }
  // What the default gives may always be asked for explicitly.
  const hostDefault = config.default === 'none';
  return {
    default: config.default,
    allowHostNetwork: config.allowHostNetwork || hostDefault,
    allowHostNamespaces: config.allowHostNamespaces || hostDefault,
    allowRootJobs: config.allowRootJobs,
    defaultUser,
    allowedUids: config.allowUsers ? config.allowUsers.map(parseAllowed) : null,
    hidden,
  };
}

const isRoot = (user: JobUser): boolean => user.uid === 0 || user.gid === 0;

/** One --allow-users entry: a name (its uid), a uid, or a range of uids. */
function parseAllowed(entry: string): UidRange {
  const range = /^(\d{1,10})-(\d{1,10})$/.exec(entry);
  if (range && Number(range[1]) <= Number(range[2])) return { from: Number(range[1]), to: Number(range[2]) };
  try {
    const { uid } = resolveUser(entry);
    return { from: uid, to: uid };
  } catch (err) {
    throw new IsolationConfigError(`--allow-users ${entry}: ${(err as Error).message} (entries are names, uids or ranges such as 10000-19999)`);
  }
}

/**
 * With --allow-users, a user from the list and only with its own primary
 * group: a group named in the request could be any (disk, docker…) and give
 * what the uid alone does not.
 */
function checkAllowed(user: JobUser, spec: string, policy: IsolationPolicy): void {
  if (!policy.allowedUids || (user.uid === policy.defaultUser.uid && user.gid === policy.defaultUser.gid)) return;
  const listed = policy.allowedUids.some(({ from, to }) => user.uid >= from && user.uid <= to);
  if (!listed || user.gid !== user.primaryGid) {
    throw Errors.permissionDenied(`user ${JSON.stringify(spec)} (${user.uid}:${user.gid}) is not one this server lets jobs run as (jobworkerd --allow-users)`);
  }
}

export function checkAbsolutePath(value: string, what: string): void {
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
 * symlinks to follow): not /, not under the kernel's trees, apart from
 * everything the server hides (a job inside its data directory would read
 * every job's output), and out of every other user's reach (checkOwnership).
 */
function resolveRootfs(rootfs: string, hidden: readonly string[]): string {
  checkAbsolutePath(rootfs, 'rootfs');
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
  checkOwnership(rootfs, real);
  return real;
}

/**
 * job-init mounts the rootfs by its path a moment after this check, and its
 * /proc, /tmp, /sys and /dev by their paths inside it. Whoever can rename
 * an entry on that path (a job running as a user who may write there) could
 * swap in a link to the server's files or to a shared directory in between,
 * or take the job's mounts away later by renaming what they cover. As for
 * sshd's ChrootDirectory: the rootfs and every directory above it must be
 * root's and writable by root alone; above it, a sticky directory (/tmp)
 * will do, as only root may rename root's entries there.
 */
function checkOwnership(rootfs: string, real: string): void {
  const parts = real.split('/').slice(1);
  for (let i = 0; i <= parts.length; i++) {
    const dir = `/${parts.slice(0, i).join('/')}`;
    const { uid, mode } = fs.lstatSync(dir);
    const writable = (mode & 0o022) !== 0 && (dir === real || (mode & 0o1000) === 0);
    if (uid !== 0 || writable) {
      const why = uid !== 0 ? `belongs to uid ${uid}` : `is writable by others (mode ${(mode & 0o7777).toString(8).padStart(4, '0')})`;
      throw Errors.invalidArgument(`rootfs ${rootfs}: ${dir} ${why}; a rootfs and every directory above it must be root's and writable by root alone`);
    }
  }
}

/** A request's user: every lookup failure is the request's to fix. */
function lookUp(spec: string, root: string): JobUser {
  try {
    return resolveUser(spec, root);
  } catch (err) {
    if (err instanceof UserLookupError) throw Errors.invalidArgument(err.message);
    throw err;
  }
}

export interface ResolvedIsolation {
  isolation: JobIsolation;
  user: JobUser;
}

/** Fills in the defaults and refuses what the policy does not allow: INVALID_ARGUMENT or PERMISSION_DENIED. */
export function resolveIsolation(requested: Isolation | undefined, policy: IsolationPolicy): ResolvedIsolation {
  const full = policy.default === 'full';
  const pidNamespace = requested?.pidNamespace ?? full;
  const mountNamespace = requested?.mountNamespace ?? full;
  const network = requested?.network ?? Network.NETWORK_UNSPECIFIED;
  // The decoder passes any number through: only the three values are known.
  if (network !== Network.NETWORK_UNSPECIFIED && network !== Network.NETWORK_NONE && network !== Network.NETWORK_HOST) {
    throw Errors.invalidArgument(`network must be NONE or HOST, got ${network}`);
  }
  const hostNetwork = network === Network.NETWORK_UNSPECIFIED ? !full : network === Network.NETWORK_HOST;
  if (hostNetwork && !policy.allowHostNetwork) {
    throw Errors.permissionDenied('network HOST is not allowed on this server (jobworkerd --allow-host-network)');
  }
  if ((!pidNamespace || !mountNamespace) && !policy.allowHostNamespaces) {
    throw Errors.permissionDenied('running without a PID or mount namespace is not allowed on this server (jobworkerd --allow-host-namespaces)');
  }
  const rootfs = requested?.rootfs ? resolveRootfs(requested.rootfs, policy.hidden) : null;
  if (rootfs && !mountNamespace) throw Errors.invalidArgument('rootfs needs the mount namespace');
  const user = requested?.user ? lookUp(requested.user, rootfs ?? '/') : policy.defaultUser;
  if (isRoot(user) && !policy.allowRootJobs) {
    throw Errors.permissionDenied(`running as root (uid or gid 0) is not allowed on this server (jobworkerd --allow-root-jobs): user ${JSON.stringify(requested?.user ?? '')}`);
  }
  if (requested?.user) checkAllowed(user, requested.user, policy);
  return {
    isolation: { pidNamespace, mountNamespace, network: hostNetwork ? 'host' : 'none', uid: user.uid, gid: user.gid, rootfs },
    user,
  };
}

/**
 * Where a link (a certificate's live/ → archive/) really points: the target
 * is what must be covered. A path not made yet (a first start's data
 * directory) is taken from its nearest existing parent, so a rootfs given
 * by its real path still clashes with it.
 */
function realPath(file: string): string {
  const absolute = path.resolve(file);
  try {
    return fs.realpathSync(absolute);
  } catch {
    const parent = path.dirname(absolute);
    return parent === absolute ? absolute : path.join(realPath(parent), path.basename(absolute));
  }
}

const isTopLevel = (dir: string): boolean => dir.split('/').length <= 2;

/**
 * What jobs must not see of the server: its data directory and the whole
 * directory of its private key (the certificate is public: its directory
 * may be the host's trust store, which jobs need). A file cannot be hidden
 * alone: a rename over it (a key rotation) takes away what covers it in
 * every job's mount namespace. So a key straight in / or a top-level
 * directory (/etc, /root…), which jobs need or which cannot be covered
 * whole, is refused. Where the key is reached through links, the directory
 * it was named in is hidden too: a rotation that swaps a link to a new
 * directory (Kubernetes secret volumes, certbot) puts the next key there.
 */
export function hiddenPaths(dataDir: string, keyFiles: readonly string[]): string[] {
  const paths = [realPath(dataDir)];
  for (const key of keyFiles) {
    for (const dir of [path.dirname(realPath(key)), namedDirectory(key)]) {
      if (isTopLevel(dir)) {
        throw new IsolationConfigError(`--key ${key}: jobs are kept out of the key's whole directory, and ${dir} is not one to hide from them; keep the key in a directory of its own (such as /etc/jobworker/)`);
      }
      paths.push(dir);
    }
  }
  return [...new Set(paths)];
}

/**
 * The real directory the key is named in, above any link in its last steps
 * (keys/current → keys/v2: keys, where the next version will go too).
 */
function namedDirectory(key: string): string {
  let dir = path.dirname(path.resolve(key));
  while (dir !== '/' && isLink(dir)) dir = path.dirname(dir);
  return realPath(dir);
}

function isLink(file: string): boolean {
  try {
    return fs.lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}
