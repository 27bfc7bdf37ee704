// jobctl get: one job in detail.
import { Command, Option } from 'clipanion';
import type { JobworkerClient } from '../src/client/client.js';
import { jobDetail, jobJson, toJsonLine } from './format.js';
import { JobctlCommand } from './options.js';

export class GetCommand extends JobctlCommand {
  static override paths = [['get']];
  static override usage = Command.Usage({
    description: 'Show one job: status, command, limits, times, exit code or signal',
    examples: [
      ['Show a job', '$0 get 123e4567-e89b-12d3-a456-426614174000'],
      ["Read a job's exit code from a script", "$0 get --json 123e4567-e89b-12d3-a456-426614174000 | jq .exitCode"],
    ],
  });

  id = Option.String({ name: 'id|name' });

  protected override async run(client: JobworkerClient): Promise<number> {
    const job = await client.get(this.id);
    this.context.stdout.write(this.json ? toJsonLine(jobJson(job)) : jobDetail(job));
    return 0;
  }
}
