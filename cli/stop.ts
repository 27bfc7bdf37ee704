// jobctl stop: stop a job, or every running job with some labels, and wait until they have ended.
import { Command, Option, UsageError } from 'clipanion';
import type { JobworkerClient } from '../src/client/client.js';
import { atMost } from '../src/common/at-most.js';
import { JobStatus, type Job } from '../src/gen/jobworker/v1/jobworker.js';
import { describeError, ExitCode } from './errors.js';
import { commandLine, jobJson, statusLine, statusName, toJsonLine } from './format.js';
import { isGraceMs, isLabelEntries, JobctlCommand, labelsOf } from './options.js';

/** Stops of a `--label` selection in flight at once. */
const STOPS_AT_ONCE = 16;

export class StopCommand extends JobctlCommand {
  static override paths = [['stop']];
  static override usage = Command.Usage({
    description: "Stop a job, or every running job with some labels (SIGTERM, then SIGKILL after a grace period), and print how they ended",
    details: `
      Answers once the job has ended, with its final status line, e.g. \`STOPPED (signal SIGTERM)\` (with \`--json\`: the job). Stopping a job that has already ended is not an error: its status is printed as it is.

      With \`--label key=value\` (repeatable: every one must match) instead of an id, stops every running or waiting job that carries the labels (the waiting ones first, so that none starts as the others end), printing one line per job as it ends: \`<id> <status line>\` (with \`--json\`: one array of the ended jobs). \`--dry-run\` prints \`<id> RUNNING <command>\` (or WAITING) for each and stops nothing. A stop that fails is reported on stderr; the others go on, and jobctl then exits 1.
    `,
    examples: [
      ['Stop a job', '$0 stop 123e4567-e89b-12d3-a456-426614174000'],
      ['By name', '$0 stop web-1'],
      ['Give it 5 seconds to exit after SIGTERM', '$0 stop --grace 5000 123e4567-e89b-12d3-a456-426614174000'],
      ['What a label selection would stop', '$0 stop --dry-run --label env=load'],
      ['Stop every running job of a load test', '$0 stop --label env=load'],
    ],
  });

  grace = Option.String('--grace', {
    description: 'Milliseconds between SIGTERM and SIGKILL (default: the server\'s)',
    validator: isGraceMs,
  });
  label = Option.Array('--label', [], { description: 'Stop every running job labelled key=value (repeatable; every one must match), instead of one job', validator: isLabelEntries });
  dryRun = Option.Boolean('--dry-run', false, { description: 'With --label: print the jobs that would be stopped, stop nothing' });
  id = Option.String({ name: 'id|name', required: false });

  protected override async run(client: JobworkerClient): Promise<number> {
    if ((this.id === undefined) === (this.label.length === 0)) throw new UsageError('give a job id or name, or --label (not both)');
    if (this.dryRun && this.label.length === 0) throw new UsageError('--dry-run goes with --label');
    if (this.id !== undefined) {
      const job = await client.stop(this.id, { graceMs: this.grace });
      this.context.stdout.write(this.json ? toJsonLine(jobJson(job)) : `${statusLine(job)}\n`);
      return 0;
    }
    const labels = labelsOf(this.label);
    const waiting = await client.list({ status: JobStatus.JOB_STATUS_WAITING, labels });
    // One that started between the two reads is in both: stopped (and printed) once, as the waiting one it was.
    const running = (await client.list({ status: JobStatus.JOB_STATUS_RUNNING, labels })).filter((job) => !waiting.some((other) => other.id === job.id));
    const selected = [...waiting, ...running];
    if (this.dryRun) {
      this.context.stdout.write(this.json ? toJsonLine(selected.map(jobJson)) : selected.map((job) => `${job.id} ${statusName(job.status)} ${commandLine(job)}\n`).join(''));
      return 0;
    }
    const stopped: Job[] = [];
    let failed = false;
    const stop = async (job: Job): Promise<void> => {
      try {
        const ended = await client.stop(job.id, { graceMs: this.grace });
        stopped.push(ended);
        if (!this.json) this.context.stdout.write(`${ended.id} ${statusLine(ended)}\n`);
      } catch (err) {
        failed = true;
        this.context.stderr.write(`jobctl: ${job.id}: ${describeError(err).message ?? 'failed'}\n`);
      }
    };
    await atMost(STOPS_AT_ONCE, waiting, stop);
    await atMost(STOPS_AT_ONCE, running, stop);
    if (this.json) this.context.stdout.write(toJsonLine(stopped.map(jobJson)));
    return failed ? ExitCode.SERVER_ERROR : 0;
  }
}
