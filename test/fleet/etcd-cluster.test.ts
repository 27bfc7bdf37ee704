// The etcd test cluster itself (test/helpers/etcd-cluster.ts): that it forms,
// that its roles and its peer port keep certificates of the shared CA in their
// place, and that it survives the failures fleet tests will cause.
// Serial: elections at 50 ms heartbeats should not compete for the CPU with
// another test's cluster.
import { existsSync } from 'node:fs';
import https from 'node:https';
import { setTimeout as delay } from 'node:timers/promises';
import test from 'ava';
import { EtcdPermissionDeniedError } from 'etcd3';
import { issueEtcdMemberCert, issueNodeCert, type PemPair } from '../../certs/pki.js';
import { connectEtcd, issueClient, startEtcdCluster, type EtcdCluster } from '../helpers/etcd-cluster.js';
import { alive } from '../helpers/host.js';

const PREFIX = '/jobworker/';

test.serial('three members start; a put through member 1 is read through member 3', async (t) => {
  const cluster = await startEtcdCluster(t);
  t.is(cluster.members.length, 3);
  t.is(new Set(cluster.endpoints).size, 3);
  for (const member of cluster.members) t.true(alive(member.pid), member.name);

  const root = await issueClient(cluster, 'root');
  const first = connectEtcd(t, cluster, root, { endpoints: [cluster.members[0]!.clientUrl] });
  const third = connectEtcd(t, cluster, root, { endpoints: [cluster.members[2]!.clientUrl] });
  await first.put('/harness/key').value('through m1');
  t.is(await third.get('/harness/key').string(), 'through m1');
  t.is(await cluster.root.get('/harness/key').string(), 'through m1');
});

test.serial('grantNode: a node writes its own key and shared keys, not another node\'s, also in a transaction', async (t) => {
  const cluster = await startEtcdCluster(t);
  await cluster.grantNode('node-a', 'node-a', PREFIX);
  const nodeA = connectEtcd(t, cluster, await issueNodeCert(cluster.ca, { name: 'node-a' }));

  await nodeA.put(`${PREFIX}nodes/node-a/alive`).value('alive');
  await nodeA.put(`${PREFIX}jobs/x`).value('queued');
  await nodeA.put(`${PREFIX}zzz`).value('after nodes/ too');
  await cluster.root.put(`${PREFIX}nodes/node-b/alive`).value('b');
  t.deepEqual(await nodeA.getAll().prefix(`${PREFIX}nodes/`).strings(), { [`${PREFIX}nodes/node-a/alive`]: 'alive', [`${PREFIX}nodes/node-b/alive`]: 'b' });

  await t.throwsAsync(nodeA.put(`${PREFIX}nodes/node-b/alive`).value('taken'), { instanceOf: EtcdPermissionDeniedError });
  await t.throwsAsync(nodeA.delete().key(`${PREFIX}nodes/node-b/alive`), { instanceOf: EtcdPermissionDeniedError });
  // A key that only starts like its own is another node's.
  await t.throwsAsync(nodeA.put(`${PREFIX}nodes/node-a2/alive`).value('x'), { instanceOf: EtcdPermissionDeniedError });
  await t.throwsAsync(nodeA.put('/elsewhere').value('x'), { instanceOf: EtcdPermissionDeniedError });
  // etcd checks every operation of a transaction, whichever branch runs.
  await t.throwsAsync(
    nodeA.if(`${PREFIX}jobs/x`, 'Value', '==', 'queued')
      .then(nodeA.put(`${PREFIX}jobs/x`).value('claimed'), nodeA.put(`${PREFIX}nodes/node-b/alive`).value('taken'))
      .commit(),
    { instanceOf: EtcdPermissionDeniedError },
  );
  t.is(await cluster.root.get(`${PREFIX}nodes/node-b/alive`).string(), 'b');
  t.is(await cluster.root.get(`${PREFIX}jobs/x`).string(), 'queued');
  t.is(await cluster.root.get(`${PREFIX}nodes/node-a2/alive`).string(), null);

  const claimed = await nodeA.if(`${PREFIX}jobs/x`, 'Value', '==', 'queued')
    .then(nodeA.put(`${PREFIX}jobs/x`).value('claimed'), nodeA.put(`${PREFIX}nodes/node-a/alive`).value('busy'))
    .commit();
  t.true(claimed.succeeded);
  t.is(await cluster.root.get(`${PREFIX}nodes/node-a/alive`).string(), 'busy');

  // A certificate of the same CA whose CN is no etcd user gets nothing.
  const stranger = connectEtcd(t, cluster, await issueNodeCert(cluster.ca, { name: 'node-c' }));
  const refused = await t.throwsAsync(stranger.get(`${PREFIX}jobs/x`).string());
  t.regex(refused?.message ?? '', /user name not found|permission denied/);
});

