// A load-test harness: start N jobs at once, follow every one's output to its
// end, and tally their exit codes. The README shows this file as it is, and
// test/client/client.test.ts runs it.
//   JOBWORKER_SERVER=10.0.0.5:50051 node dist/examples/harness.js 100
import { connect } from 'jobworker/client';

const jobs = Number(process.argv[2] ?? 100);
const client = connect({
  server: process.env.JOBWORKER_SERVER ?? '127.0.0.1:50051',
  ca: process.env.JOBWORKER_CA ?? 'certs/ca-cert.pem',
  cert: process.env.JOBWORKER_CERT ?? 'certs/client-admin-cert.pem',
  key: process.env.JOBWORKER_KEY ?? 'certs/client-admin-key.pem',
});
// Whatever has not ended in two minutes is stopped (its run() rejects with RunAbortedError).
const deadline = AbortSignal.timeout(120_000);
let outputBytes = 0;
// allSettled, not all: every run() settles only once its job has ended, so none is left running.
const results = await Promise.allSettled(
  Array.from({ length: jobs }, (_, i) =>
    client.run(
      { command: 'sh', args: ['-c', `echo job ${i}; exit $((${i} % 3))`], limits: { maxMemoryMb: 64 } },
      {
        signal: deadline,
        onOutput: (chunk) => {
          outputBytes += chunk.data.length;
        },
      },
    ),
  ),
);
client.close();
const exitCodes: Record<number, number> = {};
const failures: string[] = [];
for (const result of results) {
  if (result.status === 'fulfilled') exitCodes[result.value.exitCode] = (exitCodes[result.value.exitCode] ?? 0) + 1;
  else failures.push(String(result.reason));
}
console.log(JSON.stringify({ jobs, exitCodes, outputBytes, failures }));
process.exitCode = failures.length > 0 ? 1 : 0;
