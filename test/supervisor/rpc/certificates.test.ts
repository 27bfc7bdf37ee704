// Certificates the CA signed but the server must still refuse (expired, not
// yet valid, not for client authentication, on the deny list), and TLS
// material replaced while the server runs.
import test from 'ava';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { credentials, status as Status, type ServiceError } from '@grpc/grpc-js';
import { createCa, issueCert, type PemPair } from '../../../certs/pki.js';
import { GetJobsStreamReq, JobServiceClient } from '../../../src/gen/jobworker/v1/jobworker.js';
import { DenyList } from '../../../src/supervisor/rpc/deny-list.js';
import { startTestServer, unary, type TestServer } from '../../helpers/server.js';

let ts: TestServer;
let ca: PemPair;

test.before(async () => {
  ts = await startTestServer();
  ca = { certPem: fs.readFileSync(path.join(ts.pki, 'ca-cert.pem'), 'utf8'), keyPem: fs.readFileSync(path.join(ts.pki, 'ca-key.pem'), 'utf8') };
});

test.after.always(() => ts?.stop());

const DAY = 24 * 60 * 60 * 1000;

function clientWith(pair: PemPair, caPem = ca.certPem): JobServiceClient {
  return new JobServiceClient(`localhost:${ts.server.port}`, credentials.createSsl(Buffer.from(caPem), Buffer.from(pair.keyPem), Buffer.from(pair.certPem)));
}

/** Every RPC's outcome for this certificate: the status code of each, 0 when answered. */
async function everyRpc(pair: PemPair): Promise<{ code: number; details: string }[]> {
  const client = clientWith(pair);
  try {
    const id = '00000000-0000-4000-8000-000000000000';
    const calls: Promise<unknown>[] = [
      unary(client, 'getJobs', {}),
      unary(client, 'getJob', { id }),
      unary(client, 'stopJob', { id }),
      unary(client, 'createJob', { command: 'true', args: [], limits: undefined }),
      new Promise((resolve, reject) => client.getJobsStream(GetJobsStreamReq.fromPartial({ id, follow: false })).on('error', reject).on('end', resolve).resume()),
    ];
    return await Promise.all(calls.map((call) => call.then(() => ({ code: 0, details: '' }), (err: ServiceError) => ({ code: err.code, details: err.details }))));
  } finally {
    client.close();
  }
}

test('certificates: an expired client certificate is refused at the handshake', async (t) => {
  const expired = await issueCert(ca, { cn: 'old', ou: 'admin', kind: 'client', notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) });
  for (const result of await everyRpc(expired)) t.is(result.code, Status.UNAVAILABLE, result.details);
});

test('certificates: a client certificate that is not yet valid is refused at the handshake', async (t) => {
  const early = await issueCert(ca, { cn: 'early', ou: 'admin', kind: 'client', notBefore: new Date(Date.now() + DAY), days: 30 });
  for (const result of await everyRpc(early)) t.is(result.code, Status.UNAVAILABLE, result.details);
});

test('certificates: a certificate for server authentication only is refused at the handshake', async (t) => {
  const serverOnly = await issueCert(ca, { cn: 'looks-like-a-server', ou: 'admin', kind: 'client', extendedKeyUsage: ['serverAuth'] });
  for (const result of await everyRpc(serverOnly)) t.is(result.code, Status.UNAVAILABLE, result.details);
});

test('certificates: a certificate without any extended key usage reaches no handler', async (t) => {
  // OpenSSL lets this one through the handshake; the RPC boundary does not.
  const noEku = await issueCert(ca, { cn: 'no-eku', ou: 'admin', kind: 'client', extendedKeyUsage: null });
  for (const result of await everyRpc(noEku)) {
    t.is(result.code, Status.UNAUTHENTICATED);
    t.regex(result.details, /not for client authentication/);
  }
});

test.serial('deny list: a listed CN or serial is refused on every RPC, on open connections too, until it is taken off', async (t) => {
  t.teardown(() => ts.server.setDenyList(DenyList.EMPTY));
  const pair = await issueCert(ca, { cn: 'soon-revoked', ou: 'admin', kind: 'client' });
  const client = clientWith(pair);
  t.teardown(() => client.close());
  t.true(Array.isArray((await unary(client, 'getJobs', {})).jobs), 'allowed before');

  ts.server.setDenyList(DenyList.parse('# revoked 2026-11-29\nCN=soon-revoked\n', 'deny'));
  const err = await unary(client, 'getJobs', {}).catch((e: ServiceError) => e);
  t.is((err as ServiceError).code, Status.UNAUTHENTICATED, 'the open connection is refused too');
  for (const result of await everyRpc(pair)) {
    t.is(result.code, Status.UNAUTHENTICATED);
    t.is(result.details, 'the client certificate (CN "soon-revoked") is on the server\'s deny list');
  }

  const serial = new X509Certificate(pair.certPem).serialNumber;
  ts.server.setDenyList(DenyList.parse(`serial=${serial.toLowerCase().match(/../g)!.join(':')}\n`, 'deny'));
  for (const result of await everyRpc(pair)) t.is(result.code, Status.UNAUTHENTICATED);

  ts.server.setDenyList(DenyList.EMPTY);
  t.true(Array.isArray((await unary(client, 'getJobs', {})).jobs), 'allowed again');
});

