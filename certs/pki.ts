// Development PKI: one CA and the leaf certificates jobworker uses for mutual
// TLS. Issuing lives in issue.ts, the files on disk in dev-pki.ts; importers
// use this module.
export { PkiError, type PkiErrorCode } from './errors.js';
export { createCa, issueCert, type CreateCaOptions, type IssueCertOptions, type PemPair } from './issue.js';
export { DEV_ORG, DEV_PKI_FILES, writeDevPki } from './dev-pki.js';
