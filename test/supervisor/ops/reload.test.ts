// jobworkerd re-reads its certificate, key, CA bundle, deny list and quota
// file while it runs (file changes and SIGHUP), and writes its audit trail to
// a file of its own.
import test, { type ExecutionContext } from 'ava';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { execa } from 'execa';
import { issueCert } from '../../../certs/pki.js';
import { adminClient, daemonSetup, launchDaemon, startDaemon, type Daemon } from '../../helpers/daemon.js';
import { waitUntil } from '../../helpers/host.js';
import { repoRoot } from '../../helpers/paths.js';
import { unary } from '../../helpers/server.js';

/** Polls an async condition: the server notices file changes within a second or two. */
async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function codeOf(promise: Promise<unknown>): Promise<number> {
  return promise.then(
    () => Status.OK,
    (err: ServiceError) => err.code,
  );
}

function presentedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => {
      resolve(socket.getPeerX509Certificate()!.serialNumber);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

async function setup(t: ExecutionContext, extraArgs: string[] = []): Promise<{ pki: string; daemon: Daemon; audit: string; deny: string }> {
  const { pki, parent } = await daemonSetup(t);
  const audit = path.join(pki, 'audit.log');
  const deny = path.join(pki, 'deny.txt');
  fs.writeFileSync(deny, '# nobody yet\n');
  const daemon = await startDaemon(t, pki, parent, { args: ['--audit-log', audit, '--deny-list', deny, ...extraArgs] });
  return { pki, daemon, audit, deny };
}

test.serial('audit: one line per call in its own file, with who, what, how it ended and how long it took, and no request body', async (t) => {
  const { pki, daemon, audit } = await setup(t);
  const admin = adminClient(t, pki, daemon.port);
  const job = (await unary(admin, 'createJob', { command: 'echo', args: ['s3cret-token'], limits: undefined })).job!;
  await codeOf(unary(admin, 'getJob', { id: 'not a uuid' }));
  await waitUntil(() => fs.readFileSync(audit, 'utf8').split('\n').filter(Boolean).length === 2, 'two audit lines');
  const [create, bad] = fs.readFileSync(audit, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
  t.like(create, { rpc: 'CreateJob', cn: 'admin', role: 'admin', jobId: job.id, outcome: 'OK', code: 0 });
  t.like(bad, { rpc: 'GetJob', cn: 'admin', outcome: 'expected a job id (a UUID such as 123e4567-e89b-12d3-a456-426614174000) or a job name, got "not a uuid"', code: Status.INVALID_ARGUMENT });
  for (const line of [create, bad]) {
    t.true(typeof line.time === 'number' && typeof line.ms === 'number');
    t.regex(line.peer, /^(ipv4:)?127\.0\.0\.1:\d+$/);
  }
  t.false(fs.readFileSync(audit, 'utf8').includes('s3cret-token'), 'the command line is not in the audit trail');
  t.false(daemon.log.some((line) => line.msg === 'rpc'), 'nor are calls in the main log');
  t.is((fs.statSync(audit).mode & 0o777).toString(8), '600');
});

test.serial('audit: SIGHUP reopens the file, so logrotate can move it away', async (t) => {
  const { pki, daemon, audit } = await setup(t);
  const admin = adminClient(t, pki, daemon.port);
  await unary(admin, 'getJobs', {});
  fs.renameSync(audit, `${audit}.1`);
  daemon.process.kill('SIGHUP');
  await waitUntil(() => daemon.log.some((line) => line.why === 'SIGHUP'), 'the reload');
  await unary(admin, 'getJobs', {});
  t.is(fs.readFileSync(`${audit}.1`, 'utf8').trim().split('\n').length, 1);
  t.is(fs.readFileSync(audit, 'utf8').trim().split('\n').length, 1);
});

test.serial('deny list: a CN added to the file is refused within seconds, a broken file keeps the last good list, --deny-cn holds throughout', async (t) => {
  const { pki, daemon, deny } = await setup(t, ['--deny-cn', 'viewer']);
  const admin = adminClient(t, pki, daemon.port);
  const viewer = adminClient(t, pki, daemon.port, 'viewer');
  t.is(await codeOf(unary(viewer, 'getJobs', {})), Status.UNAUTHENTICATED);
  t.is(await codeOf(unary(admin, 'getJobs', {})), Status.OK);
  fs.writeFileSync(deny, 'CN=admin\n');
  await eventually(async () => (await codeOf(unary(admin, 'getJobs', {}))) === Status.UNAUTHENTICATED, 'admin to be refused');
  fs.writeFileSync(deny, 'CN=admin\nadmin\n');
  await waitUntil(() => daemon.log.some((line) => line.msg.startsWith('deny list reload failed')), 'the failed reload to be logged');
  t.regex(daemon.log.find((line) => line.msg.startsWith('deny list reload failed'))!.err!, /deny\.txt:2: expected/);
  t.is(await codeOf(unary(admin, 'getJobs', {})), Status.UNAUTHENTICATED, 'the last good list stays');
  fs.writeFileSync(deny, '');
  await eventually(async () => (await codeOf(unary(admin, 'getJobs', {}))) === Status.OK, 'admin to be let in again');
  t.is(await codeOf(unary(viewer, 'getJobs', {})), Status.UNAUTHENTICATED, 'the flag is not the file: it stays');
});

test.serial('rotation: a new certificate and key written over the old ones are served to new connections', async (t) => {
  const { pki, daemon } = await setup(t);
  const before = await presentedSerial(daemon.port);
  const ca = { certPem: fs.readFileSync(path.join(pki, 'ca-cert.pem'), 'utf8'), keyPem: fs.readFileSync(path.join(pki, 'ca-key.pem'), 'utf8') };
  const next = await issueCert(ca, { cn: 'localhost', kind: 'server' });
  // The way a renewal job writes them: each file replaced by a rename.
  for (const [file, pem] of [['server-key.pem', next.keyPem], ['server-cert.pem', next.certPem]] as const) {
    fs.writeFileSync(path.join(pki, `${file}.new`), pem, { mode: 0o600 });
    fs.renameSync(path.join(pki, `${file}.new`), path.join(pki, file));
  }
  const expected = new X509Certificate(next.certPem).serialNumber;
  await eventually(async () => (await presentedSerial(daemon.port)) === expected, 'the new certificate');
  t.not(expected, before);
  t.is(await codeOf(unary(adminClient(t, pki, daemon.port), 'getJobs', {})), Status.OK);
});

test.serial('jobworkerd: a deny-list file with a bad line is one clear line and exit 2', async (t) => {
  const { pki } = await daemonSetup(t);
  const deny = path.join(pki, 'deny.txt');
  fs.writeFileSync(deny, 'CN=ok\nserial=nothex\n');
  const tlsFlags = ['--ca', `${pki}/ca-cert.pem`, '--cert', `${pki}/server-cert.pem`, '--key', `${pki}/server-key.pem`];
  const result = await execa('node', [path.join(repoRoot, 'bin/jobworkerd.js'), ...tlsFlags, '--deny-list', deny], { reject: false });
  t.is(result.exitCode, 2);
  t.is(result.stderr, `jobworkerd: ${deny}:2: expected "CN=<name>" or "serial=<hex>", got "serial=nothex"`);
});

test.serial('quotas: a bad --quota-file at start is one line naming file:line and exit 2; on reload, a bad file keeps the rules in force', async (t) => {
  const { pki, parent } = await daemonSetup(t);
  const quotas = path.join(pki, 'quotas.conf');
  fs.writeFileSync(quotas, '# who  limits\ncn=admin runing=1\n');
  const bad = await launchDaemon(t, pki, parent, { args: ['--quota-file', quotas] }).process;
  t.is(bad.exitCode, 2);
  t.is(bad.stderr, `jobworkerd: ${quotas}:2: unknown limit "runing=1": expected key=value, key one of running, cpu, memory, output, rate, calls, rps`);
  const missing = await launchDaemon(t, pki, parent, { args: ['--quota-file', `${quotas}.gone`] }).process;
  t.is(missing.exitCode, 2);
  t.is(missing.stderr, `jobworkerd: --quota-file ${quotas}.gone: no such file`);
  fs.writeFileSync(quotas, 'cn=admin running=1\n');
  const daemon = await startDaemon(t, pki, parent, { args: ['--quota-file', quotas] });
  const admin = adminClient(t, pki, daemon.port);
  const sleeper = { command: 'sleep', args: ['600'], limits: undefined };
  await unary(admin, 'createJob', sleeper);
  t.is(await codeOf(unary(admin, 'createJob', sleeper)), Status.RESOURCE_EXHAUSTED);
  fs.writeFileSync(quotas, 'cn=admin running=2 cpu=lots\n');
  daemon.process.kill('SIGHUP');
  await waitUntil(() => daemon.log.some((line) => line.msg === 'quota file reload failed; the previous quotas stay in force'), 'the failed reload to be logged');
  t.is(await codeOf(unary(admin, 'createJob', sleeper)), Status.RESOURCE_EXHAUSTED, 'the rules in force stay');
  fs.writeFileSync(quotas, 'cn=admin running=2\n');
  daemon.process.kill('SIGHUP');
  await waitUntil(() => daemon.log.some((line) => line.msg === 'reloaded the quotas' && line.why === 'SIGHUP' && daemon.log.indexOf(line) > daemon.log.findIndex((l) => l.msg.startsWith('quota file reload failed'))), 'the reload');
  t.is(await codeOf(unary(admin, 'createJob', sleeper)), Status.OK);
  t.is(await codeOf(unary(admin, 'createJob', sleeper)), Status.RESOURCE_EXHAUSTED);
});
