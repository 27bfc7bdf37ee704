// Thousands of random and malformed requests at every RPC: the server stays
// up, answers each with a status, and leaves no job, process or cgroup it
// did not report. FUZZ_SEED and FUZZ_RUNS override the fixed defaults.
import test from 'ava';
import { Metadata, status as Status, type Client, type ServiceError } from '@grpc/grpc-js';
import { CreateJobReq, GetJobReq, GetJobsReq, GetJobsStreamReq, JobServiceService, JobStatus, type DependencyCondition, type Network, StopJobReq } from '../../../src/gen/jobworker/v1/jobworker.js';
import { groupsUnder } from '../../helpers/host.js';
import { startTestServer, unary, type TestServer } from '../../helpers/server.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261129);
const RUNS = Number(process.env.FUZZ_RUNS ?? 3000);

let ts: TestServer;
test.before(async () => {
  ts = await startTestServer();
});
test.after.always(() => ts?.stop());

/** mulberry32: small, seeded, good enough to pick test inputs. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rpc = 'CreateJob' | 'GetJob' | 'StopJob' | 'GetJobs' | 'GetJobsStream';
const RPCS: readonly Rpc[] = ['CreateJob', 'GetJob', 'StopJob', 'GetJobs', 'GetJobsStream'];
const PATH: Record<Rpc, string> = {
  CreateJob: JobServiceService.createJob.path,
  GetJob: JobServiceService.getJob.path,
  StopJob: JobServiceService.stopJob.path,
  GetJobs: JobServiceService.getJobs.path,
  GetJobsStream: JobServiceService.getJobsStream.path,
};

function generator(random: () => number) {
  const int = (max: number) => Math.floor(random() * max);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const bytes = (max: number) => Buffer.from(Array.from({ length: int(max) }, () => int(256)));
  const text = () =>
    pick([
      () => '',
      () => 'x'.repeat(int(5000)),
      () => bytes(64).toString('latin1'),
      () => `a\0b`,
      () => '../../etc/passwd',
      () => '123e4567-e89b-12d3-a456-426614174000',
      () => crypto.randomUUID(),
      () => '\u202e\u0000\uffff',
    ])();
  const number = () => pick([0, 1, 3, 4, 99, 100, 101, 4096, 2 ** 31 - 1, 2 ** 32 - 1, int(2 ** 32)]);
  // Commands that cannot do harm if they run: missing files, bad names, and `true`.
  const command = () => pick(['', 'true', '/nonexistent/x', 'no-such-command-here', 'a\0b', 'x'.repeat(5000), text()]);
  const wellFormed = (rpc: Rpc): Buffer => {
    switch (rpc) {
      case 'CreateJob':
        return Buffer.from(
          CreateJobReq.encode({
            command: command(),
            args: Array.from({ length: pick([0, 1, 3, 5000]) }, text),
            limits: random() < 0.2 ? undefined : { maxCpuPercent: number(), maxMemoryMb: number(), maxIoBps: pick([0, 1, 2 ** 40]), maxPids: random() < 0.5 ? undefined : number() },
            env: pick([[], ['A=b'], ['=x', 'A'], [text()], Array.from({ length: 2000 }, () => 'A=b')]),
            workdir: pick(['', '/', 'relative', '/nonexistent', text()]),
            isolation:
              random() < 0.3
                ? undefined
                : {
                    pidNamespace: pick([undefined, true, false]),
                    mountNamespace: pick([undefined, true, false]),
                    network: pick([0, 1, 2, 7]) as Network,
                    user: pick(['', 'nobody', '0', 'nosuch', '4294967295', 'a:b:c', text()]),
                    rootfs: pick(['', '/', '/nonexistent', 'relative', text()]),
                  },
            node: pick(['', 'n1', text()]),
            constraints: pick([{}, { a: 'b' }, { [text()]: text() }]),
            stdin: pick([false, true]),
            timeoutMs: pick([undefined, 0, 1, 60_000, 2 ** 53 - 1]),
            name: pick(['', 'web-1', '123e4567-e89b-12d3-a456-426614174000', text()]),
            // Jobs that are not there (NOT_FOUND), or bad references: nothing may be left waiting.
            after: pick([[], [{ job: text(), condition: pick([0, 1, 2, 9]) as DependencyCondition }], [{ job: '123e4567-e89b-12d3-a456-426614174000', condition: 0 }], Array.from({ length: 40 }, () => ({ job: 'web-1', condition: 1 }))]),
            labels: pick([{}, { env: 'load' }, { [text()]: text() }, Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, 'v']))]),
          }).finish(),
        );
      case 'GetJob':
        return Buffer.from(GetJobReq.encode({ id: text() }).finish());
      case 'StopJob':
        return Buffer.from(StopJobReq.encode({ id: text(), graceMs: random() < 0.5 ? undefined : pick([0, 1, 600_001, 2 ** 32 - 1]) }).finish());
      case 'GetJobsStream':
        return Buffer.from(GetJobsStreamReq.encode(GetJobsStreamReq.fromPartial({ id: text(), follow: random() < 0.5, tailLines: random() < 0.3 ? pick([0, 1, 2 ** 32 - 1]) : undefined })).finish());
      case 'GetJobs':
        return random() < 0.5 ? Buffer.alloc(0) : Buffer.from(GetJobsReq.encode(GetJobsReq.fromPartial({ pageSize: pick([0, 1, 10_001]), pageToken: random() < 0.5 ? '' : text(), status: pick([0, 2, 1, 99]) as JobStatus })).finish());
    }
  };
  const malformed = (rpc: Rpc): Buffer => {
    const base = wellFormed(rpc);
    return pick([
      () => bytes(200),
      () => base.subarray(0, int(base.length + 1)),
      () => {
        const copy = Buffer.from(base);
        for (let i = 0; i < 1 + int(4) && copy.length > 0; i++) copy[int(copy.length)] = int(256);
        return copy;
      },
      () => Buffer.concat([base, bytes(50)]),
    ])();
  };
  return { int, pick, wellFormed, malformed };
}

/** Sends raw bytes as the request; resolves with the call's status code. */
function call(client: Client, rpc: Rpc, body: Buffer): Promise<{ code: number; details: string; response?: Buffer }> {
  const serialize = (b: Buffer) => b;
  const deserialize = (b: Buffer) => b;
  const deadline = Date.now() + 30_000;
  return new Promise((resolve) => {
    if (rpc === 'GetJobsStream') {
      const stream = client.makeServerStreamRequest(PATH[rpc], serialize, deserialize, body, new Metadata(), { deadline });
      stream.on('data', () => undefined);
      stream.on('status', (status: { code: number; details: string }) => resolve({ code: status.code, details: status.details }));
      stream.on('error', () => undefined);
      return;
    }
    client.makeUnaryRequest(PATH[rpc], serialize, deserialize, body, new Metadata(), { deadline }, (err: ServiceError | null, response?: Buffer) =>
      resolve(err ? { code: err.code, details: err.details } : { code: Status.OK, details: '', response }),
    );
  });
}

