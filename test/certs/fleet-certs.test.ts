import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { PkiError, createCa, issueEtcdMemberCert, issueNodeCert, nodeCertOptions, writeDevPki } from '../../certs/pki.js';
import { repoRoot } from '../helpers/paths.js';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const LOCAL_SANS = 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1';
const makeDevPki = path.join(repoRoot, 'dist/certs/make-dev-pki.js');

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'jobworker-fleet-certs-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Each file's content and mtime, by name. */
async function snapshot(dir: string): Promise<Record<string, { content: string; mtimeMs: number }>> {
  const entries = await Promise.all((await readdir(dir)).map(async (name) => {
    const file = path.join(dir, name);
    return [name, { content: await readFile(file, 'utf8'), mtimeMs: (await stat(file)).mtimeMs }] as const;
  }));
  return Object.fromEntries(entries);
}

test('issueNodeCert: CN the node name, OU node, server and client auth, local SANs and the name, then extra SANs', async (t) => {
  const ca = await createCa({ cn: 'Fleet CA' });
  const pair = await issueNodeCert(ca, { name: 'n1.fleet.test', sans: ['10.0.0.7'], org: 'tests' });
  const cert = new X509Certificate(pair.certPem);
  t.is(cert.subject, 'O=tests\nOU=node\nCN=n1.fleet.test');
  t.deepEqual(cert.keyUsage, [SERVER_AUTH, CLIENT_AUTH]);
  t.is(cert.subjectAltName, `${LOCAL_SANS}, DNS:n1.fleet.test, IP Address:10.0.0.7`);
  t.false(cert.ca);
  t.true(cert.verify(new X509Certificate(ca.certPem).publicKey));
});

test('issueEtcdMemberCert: CN etcd-<name>, OU etcd, server and client auth, local SANs then extra SANs', async (t) => {
  const ca = await createCa({ cn: 'Fleet CA' });
  const cert = new X509Certificate((await issueEtcdMemberCert(ca, { name: 'e1', sans: ['etcd1.fleet.test'] })).certPem);
  t.is(cert.subject, 'OU=etcd\nCN=etcd-e1');
  t.deepEqual(cert.keyUsage, [SERVER_AUTH, CLIENT_AUTH]);
  t.is(cert.subjectAltName, `${LOCAL_SANS}, DNS:etcd1.fleet.test`);
});

test('node and member names: lowercase DNS-like labels of 1 to 63 characters; a node may not be root or etcd-*', async (t) => {
  const ca = await createCa({ cn: 'Fleet CA' });
  t.notThrows(() => nodeCertOptions({ name: 'a' }));
  t.notThrows(() => nodeCertOptions({ name: `a${'b'.repeat(61)}c` }));
  for (const name of ['', 'N1', '-n1', 'n1-', 'n1.', 'n_1', 'n 1', 'n/1', `a${'b'.repeat(62)}c`]) {
    const node = await t.throwsAsync(issueNodeCert(ca, { name }), { instanceOf: PkiError }, JSON.stringify(name));
    t.is(node?.code, 'PKI_INVALID_OPTION');
    t.is(node?.message, `invalid node name ${JSON.stringify(name)}: use 1 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit`);
    const member = await t.throwsAsync(issueEtcdMemberCert(ca, { name }), { instanceOf: PkiError });
    t.regex(member?.message ?? '', /^invalid etcd member name/);
  }
  // etcd takes the CN as its user: root would be etcd's root, etcd-* a member on the peer port.
  for (const name of ['root', 'etcd-peer']) {
    const error = await t.throwsAsync(issueNodeCert(ca, { name }), { instanceOf: PkiError });
    t.regex(error?.message ?? '', /reserved/);
  }
});

test('make-dev-pki --node --etcd-member: writes the extra pairs next to the dev PKI, issued by its CA', async (t) => {
  const dir = await tempDir(t);
  const { stdout } = await execa('node', [makeDevPki, dir, '--node', 'n1', '--node', 'n2', '--etcd-member', 'e1', '--node', 'n1']);
  const extra = ['node-n1', 'node-n2', 'etcd-e1'].flatMap((prefix) => [`${prefix}-cert.pem`, `${prefix}-key.pem`]);
  const created = stdout.split('\n');
  for (const name of extra) {
    t.true(created.includes(`created ${path.join(dir, name)}`), name);
    t.is((await stat(path.join(dir, name))).mode & 0o777, name.endsWith('-key.pem') ? 0o600 : 0o644, name);
  }
  const ca = new X509Certificate(await readFile(path.join(dir, 'ca-cert.pem'), 'utf8'));
  const n1 = new X509Certificate(await readFile(path.join(dir, 'node-n1-cert.pem'), 'utf8'));
  const e1 = new X509Certificate(await readFile(path.join(dir, 'etcd-e1-cert.pem'), 'utf8'));
  t.is(n1.subject, 'O=jobworker-dev\nOU=node\nCN=n1');
  t.deepEqual(n1.keyUsage, [SERVER_AUTH, CLIENT_AUTH]);
  t.is(n1.subjectAltName, `${LOCAL_SANS}, DNS:n1`);
  t.is(e1.subject, 'O=jobworker-dev\nOU=etcd\nCN=etcd-e1');
  for (const leaf of [n1, e1]) t.true(leaf.verify(ca.publicKey));
});

