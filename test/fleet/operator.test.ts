// Operator features through any node of a fleet: input written through one
// node to a job on another, names unique across the fleet and resolved on
// every node, labels, deadlines, and a wait answered by the job's node.
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { status as Status } from '@grpc/grpc-js';
import test from 'ava';
import { connect, JobStatus, type JobworkerClient } from 'jobworker/client';
import { outputOf, refusal } from '../helpers/client-lib.js';
import { startFleet, type FleetNode } from '../helpers/fleet.js';

function clientOf(node: FleetNode): JobworkerClient {
  return connect({
    server: `127.0.0.1:${node.port}`,
    ca: path.join(node.dir, 'ca-cert.pem'),
    cert: path.join(node.dir, 'client-admin-cert.pem'),
    key: path.join(node.dir, 'client-admin-key.pem'),
  });
}

test('through any node: input relayed to the job\'s node byte-exact, names unique fleet-wide and resolved everywhere, labels, deadlines, wait', async (t) => {
  const { nodes } = await startFleet(t);
  const [c1, c2, c3] = nodes.map(clientOf) as [JobworkerClient, JobworkerClient, JobworkerClient];
  t.teardown(() => [c1, c2, c3].forEach((client) => client.close()));

  // Created through n1, run on n2, fed through n3, followed through n1.
  const job = await c1.create({ command: 'sha256sum', node: 'n2', name: 'fleet-web', labels: { env: 'load' }, stdin: true });
  t.is(job.node, 'n2');
  t.is(job.name, 'fleet-web');
  const clash = await refusal(c3.create({ command: 'true', node: 'n3', name: 'fleet-web' }));
  t.is(clash.code, 'NAME_TAKEN');
  t.is(clash.grpcStatus, Status.ALREADY_EXISTS);
  t.is(clash.message, `job name "fleet-web" is taken by job ${job.id}, which has not ended`);
  for (const client of [c1, c2, c3]) t.is((await client.get('fleet-web')).id, job.id);
  t.deepEqual((await c3.list({ labels: { env: 'load' } })).map((listed) => listed.id), [job.id]);

  const data = randomBytes(8 * 1024 * 1024 + 5);
  const waiting = c1.wait('fleet-web');
  t.is(await c3.writeInput('fleet-web', data), data.length);
  const ended = await waiting;
  t.is(ended.status, JobStatus.JOB_STATUS_COMPLETED);
  t.is(ended.node, 'n2');
  t.is(await outputOf(c1, job.id), `${createHash('sha256').update(data).digest('hex')}  -\n`);
  t.is((await refusal(c2.writeInput(job.id, Buffer.from('x')))).code, 'INPUT_REFUSED');

  // Ended: the name may be taken again, on another node, and now means the new job.
  const next = await c2.create({ command: 'sleep', args: ['600'], node: 'n3', name: 'fleet-web', timeoutMs: 1_000 });
  t.is((await c1.get('fleet-web')).id, next.id);
  const timedOut = await c1.wait('fleet-web');
  t.is(timedOut.status, JobStatus.JOB_STATUS_TIMED_OUT);
  t.is(timedOut.message, 'deadline of 1 s exceeded; killed by SIGTERM');
  t.is((await c2.get(next.id)).status, JobStatus.JOB_STATUS_TIMED_OUT);
});
