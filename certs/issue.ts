// Development PKI: one CA and the leaf certificates jobworker uses for mutual
// TLS, made with the openssl command-line tool (OpenSSL 3.0). Tests use the
// same functions to make odd certificates (expired, several OUs, no EKU...).
//
// Every openssl call runs in its own private temp dir (mkdtemp → 0700), so the
// private keys written there for a moment are never readable by others, and
// the dir is removed whatever happens.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa, ExecaError } from 'execa';
import { PkiError, io } from './errors.js';

export interface PemPair {
  certPem: string;
  keyPem: string;
}

export interface CreateCaOptions {
  cn: string;
  org?: string;
  /** Validity from now; default 3650. */
  days?: number;
  /** Parent of the temporary work dir; default os.tmpdir(). */
  dir?: string;
}

export interface IssueCertOptions {
  cn: string;
  /** Each value becomes one OU attribute; jobworker reads roles from them. */
  ou?: string | string[] | undefined;
  org?: string;
  kind: 'server' | 'client';
  /**
   * DNS names and IP addresses, told apart automatically; `URI:`/`email:`/`DNS:`/`IP:`
   * prefixes are passed through. Default for servers: localhost, 127.0.0.1, ::1;
   * none for clients.
   */
  sans?: string[];
  /** Default: now, or notAfter − 1 day when notAfter is in the past. */
  notBefore?: Date;
  /** Default: notBefore + days. Exclusive with days. */
  notAfter?: Date;
  /** Default 365. */
  days?: number;
  /** Overrides the kind's EKU (serverAuth / clientAuth); null omits the extension. */
  extendedKeyUsage?: string[] | null;
  /** Parent of the temporary work dir; default os.tmpdir(). */
  dir?: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;
const DEFAULT_SERVER_SANS = ['localhost', '127.0.0.1', '::1'];

export async function createCa(options: CreateCaOptions): Promise<PemPair> {
  const subject = subjectArg(options.cn, undefined, options.org);
  const days = positiveDays(options.days ?? 3650);
  return withWorkDir(options.dir, async (work) => {
    await writeFile(path.join(work, 'openssl.cnf'), REQ_CONFIG + CA_EXTENSIONS);
    await openssl(work, [
      'req', '-x509', '-new', ...NEW_KEY, '-keyout', 'key.pem', '-out', 'cert.pem',
      '-subj', subject, '-days', String(days), '-sha256',
      '-config', 'openssl.cnf', '-extensions', 'ca_ext',
    ]);
    return readPair(work);
  });
}

export async function issueCert(ca: PemPair, options: IssueCertOptions): Promise<PemPair> {
  const subject = subjectArg(options.cn, options.ou, options.org);
  const { notBefore, notAfter } = validity(options);
  const sans = (options.sans ?? (options.kind === 'server' ? DEFAULT_SERVER_SANS : [])).map(sanEntry);
  const eku = options.extendedKeyUsage === undefined
    ? [options.kind === 'server' ? 'serverAuth' : 'clientAuth']
    : options.extendedKeyUsage;
  for (const usage of eku ?? []) {
    if (!/^[A-Za-z0-9.]+$/.test(usage)) invalid('extendedKeyUsage', usage);
  }

  return withWorkDir(options.dir, async (work) => {
    await Promise.all([
      writeFile(path.join(work, 'openssl.cnf'), REQ_CONFIG + CA_CONFIG + leafExtensions(sans, eku)),
      writeFile(path.join(work, 'ca-cert.pem'), ca.certPem),
      writeFile(path.join(work, 'ca-key.pem'), ca.keyPem, { mode: 0o600 }),
      writeFile(path.join(work, 'index.txt'), ''),
      // Random serials: two certs from the same CA must never share one.
      writeFile(path.join(work, 'serial'), randomSerial()),
    ]);
    await openssl(work, [
      'req', '-new', ...NEW_KEY, '-keyout', 'key.pem', '-out', 'req.csr',
      '-subj', subject, '-config', 'openssl.cnf',
    ]);
    // `openssl ca` rather than `x509 -req`: in 3.0 only `ca` can set an
    // arbitrary notBefore (-startdate), which expired and not-yet-valid
    // certificates need. -preserveDN keeps the request's attributes and order
    // instead of rebuilding the subject from the policy.
    await openssl(work, [
      'ca', '-batch', '-config', 'openssl.cnf', '-cert', 'ca-cert.pem', '-keyfile', 'ca-key.pem',
      '-in', 'req.csr', '-out', 'cert.pem', '-notext', '-preserveDN', '-md', 'sha256',
      '-startdate', opensslTime(notBefore), '-enddate', opensslTime(notAfter),
      '-extensions', 'leaf_ext',
    ]);
    return readPair(work);
  });
}

// ---------------------------------------------------------------------------
// openssl plumbing

const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-noenc'];

// Our own config rather than the system's: its defaults (extensions added by
// req -x509, DN prompts) differ between distributions.
const REQ_CONFIG = `
[ req ]
distinguished_name = req_dn
prompt = no
utf8 = yes
string_mask = utf8only
[ req_dn ]
`;

const CA_EXTENSIONS = `
[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
`;

// The database files are throwaway, one fresh set per issued certificate, in
// the work dir openssl runs in: relative paths keep the dir's name (which
// could hold a `$`) out of the config. O and OU are listed so the policy keeps
// them; CN is required.
const CA_CONFIG = `
[ ca ]
default_ca = jw_ca
[ jw_ca ]
database = ./index.txt
new_certs_dir = .
serial = ./serial
policy = jw_policy
unique_subject = no
copy_extensions = none
[ jw_policy ]
organizationName = optional
organizationalUnitName = optional
commonName = supplied
`;

function leafExtensions(sans: string[], eku: string[] | null): string {
  const lines = [
    '[ leaf_ext ]',
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature',
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid, issuer',
  ];
  if (eku !== null) lines.push(`extendedKeyUsage = ${eku.join(', ')}`);
  if (sans.length > 0) lines.push(`subjectAltName = ${sans.join(', ')}`);
  return `\n${lines.join('\n')}\n`;
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  try {
    await execa('openssl', args, { cwd, stdin: 'ignore' });
  } catch (error) {
    if (!(error instanceof ExecaError)) throw error;
    const stderr = typeof error.stderr === 'string' ? error.stderr : '';
    // openssl 3 reports as "<pid>:error:<code>:<lib>:<func>:<reason>"; the
    // first such line names the cause, the rest is context.
    const lines = stderr.split('\n').map((line) => line.trim()).filter(Boolean);
    const reason = lines.find((line) => line.includes(':error:')) ?? lines.at(-1) ?? error.shortMessage;
    throw new PkiError('PKI_OPENSSL_FAILED', `openssl ${args[0]} failed: ${reason}`, { stderr, cause: error });
  }
}

async function withWorkDir<T>(parent: string | undefined, action: (work: string) => Promise<T>): Promise<T> {
  const work = await io(parent ?? os.tmpdir(), () => mkdtemp(path.join(parent ?? os.tmpdir(), 'jobworker-pki-')));
  try {
    return await action(work);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function readPair(work: string): Promise<PemPair> {
  const [certPem, keyPem] = await Promise.all([
    readFile(path.join(work, 'cert.pem'), 'utf8'),
    readFile(path.join(work, 'key.pem'), 'utf8'),
  ]);
  return { certPem, keyPem };
}

// ---------------------------------------------------------------------------
// Option checks: bad values fail here with the option's name, not deep in openssl.

function invalid(option: string, value: unknown): never {
  throw new PkiError('PKI_INVALID_OPTION', `invalid ${option}: ${JSON.stringify(value)}`);
}

/** -subj argument, most significant first: /O=…/OU=…/CN=…. */
function subjectArg(cn: string, ou: string | string[] | undefined, org: string | undefined): string {
  // openssl drops an attribute whose value is empty: refuse instead of
  // silently issuing a different subject than asked for.
  const attr = (type: string, value: string) => {
    if (value === '') invalid(type, value);
    return `/${type}=${value.replace(/[\\/+=]/g, (c) => `\\${c}`)}`;
  };
  const ous = ou === undefined ? [] : Array.isArray(ou) ? ou : [ou];
  return [
    org === undefined ? '' : attr('O', org),
    ...ous.map((value) => attr('OU', value)),
    attr('CN', cn),
  ].join('');
}

function sanEntry(san: string): string {
  // Config values are not quoted: anything beyond this set could change the meaning of the line.
  if (!/^[A-Za-z0-9.*:@/_%?&=~-]+$/.test(san)) invalid('sans', san);
  if (isIP(san) !== 0) return `IP:${san}`;
  if (/^(DNS|IP|URI|email):/.test(san)) return san;
  if (san.includes(':')) invalid('sans', san);
  return `DNS:${san}`;
}

function positiveDays(days: number): number {
  if (!Number.isInteger(days) || days <= 0) invalid('days', days);
  return days;
}

function validity(options: IssueCertOptions): { notBefore: Date; notAfter: Date } {
  for (const key of ['notBefore', 'notAfter'] as const) {
    const date = options[key];
    if (date !== undefined && !(date instanceof Date && Number.isFinite(date.getTime()))) invalid(key, date);
  }
  if (options.notAfter !== undefined && options.days !== undefined) {
    throw new PkiError('PKI_INVALID_OPTION', 'give either notAfter or days, not both');
  }
  const days = positiveDays(options.days ?? 365);
  const now = Date.now();
  // An expired certificate can be asked for with notAfter alone.
  const notBefore = options.notBefore
    ?? (options.notAfter !== undefined && options.notAfter.getTime() < now ? new Date(options.notAfter.getTime() - DAY_MS) : new Date(now));
  const notAfter = options.notAfter ?? new Date(notBefore.getTime() + days * DAY_MS);
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new PkiError('PKI_INVALID_OPTION', `notAfter (${notAfter.toISOString()}) must be after notBefore (${notBefore.toISOString()})`);
  }
  return { notBefore, notAfter };
}

/** YYYYMMDDHHMMSSZ, which `openssl ca` turns into UTCTime when in its range. */
function opensslTime(date: Date): string {
  return `${date.toISOString().slice(0, 19).replace(/[-:T]/g, '')}Z`;
}

function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f; // positive, as RFC 5280 requires
  bytes[0] = bytes[0] | 0x40; // and no leading zero byte to shorten it
  return `${bytes.toString('hex')}\n`;
}
