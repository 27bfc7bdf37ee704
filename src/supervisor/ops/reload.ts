// The files an operator changes while the server runs: its TLS material,
// its deny list and its quotas. Read at start, and again whenever one of them changes or
// the server gets SIGHUP; a reload that fails keeps what was in force and
// says why in the log.
import fs from 'node:fs';
import type { Logger } from 'pino';
import { readPem, PemFileError } from '../../common/pem.js';
import { QuotaRules } from '../policy/quotas.js';
import { DenyList } from '../rpc/deny-list.js';
import type { TlsMaterial } from '../rpc/tls-credentials.js';

export interface ConfigFiles {
  ca: string;
  cert: string;
  key: string;
  /** Optional file of `CN=` / `serial=` lines. */
  denyList?: string;
  /** From --deny-cn: always denied, whatever the file says. */
  denyCns: readonly string[];
  /** Optional --quota-file (policy/quotas.ts). */
  quotaFile?: string;
}

/** How often the files are checked; renames (atomic replacement) are seen too. */
const POLL_MS = 1_000;
/** Changes closer together than this (cert, then key) are one reload. */
const SETTLE_MS = 250;

export function loadTls(files: ConfigFiles): TlsMaterial {
  return { ca: flagPem(files.ca, '--ca'), cert: flagPem(files.cert, '--cert'), key: flagPem(files.key, '--key') };
}

export function loadDenyList(files: ConfigFiles): DenyList {
  if (!files.denyList) return DenyList.ofCns(files.denyCns);
  return DenyList.parse(readFlagFile(files.denyList, '--deny-list'), files.denyList, files.denyCns);
}

export function loadQuotas(files: ConfigFiles): QuotaRules {
  if (!files.quotaFile) return QuotaRules.NONE;
  return QuotaRules.parse(readFlagFile(files.quotaFile, '--quota-file'), files.quotaFile);
}

/** The text of a file a flag names; an error naming both when it cannot be read. */
function readFlagFile(file: string, flag: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
}

export function flagPem(file: string, flag: string): Buffer {
  try {
    return readPem(file);
  } catch (err) {
    if (!(err instanceof PemFileError)) throw err;
    const hint = flag === '--ca' && err.missing ? ' (run `npm run certs` for a development PKI)' : '';
    throw new Error(`${flag} ${file}: ${err.reason}${hint}`);
  }
}

/**
 * Watches the files and SIGHUP; `onSighup` runs too (the audit log reopens
 * there, for logrotate). Returns a function that stops watching.
 */
/** What a reload changes in a running server. */
export interface Reloadable {
  setTls(material: TlsMaterial): void;
  setDenyList(denyList: DenyList): void;
  setQuotas(rules: QuotaRules): void;
}

export function watchConfig(files: ConfigFiles, server: Reloadable, logger: Logger, onSighup: () => void): () => void {
  const reload = (why: string): void => {
    try {
      server.setTls(loadTls(files));
      logger.info({ why }, 'reloaded the TLS certificate, key and CA bundle');
    } catch (err) {
      logger.error({ why, err: (err as Error).message }, 'TLS reload failed; the previous certificate, key and CA bundle stay in force');
    }
    try {
      const denyList = loadDenyList(files);
      server.setDenyList(denyList);
      logger.info({ why, entries: denyList.size }, 'reloaded the deny list');
    } catch (err) {
      logger.error({ why, err: (err as Error).message }, 'deny list reload failed; the previous list stays in force');
    }
    if (files.quotaFile) {
      try {
        const quotas = loadQuotas(files);
        server.setQuotas(quotas);
        logger.info({ why, rules: quotas.size }, 'reloaded the quotas');
      } catch (err) {
        logger.error({ why, err: (err as Error).message }, 'quota file reload failed; the previous quotas stay in force');
      }
    }
  };
  let pending: NodeJS.Timeout | undefined;
  const onChange = (file: string) => (current: fs.Stats, previous: fs.Stats): void => {
    if (current.mtimeMs === previous.mtimeMs && current.ino === previous.ino && current.size === previous.size) return;
    clearTimeout(pending);
    pending = setTimeout(() => reload(`${file} changed`), SETTLE_MS);
  };
  const watched = [files.ca, files.cert, files.key, ...(files.denyList ? [files.denyList] : []), ...(files.quotaFile ? [files.quotaFile] : [])];
  const listeners = watched.map((file) => {
    const listener = onChange(file);
    fs.watchFile(file, { interval: POLL_MS, persistent: false }, listener);
    return [file, listener] as const;
  });
  const onHup = (): void => {
    onSighup();
    reload('SIGHUP');
  };
  process.on('SIGHUP', onHup);
  return () => {
    clearTimeout(pending);
    process.off('SIGHUP', onHup);
    for (const [file, listener] of listeners) fs.unwatchFile(file, listener);
  };
}
