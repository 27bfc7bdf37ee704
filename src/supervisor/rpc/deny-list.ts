// Client certificates the server refuses although its CA signed them: a
// revocation list an operator can edit. Checked on every call, so a change
// takes effect on connections that are already open.
import type { PeerCertificate } from 'node:tls';

export class DenyListError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DenyListError';
  }
}

export class DenyList {
  static readonly EMPTY = new DenyList(new Set(), new Set());

  private constructor(
    readonly cns: ReadonlySet<string>,
    /** Upper-case hex without separators, as Node reports PeerCertificate.serialNumber. */
    readonly serials: ReadonlySet<string>,
  ) {}

  /**
   * One entry per line: `CN=<common name>` (exact, case-sensitive) or
   * `serial=<hex>` (case and `:` separators ignored). `#` starts a comment.
   * A line that is neither is an error naming it: a typo must not silently
   * leave a revoked certificate working.
   */
  static parse(text: string, source: string, extraCns: readonly string[] = []): DenyList {
    const cns = new Set(extraCns);
    const serials = new Set<string>();
    text.split('\n').forEach((raw, index) => {
      const line = raw.replace(/#.*$/, '').trim();
      if (line === '') return;
      const cn = /^CN=(.+)$/.exec(line);
      const serial = /^serial=([0-9A-Fa-f:]+)$/.exec(line);
      if (cn) cns.add(cn[1]!);
      else if (serial) serials.add(normalizeSerial(serial[1]!));
      else throw new DenyListError(`${source}:${index + 1}: expected "CN=<name>" or "serial=<hex>", got ${JSON.stringify(raw.trim())}`);
    });
    return new DenyList(cns, serials);
  }

  static ofCns(cns: readonly string[]): DenyList {
    return cns.length === 0 ? DenyList.EMPTY : new DenyList(new Set(cns), new Set());
  }

  get size(): number {
    return this.cns.size + this.serials.size;
  }

  /** Why the certificate is refused, or undefined when it is not listed. */
  refuses(cert: PeerCertificate, cn: string): string | undefined {
    if (this.cns.has(cn)) return `CN ${JSON.stringify(cn)}`;
    const serial = cert.serialNumber ? normalizeSerial(cert.serialNumber) : '';
    if (this.serials.has(serial)) return `serial ${serial}`;
    return undefined;
  }
}

function normalizeSerial(hex: string): string {
  return hex.replace(/:/g, '').toUpperCase().replace(/^0+(?=.)/, '');
}
