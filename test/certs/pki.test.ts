import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, unlink } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { DEV_PKI_FILES, PkiError, createCa, issueCert, writeDevPki, type IssueCertOptions, type PemPair } from '../../certs/pki.js';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const DAY_MS = 24 * 60 * 60 * 1000;

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'jobworker-pki-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function readDevPki(dir: string) {
  const read = (name: string) => readFile(path.join(dir, name), 'utf8');
  const pair = async (prefix: string): Promise<PemPair> => ({ certPem: await read(`${prefix}-cert.pem`), keyPem: await read(`${prefix}-key.pem`) });
  return { ca: await pair('ca'), server: await pair('server'), admin: await pair('client-admin'), viewer: await pair('client-viewer') };
}

/** Whole seconds: certificates carry no milliseconds. */
const seconds = (date: Date | string) => Math.floor(new Date(date).getTime() / 1000);

/** authorizationError: why the server refused the client's certificate, if it did. */
type Verdict = { ok: true; peer: X509Certificate } | { ok: false; error: Error; authorizationError: string | undefined };

/**
 * One mutual-TLS handshake on a loopback port: the server demands a client
 * cert signed by `ca`. The verdict is the server's, since with TLS 1.3 the
 * client may finish its side before the server has judged its certificate.
 */
async function handshake(t: ExecutionContext, ca: string, server: PemPair, client: PemPair): Promise<Verdict> {
  const sockets = new Set<tls.TLSSocket>();
  const tlsServer = tls.createServer({ key: server.keyPem, cert: server.certPem, ca, requestCert: true, rejectUnauthorized: true });
  tlsServer.on('secureConnection', (socket) => sockets.add(socket));
  const verdict = new Promise<Verdict>((resolve) => {
    tlsServer.once('secureConnection', (socket) => resolve({ ok: true, peer: socket.getPeerX509Certificate()! }));
    // A refused client cert shows as the server resetting the connection; the
    // socket's authorizationError says why.
    tlsServer.once('tlsClientError', (error, socket) =>
      resolve({ ok: false, error, authorizationError: socket.authorizationError?.toString() }));
  });
  await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
  const client1 = tls.connect({
    host: '127.0.0.1',
    port: (tlsServer.address() as AddressInfo).port,
    servername: 'localhost',
    ca,
    key: client.keyPem,
    cert: client.certPem,
  });
  sockets.add(client1);
  // Failures are judged from the server's verdict; the client's side of them
  // (a reset, an alert) is expected noise.
  client1.on('error', () => undefined);
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    tlsServer.close();
  });
  return verdict;
}

