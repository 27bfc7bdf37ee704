// The dev PKI on disk: a CA and the server and client pairs jobworker uses
// (plus any fleet node and etcd member pairs asked for), written next to each
// other in one directory and never overwritten.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { lstat, mkdir, open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { PkiError, io } from './errors.js';
import { createCa, issueCert, type IssueCertOptions, type PemPair } from './issue.js';

export const DEV_ORG = 'jobworker-dev';
const CA_CERT = 'ca-cert.pem';
const CA_KEY = 'ca-key.pem';

/** A pair written as `<prefix>-cert.pem` and `<prefix>-key.pem`, issued with the dev PKI's org. */
export interface DevLeaf {
  prefix: string;
  options: Omit<IssueCertOptions, 'org'>;
}

const DEV_LEAVES: DevLeaf[] = [
  { prefix: 'server', options: { cn: 'jobworker-server', kind: 'server' } },
  { prefix: 'client-admin', options: { cn: 'admin', ou: 'admin', kind: 'client' } },
  { prefix: 'client-viewer', options: { cn: 'viewer', ou: 'viewer', kind: 'client' } },
];

const pkiFiles = (leaves: readonly DevLeaf[]): string[] => [
  CA_CERT, CA_KEY, ...leaves.flatMap((leaf) => [`${leaf.prefix}-cert.pem`, `${leaf.prefix}-key.pem`]),
];

/** All files writeDevPki manages without extra leaves, CA first. */
export const DEV_PKI_FILES: readonly string[] = pkiFiles(DEV_LEAVES);

export interface WriteDevPkiOptions {
  org?: string;
  /** Pairs to manage besides the server and client ones (fleet nodes, etcd members), by the same rules. */
  extraLeaves?: readonly DevLeaf[];
}

/**
 * Writes whatever files of the dev PKI are missing in `dir`, never overwriting
 * one. Returned paths are `path.join(dir, name)`.
 */
export async function writeDevPki(dir: string, options: WriteDevPkiOptions = {}): Promise<{ written: string[]; kept: string[] }> {
  const org = options.org ?? DEV_ORG;
  for (const { prefix } of options.extraLeaves ?? []) {
    // Prefixes become file names in `dir`: nothing that could point elsewhere.
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(prefix)) throw new PkiError('PKI_INVALID_OPTION', `invalid leaf prefix ${JSON.stringify(prefix)}`);
  }
  const leaves = [...DEV_LEAVES, ...(options.extraLeaves ?? [])];
  const files = pkiFiles(leaves);
  // Two leaves with one prefix would be issued twice and collide on disk.
  const twice = files.find((name, i) => files.indexOf(name) !== i);
  if (twice !== undefined) throw new PkiError('PKI_INVALID_OPTION', `${twice} would be written by two leaves: give each leaf its own prefix`);
  const file = (name: string) => path.join(dir, name);
  await io(file('.'), () => mkdir(dir, { recursive: true }));

  const present = new Set<string>();
  for (const name of files) {
    if (await exists(file(name))) present.add(name);
  }
  const kept = files.filter((name) => present.has(name)).map(file);

  // A key without its cert (or the reverse) cannot be completed without
  // overwriting the half that is there.
  for (const { prefix } of leaves) {
    const cert = `${prefix}-cert.pem`;
    const key = `${prefix}-key.pem`;
    if (present.has(cert) !== present.has(key)) {
      const missing = present.has(cert) ? key : cert;
      throw new PkiError('PKI_INCOMPLETE', `${file(missing)} is missing but its pair exists: remove the other half to have both reissued`);
    }
  }
  const missingLeaves = leaves.filter(({ prefix }) => !present.has(`${prefix}-cert.pem`));

  let ca: PemPair;
  const written: string[] = [];
  if (present.has(CA_CERT)) {
    if (missingLeaves.length === 0) return { written, kept };
    if (!present.has(CA_KEY)) {
      throw new PkiError('PKI_INCOMPLETE', `${file(CA_KEY)} is missing: cannot issue ${missingLeaves.map((leaf) => leaf.prefix).join(', ')} with the existing CA`);
    }
    ca = {
      certPem: await io(file(CA_CERT), () => readFile(file(CA_CERT), 'utf8')),
      keyPem: await io(file(CA_KEY), () => readFile(file(CA_KEY), 'utf8')),
    };
    assertCaKeyMatches(ca, file(CA_KEY));
  } else {
    // Issuing a new CA next to leaves of an old one would leave peers that no
    // longer trust each other, with nothing on disk saying why.
    if (present.size > 0) {
      throw new PkiError('PKI_INCOMPLETE', `${file(CA_CERT)} is missing but ${[...present].join(', ')} exist in ${dir}: refusing to mix two CAs; restore the CA or remove those files`);
    }
    ca = await createCa({ cn: `${org} CA`, org });
    // The CA goes first: if a later write fails, the next run reuses it.
    await writePair(file(CA_CERT), file(CA_KEY), ca);
    written.push(file(CA_CERT), file(CA_KEY));
  }

  const issued = await Promise.all(missingLeaves.map(({ options: leafOptions }) => issueCert(ca, { ...leafOptions, org })));
  for (const [i, { prefix }] of missingLeaves.entries()) {
    await writePair(file(`${prefix}-cert.pem`), file(`${prefix}-key.pem`), issued[i]!);
    written.push(file(`${prefix}-cert.pem`), file(`${prefix}-key.pem`));
  }
  return { written, kept };
}

function assertCaKeyMatches(ca: PemPair, keyPath: string): void {
  let matches: boolean;
  try {
    matches = new X509Certificate(ca.certPem).checkPrivateKey(createPrivateKey(ca.keyPem));
  } catch (cause) {
    throw new PkiError('PKI_CA_KEY_MISMATCH', `cannot read the CA pair next to ${keyPath}: ${(cause as Error).message}`, { cause });
  }
  if (!matches) throw new PkiError('PKI_CA_KEY_MISMATCH', `${keyPath} is not the key of the CA certificate next to it`);
}

/** Key first, cert second; a key we wrote is removed if its cert cannot be. */
async function writePair(certPath: string, keyPath: string, pair: PemPair): Promise<void> {
  await writeNew(keyPath, pair.keyPem, 0o600);
  try {
    await writeNew(certPath, pair.certPem, 0o644);
  } catch (error) {
    await unlink(keyPath).catch(() => undefined);
    throw error;
  }
}

/** 'wx' fails if the file exists: a concurrent run can never be overwritten. */
async function writeNew(filePath: string, contents: string, mode: number): Promise<void> {
  const handle = await io(filePath, () => open(filePath, 'wx', mode));
  try {
    // The umask may have narrowed the mode given to open(); make it exact.
    await io(filePath, async () => {
      await handle.chmod(mode);
      await handle.writeFile(contents);
    });
  } catch (error) {
    await handle.close().catch(() => undefined);
    await unlink(filePath).catch(() => undefined);
    throw error;
  }
  await io(filePath, () => handle.close());
}

async function exists(filePath: string): Promise<boolean> {
  try {
    await lstat(filePath);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new PkiError('PKI_IO_FAILED', `${filePath}: ${(error as Error).message}`, { cause: error });
  }
}
