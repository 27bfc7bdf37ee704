// jobctl run: create a job, follow its output, exit with its exit code; a
// remote command that feels like a local one.
import { Command } from 'clipanion';
import type { JobworkerClient, RunResult } from '../src/client/client.js';
import { RunAbortedError } from '../src/client/errors.js';
import { JobStatus } from '../src/gen/jobworker/v1/jobworker.js';
import { TIMED_OUT_EXIT_CODE } from './errors.js';
import { jobJson, toJsonLine } from './format.js';
import { StartCommand } from './create.js';
import { outputWriter } from './stream.js';

export class RunCommand extends StartCommand {
  static override paths = [['run']];
  static override usage = Command.Usage({
    description: 'Run a command as a job: stream its output and exit with its exit code',
    details: `
      Creates the job, copies its stdout and stderr to jobctl's as they are written, and exits like the job did: its exit code (a job that caught a stop's SIGTERM and exited 0 gives 0), or 128 + the signal number if a signal killed it (143 for SIGTERM); 1 if the server cannot tell (its supervision failed, or it restarted while the job ran).

      Ctrl-C (or SIGTERM) stops the job, waits for it to end and exits like it; a second Ctrl-C quits jobctl at once while the server finishes stopping the job.

      With \`-i\`, jobctl's stdin is the job's: copied as fast as the job reads it, then closed (the job reads EOF). A job that stops reading first is no error: the rest is dropped, as a pipe would.

      A job stopped by its \`--timeout\` exits 124, as \`timeout(1)\` does.

      With \`--json\`: the output as \`jobctl stream --json\` prints it, then one last line \`{"job": {...}}\` with the ended job.
    `,
    examples: [
      ['Run a command', "$0 run sh -c 'echo hello; exit 3'"],
      ['With limits', '$0 run --max-cpu 50 --max-memory 128 -- make -j4'],
      ['Checksum a local file on the server', 'cat data.bin | $0 run -i sha256sum'],
      ['Give it a minute at most (exit 124 past that)', '$0 run --timeout 1m -- ./load-test'],
    ],
  });

  protected override async run(client: JobworkerClient): Promise<number> {
    const interrupt = new AbortController();
    let jobId: string | undefined;
    const onSignal = (): void => {
      // Once only: the next Ctrl-C gets Node's default and ends jobctl.
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      // Before CreateJob has answered there is no id yet: run() stops the job right after.
      this.context.stderr.write(`jobctl: stopping the job${jobId ? ` ${jobId}` : ''}; press Ctrl-C again to quit without waiting\n`);
      interrupt.abort();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    let result: RunResult;
    try {
      result = await client.run(this.createRequest(), {
        signal: interrupt.signal,
        onStart: (job) => (jobId = job.id),
        onOutput: outputWriter(this.context, this.json, false),
        input: this.stdin ? (this.context.stdin as AsyncIterable<Uint8Array>) : undefined,
      });
    } catch (err) {
      // Stopped by our Ctrl-C: it ended like any job, and jobctl exits like it.
      if (!(err instanceof RunAbortedError)) throw err;
      result = err;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      // A terminal left open would keep jobctl waiting for a line after the job has ended.
      if (this.stdin) (this.context.stdin as Partial<NodeJS.ReadStream>).destroy?.();
    }
    if (this.json) this.context.stdout.write(toJsonLine({ job: jobJson(result.job) }));
    return result.job.status === JobStatus.JOB_STATUS_TIMED_OUT ? TIMED_OUT_EXIT_CODE : result.exitCode;
  }
}
