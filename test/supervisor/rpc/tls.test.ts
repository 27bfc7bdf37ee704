// The handshake is the first gate: TLS 1.3 only, a client certificate from
// the configured CA required. Nothing here reaches an RPC handler.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { credentials, status as Status, type ServiceError } from '@grpc/grpc-js';
import { createCa, issueCert, type PemPair } from '../../../certs/pki.js';
import { JobServiceClient } from '../../../src/gen/jobworker/v1/jobworker.js';
import { startTestServer, unary, type TestServer } from '../../helpers/server.js';

let ts: TestServer;
let ca: Buffer;
let admin: { cert: Buffer; key: Buffer };

test.before(async () => {
  ts = await startTestServer();
  ca = fs.readFileSync(path.join(ts.pki, 'ca-cert.pem'));
  admin = { cert: fs.readFileSync(path.join(ts.pki, 'client-admin-cert.pem')), key: fs.readFileSync(path.join(ts.pki, 'client-admin-key.pem')) };
});

test.after.always(() => ts?.stop());

/**
 * The server's verdict on the client: null once the server speaks HTTP/2 to
 * it, else the error that ended the connection. With TLS 1.3 the server
 * checks the client's certificate only after the client has finished its
 * side of the handshake, so the client's own "connected" says nothing; a
 * server that accepts the client sends its HTTP/2 SETTINGS frame at once,
 * one that refuses it sends an alert and closes.
 */
function handshake(options: tls.ConnectionOptions): Promise<Error | null> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: ts.server.port, servername: 'localhost', ca, ALPNProtocols: ['h2'], ...options });
    socket.once('data', (bytes: Buffer) => {
      socket.destroy();
      // A frame header: 24-bit length, then its type; 4 is SETTINGS.
      resolve(bytes.length >= 9 && bytes[3] === 4 ? null : new Error(`the server's first bytes are not an HTTP/2 SETTINGS frame: ${bytes.subarray(0, 9).toString('hex')}`));
    });
    socket.once('error', (err) => {
      socket.destroy();
      resolve(err);
    });
    socket.once('close', () => resolve(new Error('the server closed the connection without a word')));
  });
}

test('tls: a client offering only TLS 1.2 is refused', async (t) => {
  const err = await handshake({ ...admin, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
  t.truthy(err);
  t.regex(String(err?.message), /protocol version|wrong version|handshake/i);
});

test('tls: TLS 1.3 with the admin certificate completes the handshake: the server speaks HTTP/2 to it', async (t) => {
  t.is(await handshake({ ...admin, minVersion: 'TLSv1.3' }), null);
});

test('tls: TLS 1.3 without a client certificate is refused by the server once the client has finished its side', async (t) => {
  const err = await handshake({ minVersion: 'TLSv1.3' });
  t.truthy(err);
  t.regex(String(err?.message), /certificate required|closed the connection|ECONNRESET/i);
});

function clientWith(pair: PemPair | null): JobServiceClient {
  const creds = pair
    ? credentials.createSsl(ca, Buffer.from(pair.keyPem), Buffer.from(pair.certPem))
    : credentials.createSsl(ca);
  return new JobServiceClient(`localhost:${ts.server.port}`, creds);
}

async function callWith(pair: PemPair | null): Promise<ServiceError> {
  const client = clientWith(pair);
  try {
    await unary(client, 'getJobs', {});
  } catch (err) {
    return err as ServiceError;
  } finally {
    client.close();
  }
  throw new Error('the call succeeded');
}

test('tls: the same client setup with the admin certificate is answered', async (t) => {
  const client = clientWith({ certPem: admin.cert.toString(), keyPem: admin.key.toString() });
  t.teardown(() => client.close());
  t.true(Array.isArray((await unary(client, 'getJobs', {})).jobs));
});

test('tls: a client without a certificate gets no answer from any RPC', async (t) => {
  const err = await callWith(null);
  t.is(err.code, Status.UNAVAILABLE);
});

test('tls: a client certificate from another CA gets no answer from any RPC', async (t) => {
  const otherCa = await createCa({ cn: 'other-ca' });
  const pair = await issueCert(otherCa, { cn: 'mallory', ou: 'admin', kind: 'client' });
  const err = await callWith(pair);
  t.is(err.code, Status.UNAVAILABLE);
});