test('deny list: a line that is neither CN= nor serial= is an error naming the line', (t) => {
  t.throws(() => DenyList.parse('CN=a\nalice\n', 'deny.txt'), { message: 'deny.txt:2: expected "CN=<name>" or "serial=<hex>", got "alice"' });
  t.throws(() => DenyList.parse('serial=xyz', 'deny.txt'), { message: /deny\.txt:1/ });
  t.is(DenyList.parse('\n# only comments\n', 'x').size, 0);
});

/** The certificate the server presents to a new connection. */
function presented(): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: ts.server.port, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => {
      resolve(new X509Certificate(socket.getPeerX509Certificate()!.raw));
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

const original = () => ({
  ca: fs.readFileSync(path.join(ts.pki, 'ca-cert.pem')),
  cert: fs.readFileSync(path.join(ts.pki, 'server-cert.pem')),
  key: fs.readFileSync(path.join(ts.pki, 'server-key.pem')),
});

test.serial('rotation: new connections get the new server certificate; a key that does not match is refused and changes nothing', async (t) => {
  t.teardown(() => ts.server.setTls(original()));
  const before = await presented();
  const next = await issueCert(ca, { cn: 'localhost', kind: 'server' });
  ts.server.setTls({ ...original(), cert: Buffer.from(next.certPem), key: Buffer.from(next.keyPem) });
  const after = await presented();
  t.not(after.serialNumber, before.serialNumber);
  t.is(after.serialNumber, new X509Certificate(next.certPem).serialNumber);

  const stray = await issueCert(ca, { cn: 'localhost', kind: 'server' });
  t.throws(() => ts.server.setTls({ ...original(), cert: Buffer.from(next.certPem), key: Buffer.from(stray.keyPem) }), { message: /key values mismatch/ });
  t.is((await presented()).serialNumber, after.serialNumber, 'still the last good certificate');
  const admin = { certPem: fs.readFileSync(path.join(ts.pki, 'client-admin-cert.pem'), 'utf8'), keyPem: fs.readFileSync(path.join(ts.pki, 'client-admin-key.pem'), 'utf8') };
  const client = clientWith(admin);
  t.teardown(() => client.close());
  t.true(Array.isArray((await unary(client, 'getJobs', {})).jobs), 'and it still serves');
});

test.serial('rotation: a CA bundle with a second CA admits that CA\'s clients from then on', async (t) => {
  t.teardown(() => ts.server.setTls(original()));
  const newCa = await createCa({ cn: 'next-ca' });
  const client = await issueCert(newCa, { cn: 'newcomer', ou: 'viewer', kind: 'client' });
  t.is((await everyRpc(client))[0]!.code, Status.UNAVAILABLE, 'unknown CA before');
  ts.server.setTls({ ...original(), ca: Buffer.concat([original().ca, Buffer.from(newCa.certPem)]) });
  t.is((await everyRpc(client))[0]!.code, 0, 'admitted after');
});

const ALLOWED = { code: 0 };
const NOT_FOUND = { code: Status.NOT_FOUND }; // authorized, and the (made-up) job is not there
const DENIED = { code: Status.PERMISSION_DENIED };

// Order as in everyRpc: GetJobs, GetJob, StopJob, CreateJob, GetJobsStream.
const roles: [string, string | string[] | undefined, { code: number }[]][] = [
  ['admin', 'admin', [ALLOWED, NOT_FOUND, NOT_FOUND, ALLOWED, NOT_FOUND]],
  ['viewer', 'viewer', [ALLOWED, NOT_FOUND, DENIED, DENIED, NOT_FOUND]],
  ['no OU', undefined, [DENIED, DENIED, DENIED, DENIED, DENIED]],
  ['OU "root"', 'root', [DENIED, DENIED, DENIED, DENIED, DENIED]],
  ['OU "Admin " (case, trailing space)', 'Admin ', [DENIED, DENIED, DENIED, DENIED, DENIED]],
  ['OU "admin,viewer" (one value)', 'admin,viewer', [DENIED, DENIED, DENIED, DENIED, DENIED]],
  ['two OUs, admin and viewer', ['admin', 'viewer'], [DENIED, DENIED, DENIED, DENIED, DENIED]],
];

for (const [name, ou, expected] of roles) {
  test(`roles: a real certificate with ${name} gets exactly its role's RPCs`, async (t) => {
    const pair = await issueCert(ca, { cn: `role-${name.replace(/\W+/g, '-')}`, ou, kind: 'client' });
    const results = await everyRpc(pair);
    t.deepEqual(results.map(({ code }) => ({ code })), expected, JSON.stringify(results));
  });
}
