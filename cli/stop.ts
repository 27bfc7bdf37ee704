// jobctl stop: stop a job and wait until it has ended.
import { Command, Option } from 'clipanion';
import type { JobworkerClient } from '../src/client/client.js';
import { jobJson, statusLine, toJsonLine } from './format.js';
import { isGraceMs, JobctlCommand } from './options.js';

export class StopCommand extends JobctlCommand {
  static override paths = [['stop']];
  static override usage = Command.Usage({
    description: "Stop a job (SIGTERM, then SIGKILL after a grace period) and print how it ended",
    details: `
      Answers once the job has ended, with its final status line, e.g. \`STOPPED (signal SIGTERM)\` (with \`--json\`: the job). Stopping a job that has already ended is not an error: its status is printed as it is.
    `,
    examples: [
      ['Stop a job', '$0 stop 123e4567-e89b-12d3-a456-426614174000'],
      ['Give it 5 seconds to exit after SIGTERM', '$0 stop --grace 5000 123e4567-e89b-12d3-a456-426614174000'],
    ],
  });

  grace = Option.String('--grace', {
    description: 'Milliseconds between SIGTERM and SIGKILL (default: the server\'s)',
    validator: isGraceMs,
  });
  id = Option.String({ name: 'id' });

  protected override async run(client: JobworkerClient): Promise<number> {
    const job = await client.stop(this.id, { graceMs: this.grace });
    this.context.stdout.write(this.json ? toJsonLine(jobJson(job)) : `${statusLine(job)}\n`);
    return 0;
  }
}
