// 2. One job writing 1 GiB, streamed live to a client in another process
// (jobctl stream --follow), against the limits under it measured in the
// same run: a raw pipe, Node reading a child's pipe, TLS 1.3 between two
// Node processes on loopback with the same certificates, and a bare grpc-js
// server streaming from memory to the same jobctl (grpc-floor.ts). The same
// output read back once the job has ended (its history, from the files). And
// the other way: 1 GiB piped into jobctl attach-input, to a job's stdin.
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { execa } from 'execa';
import { unary } from '../../src/client/channel.js';
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

/** Runs `use` while a server started as `node args…` runs; the server prints its port as its first output. */
async function withServer<T>(args: string[], use: (port: string) => Promise<T>): Promise<T> {
  const server = execa('node', args, { reject: false });
  try {
    const port = await new Promise<string>((resolve, reject) => {
      server.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()));
      void server.then((result) => reject(new Error(`node ${args[0]} exited before listening: ${result.stderr}`)));
    });
    return await use(port);
  } finally {
    server.kill();
  }
}

/** `jobctl stream --follow` in a process of its own, into `wc -c`; fails unless every byte came. */
async function streamWithJobctl(env: Record<string, string>, id: string, bytes: number): Promise<void> {
  const streamed = await execa('sh', ['-c', `node "$0" stream --follow "$1" | wc -c`, path.join(REPO, 'bin/jobctl.js'), id], { env });
  if (Number(streamed.stdout.trim()) !== bytes) throw new Error(`jobctl received ${streamed.stdout.trim()} bytes of ${bytes} from ${env.JOBWORKER_SERVER}`);
}

/** Issue 19: live output and history each at 0.9× of what grpc-js alone carries to the same jobctl. */
const FLOOR_GOAL = { text: 'ratio ≥ 0.9', minRatio: 0.9 };

export async function outputThroughput(server: BenchServer, quick: boolean): Promise<Row[]> {
  const mib = quick ? 256 : 1024;
  const bytes = mib * 1024 * 1024;
  const pipe = await seconds(() => execa('sh', ['-c', `head -c ${mib}M /dev/zero | cat > /dev/null`]));
  const nodePipe = await seconds(() => execa('node', ['-e', CHILD_PIPE, String(mib)]));
  const tls = await withServer(['-e', TLS_SERVER, server.pki, String(mib)], (port) => seconds(() => execa('node', ['-e', TLS_CLIENT, server.pki, port])));
  // The same jobctl against a bare grpc-js server (grpc-floor.ts) streaming from memory: what grpc-js itself allows.
  const grpc = await withServer([path.join(REPO, 'dist/bench/grpc-floor.js'), server.pki, String(mib)], (port) =>
    seconds(() => streamWithJobctl({ ...server.env(), JOBWORKER_SERVER: `127.0.0.1:${port}` }, randomUUID(), bytes)),
  );
  const client = server.client();
  let ended = '';
  const ours = await seconds(async () => {
    const job = (await unary(client, 'createJob', { command: 'head', args: ['-c', `${mib}M`, '/dev/zero'], limits: undefined })).job!;
    await streamWithJobctl(server.env(), job.id, bytes);
    ended = job.id;
  });
  // The same output read back once the job has ended: its history, from the files (the page cache).
  const history = await seconds(() => streamWithJobctl(server.env(), ended, bytes));
  // The other way: jobctl's stdin to the job's (WriteInput), the job counting what it read.
  let counted = '';
  const input = await seconds(async () => {
    const job = (await unary(client, 'createJob', { command: 'wc', args: ['-c'], limits: undefined, stdin: true })).job!;
    await execa('sh', ['-c', `head -c ${mib}M /dev/zero | node "$0" attach-input "$1"`, path.join(REPO, 'bin/jobctl.js'), job.id], { env: server.env() });
    counted = (await execa('node', [path.join(REPO, 'bin/jobctl.js'), 'stream', '--follow', job.id], { env: server.env() })).stdout.trim();
  });
  if (Number(counted) !== bytes) throw new Error(`the job read ${counted} bytes of ${bytes} from its stdin`);
  const rate = (s: number) => bytes / MB / s;
  const single = `one run of ${mib} MiB`;
  return [
    row({ name: `input from jobctl attach-input to a job's stdin (${mib} MiB)`, figure: rate(input), unit: 'MB/s', baseline: rate(tls), baseline_name: 'raw TLS 1.3, Node to Node', spread: single }),
    row({ name: 'input to a job vs a raw pipe', figure: rate(input), unit: 'MB/s', baseline: rate(pipe), baseline_name: 'head | cat', spread: single }),
    row({ name: `output streamed live to jobctl (${mib} MiB)`, figure: rate(ours), unit: 'MB/s', baseline: rate(tls), baseline_name: 'raw TLS 1.3, Node to Node', goal: { text: 'ratio ≥ 0.5', minRatio: 0.5 }, spread: single }),
    row({ name: 'output streamed vs grpc-js alone', figure: rate(ours), unit: 'MB/s', baseline: rate(grpc), baseline_name: 'a bare grpc-js server streaming zeros from memory to jobctl', goal: FLOOR_GOAL, spread: `${single}; grpc-js alone is ${(tls / grpc).toFixed(2)}× raw TLS` }),
    row({ name: `an ended job's output read back by jobctl (${mib} MiB)`, figure: rate(history), unit: 'MB/s', baseline: rate(grpc), baseline_name: 'a bare grpc-js server streaming zeros from memory to jobctl', goal: FLOOR_GOAL, spread: single }),
    row({ name: "output streamed vs Node reading a child's pipe", figure: rate(ours), unit: 'MB/s', baseline: rate(nodePipe), baseline_name: 'Node reading a child pipe', spread: single }),
    row({ name: 'output streamed vs a raw pipe', figure: rate(ours), unit: 'MB/s', baseline: rate(pipe), baseline_name: 'head | cat', spread: single }),
  ];
}
