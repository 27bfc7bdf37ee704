// jobctl list: every job the server knows, oldest first.
import { Command } from 'clipanion';
import type { Session } from './connect.js';
import { jobJson, jobTable, toJsonLine } from './format.js';
import { JobctlCommand } from './options.js';

export class ListCommand extends JobctlCommand {
  static override paths = [['list']];
  static override usage = Command.Usage({
    description: 'List jobs: id, status, exit code or signal, start time, command',
    details: `
      With \`--json\`: one JSON array of jobs, each as \`jobctl get --json\` prints it.
    `,
    examples: [
      ['List jobs', '$0 list'],
      ['Ids of the running jobs', '$0 list --json | jq -r \'.[] | select(.status == "RUNNING") | .id\''],
    ],
  });

  protected override async run(session: Session): Promise<number> {
    const { jobs } = await session.unary('getJobs', {});
    this.context.stdout.write(this.json ? toJsonLine(jobs.map(jobJson)) : jobTable(jobs));
    return 0;
  }
}