test('createCa: a self-signed CA with critical basicConstraints and certificate signing usage', async (t) => {
  const ca = await createCa({ cn: 'Test CA', org: 'tests', days: 10 });
  const cert = new X509Certificate(ca.certPem);
  t.is(cert.subject, 'O=tests\nCN=Test CA');
  t.is(cert.issuer, cert.subject);
  t.true(cert.ca);
  t.true(cert.checkIssued(cert));
  t.true(cert.verify(cert.publicKey));
  t.is(seconds(cert.validTo) - seconds(cert.validFrom), 10 * 24 * 3600);
  const { stdout } = await execa('openssl', ['x509', '-noout', '-ext', 'basicConstraints,keyUsage'], { input: ca.certPem });
  t.regex(stdout, /Basic Constraints: critical\s+CA:TRUE/);
  t.regex(stdout, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
});

test('writeDevPki: creates the dir, the CA, server and client pairs, keys 0600 and certs 0644', async (t) => {
  const dir = path.join(await tempDir(t), 'nested', 'certs');
  const { written, kept } = await writeDevPki(dir);
  t.deepEqual(written.sort(), DEV_PKI_FILES.map((name) => path.join(dir, name)).sort());
  t.deepEqual(kept, []);
  for (const name of DEV_PKI_FILES) {
    const mode = (await stat(path.join(dir, name))).mode & 0o777;
    t.is(mode, name.endsWith('-key.pem') ? 0o600 : 0o644, name);
  }

  const pki = await readDevPki(dir);
  const ca = new X509Certificate(pki.ca.certPem);
  const server = new X509Certificate(pki.server.certPem);
  const admin = new X509Certificate(pki.admin.certPem);
  const viewer = new X509Certificate(pki.viewer.certPem);
  t.true(ca.ca);
  t.is(ca.subject, 'O=jobworker-dev\nCN=jobworker-dev CA');
  t.is(server.subject, 'O=jobworker-dev\nCN=jobworker-server');
  t.is(server.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
  t.deepEqual(server.keyUsage, [SERVER_AUTH]);
  t.is(admin.subject, 'O=jobworker-dev\nOU=admin\nCN=admin');
  t.deepEqual(admin.keyUsage, [CLIENT_AUTH]);
  t.is(admin.subjectAltName, undefined);
  t.is(viewer.subject, 'O=jobworker-dev\nOU=viewer\nCN=viewer');
  for (const [leaf, pair] of [[server, pki.server], [admin, pki.admin], [viewer, pki.viewer]] as const) {
    t.false(leaf.ca);
    t.is(leaf.issuer, ca.subject);
    t.true(leaf.checkIssued(ca));
    t.true(leaf.verify(ca.publicKey));
    t.true(leaf.checkPrivateKey(createPrivateKey(pair.keyPem)));
  }
});

test('tls: the dev admin client completes a mutual-TLS handshake with the dev server', async (t) => {
  const dir = await tempDir(t);
  await writeDevPki(dir);
  const pki = await readDevPki(dir);
  const verdict = await handshake(t, pki.ca.certPem, pki.server, pki.admin);
  if (!verdict.ok) return t.fail(`handshake failed: ${verdict.error.message}`);
  t.is(verdict.peer.subject, 'O=jobworker-dev\nOU=admin\nCN=admin');
});

test('tls: a client certificate from another CA is rejected by the server', async (t) => {
  const dir = await tempDir(t);
  await writeDevPki(dir);
  const pki = await readDevPki(dir);
  const otherCa = await createCa({ cn: 'Other CA' });
  const stranger = await issueCert(otherCa, { cn: 'admin', ou: 'admin', kind: 'client' });
  const verdict = await handshake(t, pki.ca.certPem, pki.server, stranger);
  if (verdict.ok) return t.fail('the server accepted a stranger');
  t.is(verdict.authorizationError, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
});

test('tls: an expired client certificate is rejected by the server', async (t) => {
  const dir = await tempDir(t);
  await writeDevPki(dir);
  const pki = await readDevPki(dir);
  const expired = await issueCert(pki.ca, { cn: 'admin', ou: 'admin', kind: 'client', notAfter: new Date(Date.now() - DAY_MS) });
  const verdict = await handshake(t, pki.ca.certPem, pki.server, expired);
  if (verdict.ok) return t.fail('the server accepted an expired certificate');
  t.is(verdict.authorizationError, 'CERT_HAS_EXPIRED');
});

test('writeDevPki: a second run writes nothing and leaves every file untouched', async (t) => {
  const dir = await tempDir(t);
  await writeDevPki(dir);
  const before = await Promise.all(DEV_PKI_FILES.map(async (name) => {
    const file = path.join(dir, name);
    return { content: await readFile(file, 'utf8'), mtimeMs: (await stat(file)).mtimeMs };
  }));
  const { written, kept } = await writeDevPki(dir);
  t.deepEqual(written, []);
  t.deepEqual(kept, DEV_PKI_FILES.map((name) => path.join(dir, name)));
  const after = await Promise.all(DEV_PKI_FILES.map(async (name) => {
    const file = path.join(dir, name);
    return { content: await readFile(file, 'utf8'), mtimeMs: (await stat(file)).mtimeMs };
  }));
  t.deepEqual(after, before);
});

test('writeDevPki: only a deleted viewer pair is recreated, issued by the same CA', async (t) => {
  const dir = await tempDir(t);
  await writeDevPki(dir);
  const before = await readDevPki(dir);
  await unlink(path.join(dir, 'client-viewer-cert.pem'));
  await unlink(path.join(dir, 'client-viewer-key.pem'));

  const { written } = await writeDevPki(dir);
  t.deepEqual(written, [path.join(dir, 'client-viewer-cert.pem'), path.join(dir, 'client-viewer-key.pem')]);
  const after = await readDevPki(dir);
  t.deepEqual({ ...after, viewer: undefined }, { ...before, viewer: undefined });
  t.not(after.viewer.certPem, before.viewer.certPem);
  const viewer = new X509Certificate(after.viewer.certPem);
  t.true(viewer.checkIssued(new X509Certificate(before.ca.certPem)));
  t.true(viewer.verify(new X509Certificate(before.ca.certPem).publicKey));
  t.is((await stat(path.join(dir, 'client-viewer-key.pem'))).mode & 0o777, 0o600);
});

test('writeDevPki: refuses with PKI_INCOMPLETE when the CA cert is gone but other files remain', async (t) => {
  const dir = await tempDir(t);
  await writeDevPki(dir);
  await unlink(path.join(dir, 'ca-cert.pem'));
  const error = await t.throwsAsync(writeDevPki(dir), { instanceOf: PkiError });
  t.is(error?.code, 'PKI_INCOMPLETE');
  t.regex(error?.message ?? '', /ca-cert\.pem is missing/);
  await t.throwsAsync(stat(path.join(dir, 'ca-cert.pem')), { code: 'ENOENT' });
});

test('writeDevPki: refuses with PKI_INCOMPLETE when a leaf has a cert but no key', async (t) => {
  const dir = await tempDir(t);
  await writeDevPki(dir);
  await unlink(path.join(dir, 'server-key.pem'));
  const error = await t.throwsAsync(writeDevPki(dir), { instanceOf: PkiError });
  t.is(error?.code, 'PKI_INCOMPLETE');
  await t.throwsAsync(stat(path.join(dir, 'server-key.pem')), { code: 'ENOENT' });
});

test('issueCert: several OUs each become one OU attribute, in order', async (t) => {
  const ca = await createCa({ cn: 'Test CA' });
  const leaf = await issueCert(ca, { cn: 'alice', ou: ['admin', 'viewer'], org: 'tests', kind: 'client' });
  t.is(new X509Certificate(leaf.certPem).subject, 'O=tests\nOU=admin\nOU=viewer\nCN=alice');
});

test('issueCert: without ou or org the subject holds only the CN', async (t) => {
  const ca = await createCa({ cn: 'Test CA' });
  const leaf = await issueCert(ca, { cn: 'nobody', kind: 'client' });
  t.is(new X509Certificate(leaf.certPem).subject, 'CN=nobody');
});

test('issueCert: subject values with / + = are kept literally', async (t) => {
  const ca = await createCa({ cn: 'Test CA' });
  const leaf = await issueCert(ca, { cn: 'a/b+c=d', ou: 'x\\y', kind: 'client' });
  t.is(new X509Certificate(leaf.certPem).subject, 'OU=x\\\\y\nCN=a/b\\+c=d');
});

test('issueCert: notAfter in the past gives an expired certificate', async (t) => {
  const ca = await createCa({ cn: 'Test CA' });
  const notAfter = new Date(Date.now() - DAY_MS);
  const cert = new X509Certificate((await issueCert(ca, { cn: 'old', kind: 'client', notAfter })).certPem);
  t.is(seconds(cert.validTo), seconds(notAfter));
  t.true(seconds(cert.validFrom) < seconds(notAfter));
  t.true(cert.verify(new X509Certificate(ca.certPem).publicKey));
});

test('issueCert: notBefore in the future gives a not-yet-valid certificate', async (t) => {
  const ca = await createCa({ cn: 'Test CA' });
  const notBefore = new Date(Date.now() + 2 * DAY_MS);
  const cert = new X509Certificate((await issueCert(ca, { cn: 'early', kind: 'server', notBefore, days: 3 })).certPem);
  t.is(seconds(cert.validFrom), seconds(notBefore));
  t.is(seconds(cert.validTo), seconds(notBefore) + 3 * 24 * 3600);
});

test('issueCert: extendedKeyUsage null omits the extension, a list replaces the default', async (t) => {
  const ca = await createCa({ cn: 'Test CA' });
  const none = new X509Certificate((await issueCert(ca, { cn: 'any', kind: 'server', extendedKeyUsage: null })).certPem);
  // @types/node types keyUsage as always present; Node gives undefined without the extension.
  t.is(none.keyUsage as string[] | undefined, undefined);
  const both = new X509Certificate((await issueCert(ca, { cn: 'both', kind: 'client', extendedKeyUsage: ['serverAuth', 'clientAuth'] })).certPem);
  t.deepEqual(both.keyUsage, [SERVER_AUTH, CLIENT_AUTH]);
});

test('issueCert: sans are told apart as DNS names and IP addresses', async (t) => {
  const ca = await createCa({ cn: 'Test CA' });
  const cert = new X509Certificate((await issueCert(ca, { cn: 'srv', kind: 'server', sans: ['example.test', '10.0.0.1', 'fe80::1', 'URI:spiffe://x/y'] })).certPem);
  t.is(cert.subjectAltName, 'DNS:example.test, IP Address:10.0.0.1, IP Address:FE80:0:0:0:0:0:0:1, URI:spiffe://x/y');
});

test('issueCert: invalid options fail with PKI_INVALID_OPTION before openssl runs', async (t) => {
  const ca = await createCa({ cn: 'Test CA' });
  for (const options of [
    { cn: '', kind: 'client' },
    { cn: 'x', ou: '', kind: 'client' },
    { cn: 'x', kind: 'server', sans: ['a,b'] },
    { cn: 'x', kind: 'client', notAfter: new Date(), days: 1 },
    { cn: 'x', kind: 'client', notBefore: new Date(Date.now() + DAY_MS), notAfter: new Date() },
  ] satisfies IssueCertOptions[]) {
    const error = await t.throwsAsync(issueCert(ca, options), { instanceOf: PkiError });
    t.is(error?.code, 'PKI_INVALID_OPTION', JSON.stringify(options));
  }
});

test('issueCert: an openssl failure is PKI_OPENSSL_FAILED carrying its stderr', async (t) => {
  const ca = await createCa({ cn: 'Test CA' });
  const other = await createCa({ cn: 'Other CA' });
  const error = await t.throwsAsync(issueCert({ certPem: ca.certPem, keyPem: other.keyPem }, { cn: 'x', kind: 'client' }), { instanceOf: PkiError });
  t.is(error?.code, 'PKI_OPENSSL_FAILED');
  t.regex(error?.stderr ?? '', /do not match|key values mismatch/);
  t.notRegex(error?.message ?? '', /\n/);
});
