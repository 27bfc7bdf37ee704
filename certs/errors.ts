// The errors the certs modules raise, each with a stable code.
export type PkiErrorCode =
  | 'PKI_OPENSSL_FAILED'
  | 'PKI_INCOMPLETE'
  | 'PKI_INVALID_OPTION'
  | 'PKI_CA_KEY_MISMATCH'
  | 'PKI_IO_FAILED';

export class PkiError extends Error {
  override readonly name = 'PkiError';
  readonly code: PkiErrorCode;
  /** openssl's stderr, for PKI_OPENSSL_FAILED. */
  readonly stderr: string | undefined;

  constructor(code: PkiErrorCode, message: string, options: { stderr?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.stderr = options.stderr;
  }
}

/** Runs a file operation; any failure but a PkiError becomes PKI_IO_FAILED naming the path. */
export async function io<T>(filePath: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    if (error instanceof PkiError) throw error;
    throw new PkiError('PKI_IO_FAILED', `${filePath}: ${(error as Error).message}`, { cause: error });
  }
}
