// jobworkerd's fleet flags: each bad one is one line naming it and exit 2,
// before anything starts; so is an etcd that cannot be reached.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { repoRoot } from '../helpers/paths.js';

let pki: string;
test.before(async () => {
  pki = fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-fleet-flags-'));
  await execa('node', [path.join(repoRoot, 'dist/certs/make-dev-pki.js'), pki, '--node', 'n1']);
});
test.after.always(() => fs.rmSync(pki, { recursive: true, force: true }));

function jobworkerd(args: string[], cert = 'node-n1') {
  return execa('node', [path.join(repoRoot, 'bin/jobworkerd.js'), '--ca', `${pki}/ca-cert.pem`, '--cert', `${pki}/${cert}-cert.pem`, '--key', `${pki}/${cert}-key.pem`, '--data-dir', `${pki}/data`, '--cgroup-parent', `jobworker-test-flags-${process.pid}`, ...args], {
    reject: false,
    timeout: 60_000,
  });
}

const ETCD = ['--fleet-etcd', 'https://127.0.0.1:1', '--node-name', 'n1', '--listen', '127.0.0.1:0'];

for (const [title, args, cert, message] of [
  ['an etcd URL that is not https', ['--fleet-etcd', 'http://127.0.0.1:2379', '--node-name', 'n1', '--listen', '127.0.0.1:0'], 'node-n1', '--fleet-etcd: expected https://host:port[,https://host:port…], got "http://127.0.0.1:2379"'],
  ['a certificate that is not the node\'s', ETCD, 'server', '--cert: a fleet node\'s certificate must have OU node and CN n1 (the node\'s name); this one has OU "" and CN "jobworker-server"'],
  ['another node\'s name', [...ETCD, '--node-name', 'n2'], 'node-n1', '--cert: a fleet node\'s certificate must have OU node and CN n2 (the node\'s name); this one has OU "node" and CN "n1"'],
  ['a node name that is not one', [...ETCD, '--node-name', 'N 1'], 'node-n1', '--node-name: "N 1" is not a node name (lower-case letters, digits, . and -, at most 63)'],
  ['no --advertise when listening everywhere', [...ETCD, '--listen', '0.0.0.0:0'], 'node-n1', '--advertise: required when --listen (0.0.0.0:0) is on every address: say where other nodes reach this one'],
  ['a heartbeat longer than half the loss time', [...ETCD, '--heartbeat', '2s', '--node-lost-after', '3s'], 'node-n1', '--heartbeat (2s) must be at most half of --node-lost-after (3s)'],
  ['a loss time in part seconds', [...ETCD, '--node-lost-after', '1500ms'], 'node-n1', '--node-lost-after: etcd leases count whole seconds, got 1500ms'],
  ['a bad label', [...ETCD, '--node-label', 'rack'], 'node-n1', '--node-label: expected key=value, got "rack"'],
  ['a bad prefix', [...ETCD, '--fleet-prefix', 'jobworker'], 'node-n1', '--fleet-prefix: expected a path such as /jobworker/ (starting and ending with /), got "jobworker"'],
] as const) {
  test(`jobworkerd: ${title} is one line and exit 2`, async (t) => {
    const result = await jobworkerd([...args], cert);
    t.is(result.exitCode, 2);
    t.is(result.stderr, `jobworkerd: ${message}`);
  });
}

test('jobworkerd: an etcd it cannot reach stops the start with one line and exit 2, leaving nothing behind', async (t) => {
  const result = await jobworkerd(ETCD);
  t.is(result.exitCode, 2);
  t.regex(result.stderr, /^jobworkerd: cannot start: cannot use etcd at https:\/\/127\.0\.0\.1:1: [^\n]+$/, "one line, no warning");
  t.false(fs.existsSync(`/sys/fs/cgroup/memory/jobworker-test-flags-${process.pid}`) || fs.existsSync(`/sys/fs/cgroup/jobworker-test-flags-${process.pid}`));
});
