// Who a job runs as: "name", "uid", either with ":group" or ":gid", looked
// up in the passwd and group files of the filesystem the job will see (the
// host's, or its rootfs's). Only the files are read, as in a container
// image: users known only to NSS (LDAP, systemd-homed) must be given by number.
import fs from 'node:fs';
import path from 'node:path';

export interface JobUser {
  uid: number;
  gid: number;
  /** The uid's own group (passwd's; the uid itself where passwd does not list it), whatever gid was asked for. */
  primaryGid: number;
  /** From passwd; null for a uid it does not list. */
  name: string | null;
  /** From passwd; / for a uid it does not list. */
  home: string;
}

/**
 * Why a lookup failed. The callers decide what it means: a bad request
 * (INVALID_ARGUMENT) or a bad server flag (exit 2).
 */
export class UserLookupError extends Error {
  constructor(
    readonly code: 'BAD_SPEC' | 'NO_USER' | 'NO_GROUP' | 'UNREADABLE',
    message: string,
  ) {
    super(message);
    this.name = 'UserLookupError';
  }
}

/** uid_t is 32 bits and (uid_t)-1 means "unchanged" to setuid: the largest real id is one less. */
const MAX_ID = 0xffff_fffe;
const NUMBER = /^\d{1,10}$/;

interface Entry {
  name: string;
  id: number;
  gid: number;
  home: string;
}

/** passwd: name:x:uid:gid:gecos:home:shell; group: name:x:gid:members (gid and home unused). */
function readTable(root: string, file: 'passwd' | 'group'): Entry[] {
  let text: string;
  try {
    text = readSmallFile(path.join(root, 'etc', file));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new UserLookupError('UNREADABLE', `cannot read ${path.join(root, 'etc', file)}: ${(err as Error).message}`);
  }
  const entries: Entry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields.length < 3 || !NUMBER.test(fields[2]!) || (file === 'passwd' && !NUMBER.test(fields[3] ?? ''))) continue;
    entries.push({ name: fields[0]!, id: Number(fields[2]), gid: Number(fields[3]), home: fields[5] || '/' });
  }
  return entries;
}

/** Larger than any real passwd or group file. */
const MAX_TABLE_BYTES = 16 * 1024 * 1024;

/**
 * A rootfs's files are its owner's, and jobs may have written them: a FIFO
 * would block the server's main thread, a link to /dev/zero fill its memory.
 * Only a regular file of sane size is read, and a final symlink is not followed.
 */
function readSmallFile(file: string): string {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new Error('not a regular file');
    if (stat.size > MAX_TABLE_BYTES) throw new Error(`larger than ${MAX_TABLE_BYTES} bytes`);
    return fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
}

function parseId(text: string, what: string, spec: string): number | null {
  if (!NUMBER.test(text)) return null;
  const id = Number(text);
  if (id > MAX_ID) throw new UserLookupError('BAD_SPEC', `user ${JSON.stringify(spec)}: ${what} ${text} is past the largest id (${MAX_ID})`);
  return id;
}

/**
 * Resolves a user spec against root's /etc. A numeric uid that passwd does
 * not list runs with gid = uid, never 0, unless a group is given.
 */
export function resolveUser(spec: string, root = '/'): JobUser {
  const [userPart = '', groupPart, ...rest] = spec.split(':');
  if (userPart === '' || groupPart === '' || rest.length > 0) {
    throw new UserLookupError('BAD_SPEC', `user must be NAME, UID, NAME:GROUP or UID:GID, got ${JSON.stringify(spec)}`);
  }
  const passwd = readTable(root, 'passwd');
  const uid = parseId(userPart, 'uid', spec);
  const entry = uid === null ? passwd.find((e) => e.name === userPart) : passwd.find((e) => e.id === uid);
  if (!entry && uid === null) throw new UserLookupError('NO_USER', `no user ${JSON.stringify(userPart)} in ${path.join(root, 'etc/passwd')}`);
  const primaryGid = entry?.gid ?? uid!;
  let gid = primaryGid;
  if (groupPart !== undefined) {
    const byNumber = parseId(groupPart, 'gid', spec);
    if (byNumber !== null) {
      gid = byNumber;
    } else {
      const group = readTable(root, 'group').find((e) => e.name === groupPart);
      if (!group) throw new UserLookupError('NO_GROUP', `no group ${JSON.stringify(groupPart)} in ${path.join(root, 'etc/group')}`);
      gid = group.id;
    }
  }
  return { uid: entry?.id ?? uid!, gid, primaryGid, name: entry?.name ?? null, home: entry?.home ?? '/' };
}
