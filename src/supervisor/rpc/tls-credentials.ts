// The gRPC port's TLS: 1.3 only, a client certificate required and verified
// against the CA. The material is swapped on reload (ops/reload.ts) without
// restarting the listener.
import { ServerCredentials } from '@grpc/grpc-js';
import { createSecureContext, type SecureContextOptions } from 'node:tls';

export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/**
 * grpc-js's createSsl cannot set a minimum version, so the options go to the
 * HTTP/2 server through ServerCredentials' own constructor.
 */
export class MutualTlsCredentials extends ServerCredentials {
  constructor(material: TlsMaterial) {
    super({ requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, contextOptions(material));
  }

  /**
   * New connections use this material from now on; open ones keep theirs.
   * Checked before it is handed over: grpc-js answers a context it cannot
   * set by refusing every new connection. Throws (and changes nothing) when
   * it does not make a TLS context, e.g. a key that does not match its
   * certificate.
   */
  update(material: TlsMaterial): void {
    const options = contextOptions(material);
    createSecureContext(options);
    this.updateSecureContextOptions(options);
  }

  _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

/** The secure-context options of the material, TLS 1.3 only: the metrics endpoint uses them too. */
export function contextOptions(material: TlsMaterial): SecureContextOptions & { minVersion: 'TLSv1.3' } {
  return { ca: material.ca, cert: material.cert, key: material.key, minVersion: 'TLSv1.3' };
}