/** The peer port's answer to GET /members with this client certificate: the status, or the error. */
function getMembers(cluster: EtcdCluster, client: PemPair): Promise<{ status: number; body: string } | { error: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    const request = https.get(`${cluster.members[0]!.peerUrl}/members`, {
      ca: cluster.ca.certPem,
      cert: client.certPem,
      key: client.keyPem,
      agent: false,
      timeout: 3000,
    }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => { body += chunk; });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      response.on('error', (error) => resolve({ error }));
    });
    request.on('timeout', () => request.destroy(new Error('no answer within 3 s')));
    request.on('error', (error) => resolve({ error }));
  });
}

test.serial('the peer port accepts the members\' peer certificate only, not other certificates of the same CA', async (t) => {
  const cluster = await startEtcdCluster(t);
  const peer = await getMembers(cluster, cluster.peerCert);
  if ('error' in peer) return t.fail(`the peer certificate was refused: ${peer.error.message}`);
  t.is(peer.status, 200);
  t.deepEqual((JSON.parse(peer.body) as { name: string }[]).map((member) => member.name).sort(), ['m1', 'm2', 'm3']);

  // What the member logs when its TLS check refuses a client certificate.
  const refusals = async () => (await cluster.members[0]!.log()).split('client certificate authentication failed').length - 1;
  const refusedBefore = await refusals();
  const strangers: [string, PemPair][] = [
    ['an admin client', await issueClient(cluster, 'admin', { ou: 'admin' })],
    ['a node', await issueNodeCert(cluster.ca, { name: 'node-a' })],
    ['an etcd member certificate with its own CN', await issueEtcdMemberCert(cluster.ca, { name: 'm9' })],
  ];
  for (const [who, pair] of strangers) {
    const answer = await getMembers(cluster, pair);
    if (!('error' in answer)) {
      t.fail(`${who} got HTTP ${answer.status} from the peer port`);
      continue;
    }
    // TLS 1.3: the client finishes first; the server's alert ends the request.
    t.regex(`${answer.error.code} ${answer.error.message}`, /ALERT_BAD_CERTIFICATE|ECONNRESET|socket hang up/, who);
  }
  // The member says why: its client certificate check (the chain is fine,
  // so the CN). etcd logs after sending its alert: give the lines a moment.
  const deadline = Date.now() + 2000;
  while (await refusals() - refusedBefore < strangers.length && Date.now() < deadline) await delay(50);
  t.is(await refusals() - refusedBefore, strangers.length);
});

test.serial('kill -9 of the leader: another member leads and a put through a survivor succeeds within 5 s', async (t) => {
  const cluster = await startEtcdCluster(t);
  const old = await cluster.leader();
  const survivor = cluster.members.find((member) => member !== old)!;
  const client = connectEtcd(t, cluster, await issueClient(cluster, 'root'), { endpoints: [survivor.clientUrl], callTimeoutMs: 1000 });

  await old.kill();
  t.false(old.running);
  const killedAt = Date.now();
  let attempts = 0;
  for (;;) {
    attempts++;
    try {
      await client.put('/harness/after-kill').value('ok');
      break;
    } catch (error) {
      if (Date.now() - killedAt > 5000) return t.fail(`no put succeeded within 5 s (${attempts} attempts): ${(error as Error).message}`);
    }
  }
  t.log(`first put after the kill: ${Date.now() - killedAt} ms, ${attempts} attempt(s)`);
  t.true(Date.now() - killedAt < 5000);
  const next = await cluster.leader();
  t.not(next.name, old.name);
  t.is(await cluster.root.get('/harness/after-kill').string(), 'ok');
});

test.serial('restart: a killed member comes back on its data dir and ports and catches up', async (t) => {
  const cluster = await startEtcdCluster(t);
  const member = cluster.members[1]!;
  const pid = member.pid;
  await member.kill();
  await cluster.root.put('/harness/while-down').value('written');
  await member.restart();
  t.not(member.pid, pid);
  const client = connectEtcd(t, cluster, await issueClient(cluster, 'root'), { endpoints: [member.clientUrl] });
  t.is(await client.get('/harness/while-down').string(), 'written');
});

test.serial('pause: a stopped leader is replaced; after resume it follows', async (t) => {
  const cluster = await startEtcdCluster(t);
  const old = await cluster.leader();
  old.pause();
  t.true(old.paused);
  const next = await cluster.leader();
  t.not(next.name, old.name);
  old.resume();
  t.false(old.paused);
  const client = connectEtcd(t, cluster, await issueClient(cluster, 'root'), { endpoints: [old.clientUrl] });
  await cluster.root.put('/harness/after-resume').value('seen');
  t.is(await client.get('/harness/after-resume').string(), 'seen');
});

test.serial('stop: every member process is gone and the dir removed (one member, auth off)', async (t) => {
  const cluster = await startEtcdCluster(t, { members: 1, auth: false });
  t.false(cluster.auth);
  // Without auth any certificate of the CA may write.
  const admin = connectEtcd(t, cluster, await issueClient(cluster, 'admin', { ou: 'admin' }));
  await admin.put('/harness/no-auth').value('ok');
  const pids = cluster.members.map((member) => member.pid);
  await cluster.stop();
  for (const pid of pids) t.false(alive(pid));
  t.false(existsSync(cluster.dir));
  await cluster.stop();
});
