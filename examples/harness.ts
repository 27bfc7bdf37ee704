// A load-test harness in a few lines: start N jobs at once, follow every
// one's output to the end, and tally their exit codes. The README shows it;
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
try {
  let outputBytes = 0;
  const results = await Promise.all(
    Array.from({ length: jobs }, (_, i) =>
      client.run(
        { command: 'sh', args: ['-c', `echo job ${i}; exit $((${i} % 3))`], limits: { maxMemoryMb: 64 } },
        {
          onOutput: (chunk) => {
            outputBytes += chunk.data.length;
          },
          // Whatever has not ended in two minutes is stopped, and its run() rejects.
          signal: AbortSignal.timeout(120_000),
        },
      ),
    ),
  );
  const exitCodes: Record<number, number> = {};
  for (const { exitCode } of results) exitCodes[exitCode] = (exitCodes[exitCode] ?? 0) + 1;
  console.log(JSON.stringify({ jobs, exitCodes, outputBytes }));
} finally {
  client.close();
}
