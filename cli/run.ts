// jobctl run: create a job, follow its output, exit with its exit code; a
// remote command that feels like a local one.
import os from 'node:os';
import { Command } from 'clipanion';
import { JobStatus, type Job } from '../src/gen/jobworker/v1/jobworker.js';
import type { Session } from './connect.js';
import { requireJob } from './errors.js';
import { jobJson, toJsonLine } from './format.js';
import { StartCommand } from './create.js';
import { copyOutput } from './stream.js';

/** Shell conventions: the exit code, or 128 + the number of the signal that killed the job. */
export function exitCodeOf(job: Job): number {
  const signalled = job.signal ? signalExitCode(job.signal) : undefined;
  switch (job.status) {
    case JobStatus.JOB_STATUS_COMPLETED:
      return job.exitCode ?? 0;
    case JobStatus.JOB_STATUS_STOPPED:
      // A job that exits by itself on SIGTERM was still terminated by it.
      return signalled ?? 128 + os.constants.signals.SIGTERM;
    default:
      // FAILED without either: killed by the memory limit in a way that left
      // no status, or the server could not tell.
      return job.exitCode ?? signalled ?? 1;
  }
}

function signalExitCode(name: string): number | undefined {
  const number = (os.constants.signals as Partial<Record<string, number>>)[name];
  return number === undefined ? undefined : 128 + number;
}

export class RunCommand extends StartCommand {
  static override paths = [['run']];
  static override usage = Command.Usage({
    description: 'Run a command as a job: stream its output and exit with its exit code',
    details: `
      Creates the job, copies its stdout and stderr to jobctl's as they are written, and exits like the job did: its exit code, or 128 + the signal number if a signal killed it (143 for a job stopped with SIGTERM); 1 if it failed without an exit code.

      Ctrl-C (or SIGTERM) stops the job, waits for it to end and exits like it; a second Ctrl-C quits jobctl at once while the server finishes stopping the job.

      With \`--json\`: the output as \`jobctl stream --json\` prints it, then one last line \`{"job": {...}}\` with the ended job.
    `,
    examples: [
      ['Run a command', "$0 run sh -c 'echo hello; exit 3'"],
      ['With limits', '$0 run --max-cpu 50 --max-memory 128 -- make -j4'],
    ],
  });

  protected override async run(session: Session): Promise<number> {
    let jobId: string | undefined;
    let interrupted = false;
    let stopping: Promise<Job> | undefined;
    const stop = (id: string): void => {
      stopping ??= session.unary('stopJob', { id }).then((response) => requireJob('StopJob', response.job));
      // Awaited once the output has ended; until then, not unhandled.
      stopping.catch(() => {});
    };
    const onSignal = (): void => {
      // Once only: the next Ctrl-C gets Node's default and ends jobctl.
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      interrupted = true;
      this.context.stderr.write(`jobctl: stopping the job${jobId ? ` ${jobId}` : ''}; press Ctrl-C again to quit without waiting\n`);
      // Before CreateJob has answered there is no id yet: stop right after.
      if (jobId) stop(jobId);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      const created = await this.createJob(session);
      jobId = created.id;
      if (interrupted) stop(created.id);
      // The stream ends once the job has ended and every byte is out, stopped or not.
      await copyOutput(session, { id: created.id, follow: true }, this.context, this.json);
      const ended = stopping ? await stopping : requireJob('GetJob', (await session.unary('getJob', { id: created.id })).job);
      if (this.json) this.context.stdout.write(toJsonLine({ job: jobJson(ended) }));
      return exitCodeOf(ended);
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
}