test('make-dev-pki --node: never overwrites; a later run adds only the new node, with the same CA', async (t) => {
  const dir = await tempDir(t);
  await execa('node', [makeDevPki, dir, '--node', 'n1']);
  const before = await snapshot(dir);

  const again = await execa('node', [makeDevPki, dir, '--node', 'n1']);
  t.is(again.stdout, '');
  t.deepEqual(await snapshot(dir), before);

  const more = await execa('node', [makeDevPki, dir, '--node', 'n1', '--node', 'n2']);
  t.deepEqual(more.stdout.split('\n'), [`created ${path.join(dir, 'node-n2-cert.pem')}`, `created ${path.join(dir, 'node-n2-key.pem')}`]);
  const after = await snapshot(dir);
  t.deepEqual({ ...after, 'node-n2-cert.pem': undefined, 'node-n2-key.pem': undefined }, { ...before, 'node-n2-cert.pem': undefined, 'node-n2-key.pem': undefined });
  const n2 = new X509Certificate(after['node-n2-cert.pem']!.content);
  t.true(n2.verify(new X509Certificate(before['ca-cert.pem']!.content).publicKey));
});

test('make-dev-pki: a node pair with its key gone is refused, not half reissued', async (t) => {
  const dir = await tempDir(t);
  await execa('node', [makeDevPki, dir, '--node', 'n1']);
  await unlink(path.join(dir, 'node-n1-key.pem'));
  const result = await execa('node', [makeDevPki, dir, '--node', 'n1'], { reject: false });
  t.is(result.exitCode, 1);
  t.is(result.stderr, `make-dev-pki: ${path.join(dir, 'node-n1-key.pem')} is missing but its pair exists: remove the other half to have both reissued`);
  t.false(existsSync(path.join(dir, 'node-n1-key.pem')));
});

test('make-dev-pki: a bad name is refused with exit 1 and says why, before anything is written', async (t) => {
  const dir = path.join(await tempDir(t), 'certs');
  for (const [flag, name, message] of [
    ['--node', 'Node_1', `invalid node name "Node_1": use 1 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit`],
    ['--etcd-member', 'e1-', `invalid etcd member name "e1-": use 1 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit`],
    ['--node', 'root', `invalid node name "root": "root" and names starting with "etcd-" are reserved for etcd's root user and its members`],
  ] as const) {
    const result = await execa('node', [makeDevPki, dir, '--node', 'n1', flag, name], { reject: false });
    t.is(result.exitCode, 1, name);
    t.is(result.stderr, `make-dev-pki: ${message}`);
    t.is(result.stdout, '');
  }
  t.false(existsSync(dir));
});

test('make-dev-pki: an unknown option or a second dir is a usage error; --help prints the usage', async (t) => {
  const dir = await tempDir(t);
  for (const args of [['--nodes', 'n1'], [dir, 'other'], ['--node']]) {
    const result = await execa('node', [makeDevPki, ...args], { reject: false });
    t.is(result.exitCode, 1, args.join(' '));
    t.regex(result.stderr, /^make-dev-pki: .+\nusage: make-dev-pki \[dir\] \[--node NAME\]\.\.\. \[--etcd-member NAME\]\.\.\./);
  }
  const help = await execa('node', [makeDevPki, '--help']);
  t.regex(help.stdout, /--etcd-member NAME/);
  t.deepEqual(await readdir(dir), []);
});

test('writeDevPki: extra leaves with one prefix, or a prefix that is a path, are refused', async (t) => {
  const dir = await tempDir(t);
  const leaf = { prefix: 'node-n1', options: nodeCertOptions({ name: 'n1' }) };
  for (const extraLeaves of [[leaf, leaf], [{ ...leaf, prefix: 'ca' }], [{ ...leaf, prefix: '../n1' }]]) {
    const error = await t.throwsAsync(writeDevPki(dir, { extraLeaves }), { instanceOf: PkiError });
    t.is(error?.code, 'PKI_INVALID_OPTION');
  }
  t.deepEqual(await readdir(dir), []);
});
