// 2. One job writing 1 GiB, streamed live to a client in another process
// (jobctl stream --follow), against the limits under it measured in the
// same run: a raw pipe, Node reading a child's pipe, TLS 1.3 between two
// Node processes on loopback with the same certificates, and a bare grpc-js
// server streaming from memory to the same jobctl (grpc-floor.ts).
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { execa } from 'execa';
import { unary } from '../../cli/connect.js';
import { row, type Row } from '../report.js';
import { REPO, type BenchServer } from '../server.js';

const MB = 1e6;

/** Seconds for `fn`, run once. */
async function seconds(fn: () => Promise<unknown>): Promise<number> {
  const began = performance.now();
  await fn();
  return (performance.now() - began) / 1000;
}

// Both TLS ends in processes of their own, as the server and jobctl are.
const TLS_SERVER = `
const tls = require('node:tls'), fs = require('node:fs');
const [pki, mib] = process.argv.slice(1);
const read = (f) => fs.readFileSync(pki + '/' + f);
const chunk = Buffer.alloc(64 * 1024);
const server = tls.createServer({ ca: read('ca-cert.pem'), cert: read('server-cert.pem'), key: read('server-key.pem'), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (socket) => {
  let left = Number(mib) * 1024 * 1024;
  const pump = () => { while (left > 0) { left -= chunk.length; if (!socket.write(chunk)) return socket.once('drain', pump); } socket.end(); };
  pump();
});
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'));
`;
const TLS_CLIENT = `
const tls = require('node:tls'), fs = require('node:fs');
const [pki, port] = process.argv.slice(1);
const read = (f) => fs.readFileSync(pki + '/' + f);
let bytes = 0;
const socket = tls.connect({ host: '127.0.0.1', port: Number(port), servername: 'localhost', ca: read('ca-cert.pem'), cert: read('client-admin-cert.pem'), key: read('client-admin-key.pem'), minVersion: 'TLSv1.3' });
socket.on('data', (d) => { bytes += d.length; });
socket.on('end', () => process.stdout.write(String(bytes)));
`;
const CHILD_PIPE = `
const { spawn } = require('node:child_process');
let bytes = 0;
const child = spawn('head', ['-c', process.argv[1] + 'M', '/dev/zero'], { stdio: ['ignore', 'pipe', 'ignore'] });
child.stdout.on('data', (d) => { bytes += d.length; });
child.stdout.on('end', () => process.stdout.write(String(bytes)));
`;

async function rawTls(pki: string, mib: number): Promise<number> {
  const server = execa('node', ['-e', TLS_SERVER, pki, String(mib)], { reject: false });
  try {
    const port = await new Promise<string>((resolve, reject) => {
      server.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()));
      void server.then((result) => reject(new Error(`the TLS server exited before listening: ${result.stderr}`)));
    });
    return await seconds(() => execa('node', ['-e', TLS_CLIENT, pki, port]));
  } finally {
    server.kill();
  }
}

/** Seconds for jobctl, in a process of its own as in our own figure, to receive mib MiB from the bare grpc-js server. */
async function grpcFloor(server: BenchServer, mib: number): Promise<number> {
  const floor = execa('node', [path.join(REPO, 'dist/bench/grpc-floor.js'), server.pki, String(mib)], { reject: false });
  try {
    const port = await new Promise<string>((resolve, reject) => {
      floor.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()));
      void floor.then((result) => reject(new Error(`grpc-floor.js exited before listening: ${result.stderr}`)));
    });
    return await seconds(async () => {
      const env = { ...server.env(), JOBWORKER_SERVER: `127.0.0.1:${port}` };
      const streamed = await execa('sh', ['-c', `node "$0" stream --follow "$1" | wc -c`, path.join(REPO, 'bin/jobctl.js'), randomUUID()], { env });
      if (Number(streamed.stdout.trim()) !== mib * 2 ** 20) throw new Error(`jobctl received ${streamed.stdout.trim()} bytes from grpc-js alone, of ${mib * 2 ** 20}`);
    });
  } finally {
    floor.kill();
  }
}

export async function outputThroughput(server: BenchServer, quick: boolean): Promise<Row[]> {
  const mib = quick ? 256 : 1024;
  const bytes = mib * 1024 * 1024;
  const pipe = await seconds(() => execa('sh', ['-c', `head -c ${mib}M /dev/zero | cat > /dev/null`]));
  const nodePipe = await seconds(() => execa('node', ['-e', CHILD_PIPE, String(mib)]));
  const tls = await rawTls(server.pki, mib);
  const grpc = await grpcFloor(server, mib);
  const client = server.client();
  const ours = await seconds(async () => {
    const job = (await unary(client, 'createJob', { command: 'head', args: ['-c', `${mib}M`, '/dev/zero'], limits: undefined })).job!;
    const streamed = await execa('sh', ['-c', `node "$0" stream --follow "$1" | wc -c`, path.join(REPO, 'bin/jobctl.js'), job.id], { env: server.env() });
    if (Number(streamed.stdout.trim()) !== bytes) throw new Error(`jobctl received ${streamed.stdout.trim()} bytes of ${bytes}`);
  });
  const rate = (s: number) => bytes / MB / s;
  const single = `one run of ${mib} MiB`;
  return [
    row({ name: `output streamed live to jobctl (${mib} MiB)`, figure: rate(ours), unit: 'MB/s', baseline: rate(tls), baseline_name: 'raw TLS 1.3, Node to Node', goal: { text: 'ratio ≥ 0.5', minRatio: 0.5 }, spread: single }),
    row({ name: 'output streamed vs grpc-js alone', figure: rate(ours), unit: 'MB/s', baseline: rate(grpc), baseline_name: 'a bare grpc-js server streaming zeros from memory to jobctl', spread: `${single}; grpc-js alone is ${(tls / grpc).toFixed(2)}× raw TLS` }),
    row({ name: "output streamed vs Node reading a child's pipe", figure: rate(ours), unit: 'MB/s', baseline: rate(nodePipe), baseline_name: 'Node reading a child pipe', spread: single }),
    row({ name: 'output streamed vs a raw pipe', figure: rate(ours), unit: 'MB/s', baseline: rate(pipe), baseline_name: 'head | cat', spread: single }),
  ];
}
