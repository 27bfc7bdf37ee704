// jobctl against a fleet: the real bin/jobctl.js, several servers in
// JOBWORKER_SERVER (the first one down), nodes, drain, placement flags, the
// NODE column, and a follow whose node dies.
import test from 'ava';
import { execa } from 'execa';
import { jobctlPath } from '../helpers/paths.js';
import { startFleet, type FleetNode } from '../helpers/fleet.js';

function jobctl(node: FleetNode, servers: string, args: string[], role: 'admin' | 'viewer' = 'admin') {
  return execa('node', [jobctlPath, ...args], {
    env: { JOBWORKER_SERVER: servers, JOBWORKER_CA: `${node.dir}/ca-cert.pem`, JOBWORKER_CERT: `${node.dir}/client-${role}-cert.pem`, JOBWORKER_KEY: `${node.dir}/client-${role}-key.pem` },
    reject: false,
    stripFinalNewline: false,
    timeout: 60_000,
  });
}

test('jobctl in a fleet: nodes, drain and undrain, create --node and --constraint, list --node, a dead first server skipped, a follow whose node dies exits 69 after its bytes', async (t) => {
  const { nodes } = await startFleet(t, { args: (i) => ['--node-label', `zone=z${i + 1}`] });
  const [n1, n2, n3] = nodes as [FleetNode, FleetNode, FleetNode];
  // Port 1 refuses connections: jobctl goes on to the next server.
  const servers = `127.0.0.1:1,${nodes.map((node) => `127.0.0.1:${node.port}`).join(',')}`;
  const run = (args: string[], role?: 'admin' | 'viewer') => jobctl(n1, servers, args, role);

  const table = await run(['nodes']);
  t.is(table.exitCode, 0, table.stderr);
  const [header, ...lines] = table.stdout.trimEnd().split('\n');
  t.deepEqual(header!.split(/\s{2,}/), ['NAME', 'STATE', 'ADDRESS', 'CPU', 'MEMORY', 'RESERVED', 'JOBS', 'HEARTBEAT', 'VERSION', 'LABELS']);
  t.deepEqual(lines.map((line) => line.split(/\s{2,}/).slice(0, 3)), nodes.map((node) => [node.name, 'ready', `127.0.0.1:${node.port}`]));
  const json = JSON.parse((await run(['nodes', '--json'], 'viewer')).stdout) as Record<string, unknown>[];
  t.deepEqual(Object.keys(json[0]!), ['name', 'address', 'labels', 'state', 'cores', 'cpuPercent', 'memoryMb', 'reservedCpuPercent', 'reservedMemoryMb', 'runningJobs', 'lastHeartbeat', 'version']);
  t.deepEqual(json.map((node) => [node.name, node.state, node.labels]), [['n1', 'ready', { zone: 'z1' }], ['n2', 'ready', { zone: 'z2' }], ['n3', 'ready', { zone: 'z3' }]]);

  const created = await run(['create', '--node', 'n2', '--max-cpu', '10', '--', 'sh', '-c', 'echo hi; exec sleep 600']);
  t.is(created.exitCode, 0, created.stderr);
  const id = created.stdout.trim();
  const got = JSON.parse((await run(['get', '--json', id])).stdout) as { node: string; status: string };
  t.deepEqual([got.node, got.status], ['n2', 'RUNNING']);
  const listed = await run(['list', '--node', 'n2']);
  t.deepEqual(listed.stdout.split('\n')[0]!.split(/\s{2,}/), ['ID', 'STATUS', 'NODE', 'EXIT', 'STARTED', 'COMMAND']);
  t.regex(listed.stdout, new RegExp(`^${id}  RUNNING\\s+n2\\s`, 'm'));
  t.is((await run(['list', '--node', 'n1'])).stdout.trimEnd().split('\n').length, 1, 'only the header');

  // top through n1 shows the job of n2, with its node and figures read there.
  const top = await run(['top', '--once', '--interval', '0.5']);
  t.deepEqual(top.stdout.split('\n')[0]!.split(/\s{2,}/), ['ID', 'STATUS', 'NODE', 'CPU%', 'MEM', 'IO/S', 'ELAPSED', 'COMMAND']);
  const topJson = JSON.parse((await run(['top', '--once', '--interval', '0.5', '--json'])).stdout) as { id: string; node: string; memoryBytes: number | null }[];
  t.deepEqual(topJson.map((row) => [row.id, row.node]), [[id, 'n2']]);
  t.true(topJson[0]!.memoryBytes! > 0, 'usage read on n2');

  const drained = await run(['drain', 'n3']);
  t.is(drained.exitCode, 0, drained.stderr);
  t.regex(drained.stdout, /^n3\s+draining\s/m);
  const refused = await run(['create', '--constraint', 'zone=z3', 'true']);
  t.is(refused.exitCode, 1);
  t.is(refused.stderr, 'jobctl: no node can take the job: n1: label zone=z1, not z3; n2: label zone=z2, not z3; n3: draining\n');
  t.is((await run(['undrain', 'n3'], 'viewer')).stderr, 'jobctl: permission denied: role "viewer" may not UndrainNode\n');
  t.regex((await run(['undrain', 'n3'])).stdout, /^n3\s+ready\s/m);
  const placed = await run(['create', '--constraint', 'zone=z3', '--max-cpu', '10', '--json', 'true']);
  t.is((JSON.parse(placed.stdout) as { node: string }).node, 'n3');
  t.is((await run(['create', '--constraint', 'zone', 'true'])).exitCode, 2);

  // A follower through n3 (only n3 named): n2 dies, the follow ends with 69 after "hi".
  const follow = jobctl(n1, `127.0.0.1:${n3.port}`, ['stream', '--follow', id]);
  let seen = '';
  follow.stdout!.on('data', (data: Buffer) => (seen += data.toString()));
  while (!seen.includes('hi')) await new Promise((resolve) => setTimeout(resolve, 20));
  n2.daemon.process.kill('SIGKILL');
  const ended = await follow;
  t.is(ended.exitCode, 69);
  t.is(ended.stdout, 'hi\n');
  t.regex(ended.stderr, /^jobctl: server 127\.0\.0\.1:\d+ is unavailable: node n2 \(127\.0\.0\.1:\d+\) is unavailable: /);
});
