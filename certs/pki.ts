// Development PKI: one CA and the leaf certificates jobworker uses for mutual
// TLS. Issuing lives in issue.ts, fleet node and etcd member certificates in
// fleet-certs.ts, the files on disk in dev-pki.ts; importers use this module.
export { PkiError, type PkiErrorCode } from './errors.js';
export { createCa, issueCert, type CreateCaOptions, type IssueCertOptions, type PemPair } from './issue.js';
export { DEV_ORG, DEV_PKI_FILES, writeDevPki, type DevLeaf, type WriteDevPkiOptions } from './dev-pki.js';
export {
  etcdMemberCertOptions, issueEtcdMemberCert, issueNodeCert, nodeCertOptions,
  type EtcdMemberCertOptions, type NodeCertOptions,
} from './fleet-certs.js';
