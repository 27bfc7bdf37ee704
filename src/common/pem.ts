import fs from 'node:fs';

/** A certificate or key file that cannot be used; `reason` is short and fit for one line. */
export class PemFileError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
    readonly missing: boolean,
  ) {
    super(`${file}: ${reason}`);
    this.name = 'PemFileError';
  }
}

/** Reads a PEM file, checked only for being one; what it holds is TLS's to judge. */
export function readPem(file: string): Buffer {
  let pem: Buffer;
  try {
    pem = fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new PemFileError(file, reason, code === 'ENOENT');
  }
  if (!pem.includes('-----BEGIN ')) throw new PemFileError(file, 'not a PEM file', false);
  return pem;
}
