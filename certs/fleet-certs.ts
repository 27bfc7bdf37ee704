// Certificates for a fleet: jobworkerd nodes and the etcd members they share
// state through, all issued by the one CA that also signs users' certificates.
//
// Because everything shares a CA, names are what keep the roles apart: etcd
// takes a client certificate's CN as its user, and its peer port can be
// limited to one CN (--peer-cert-allowed-cn). Node and member names are
// therefore checked here, and a node may not take a name that would make it
// etcd's root user or an etcd member.
import { PkiError } from './errors.js';
import { issueCert, type IssueCertOptions, type PemPair } from './issue.js';

export interface NodeCertOptions {
  /** The node's name: the certificate's CN and one of its DNS names. */
  name: string;
  /** More DNS names or IP addresses, after the defaults. */
  sans?: string[];
  org?: string;
}

export interface EtcdMemberCertOptions {
  /** The CN is `etcd-<name>`. */
  name: string;
  /** More DNS names or IP addresses, after the defaults. */
  sans?: string[];
  org?: string;
}

/** A DNS label, dots allowed: names become CNs, DNS names and file names. */
const NAME = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/;
const LOCAL_SANS = ['localhost', '127.0.0.1', '::1'];
// A node serves clients and calls other nodes (server and client), and the
// same certificate authenticates it to etcd. An etcd member uses its
// certificate on its client port and on its peer port, where it is both
// server and client.
const BOTH_WAYS = ['serverAuth', 'clientAuth'];

/** Issue options for a jobworkerd node's certificate: CN = name, OU `node`. */
export function nodeCertOptions(options: NodeCertOptions): IssueCertOptions {
  checkName('node', options.name);
  // etcd would take CN `root` as its root user, and `etcd-…` is the member
  // namespace, which --peer-cert-allowed-cn lets onto the peer port.
  if (options.name === 'root' || options.name.startsWith('etcd-')) {
    throw new PkiError('PKI_INVALID_OPTION', `invalid node name ${JSON.stringify(options.name)}: "root" and names starting with "etcd-" are reserved for etcd's root user and its members`);
  }
  return {
    cn: options.name,
    ou: 'node',
    ...(options.org === undefined ? {} : { org: options.org }),
    kind: 'server',
    extendedKeyUsage: BOTH_WAYS,
    sans: [...LOCAL_SANS, options.name, ...(options.sans ?? [])],
  };
}

/** Issue options for an etcd member's certificate: CN `etcd-<name>`, OU `etcd`. */
export function etcdMemberCertOptions(options: EtcdMemberCertOptions): IssueCertOptions {
  checkName('etcd member', options.name);
  return {
    cn: `etcd-${options.name}`,
    ou: 'etcd',
    ...(options.org === undefined ? {} : { org: options.org }),
    kind: 'server',
    extendedKeyUsage: BOTH_WAYS,
    sans: [...LOCAL_SANS, ...(options.sans ?? [])],
  };
}

// async: a bad name rejects the promise, as issueCert's own option checks do.
export async function issueNodeCert(ca: PemPair, options: NodeCertOptions): Promise<PemPair> {
  return issueCert(ca, nodeCertOptions(options));
}

export async function issueEtcdMemberCert(ca: PemPair, options: EtcdMemberCertOptions): Promise<PemPair> {
  return issueCert(ca, etcdMemberCertOptions(options));
}

function checkName(what: string, name: string): void {
  if (!NAME.test(name)) {
    throw new PkiError('PKI_INVALID_OPTION', `invalid ${what} name ${JSON.stringify(name)}: use 1 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit`);
  }
}