test.serial(`fuzz: ${RUNS} random and malformed requests (seed ${SEED}) each get a status, and the server stays whole`, async (t) => {
  t.timeout(10 * 60_000);
  const gen = generator(prng(SEED));
  const client = ts.client('admin');
  const jobsBefore = ts.server.store.list().length;
  const seen = new Map<string, number>();
  let created = 0;
  const queue = Array.from({ length: RUNS }, () => {
    const rpc = gen.pick(RPCS);
    const body = gen.int(3) === 0 ? gen.malformed(rpc) : gen.wellFormed(rpc);
    return { rpc, body };
  });
  // 16 in flight: a steady flood, bounded so the jobs it creates stay few at a time.
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < queue.length) {
      const { rpc, body } = queue[next++]!;
      const result = await call(client, rpc, body);
      const key = `${rpc} ${Status[result.code]}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
      if (rpc === 'CreateJob' && result.code === Status.OK) created++;
      // Never a crash or a hang; INTERNAL only for bytes that do not decode.
      if (![Status.OK, Status.INVALID_ARGUMENT, Status.PERMISSION_DENIED, Status.NOT_FOUND, Status.FAILED_PRECONDITION, Status.INTERNAL].includes(result.code)) {
        t.fail(`${rpc} answered ${Status[result.code]}: ${result.details}`);
      }
      if (result.code === Status.INTERNAL && result.details !== 'Error deserializing request') {
        t.fail(`${rpc} answered INTERNAL for a request that decoded: ${result.details}`);
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  t.log([...seen].sort().map(([key, count]) => `${key}: ${count}`).join(', '));

  // Still whole: answering, and holding exactly the jobs it said it created, all of which end and leave no cgroup.
  const jobs = (await unary(client, 'getJobs', {})).jobs;
  t.is(jobs.length - jobsBefore, created);
  await Promise.all(ts.server.store.list().map((job) => job.ended));
  t.deepEqual(groupsUnder(ts.server.cgroupParent), []);
});
