// jobctl list: the jobs the server knows, newest first.
import { Command, Option } from 'clipanion';
import * as t from 'typanion';
import type { JobworkerClient } from '../src/client/client.js';
import { JobStatus } from '../src/gen/jobworker/v1/jobworker.js';
import { jobJson, jobTable, toJsonLine } from './format.js';
import { JobctlCommand, isJobCount, isLabelEntries, labelsOf } from './options.js';

const STATUSES = ['WAITING', 'RUNNING', 'COMPLETED', 'FAILED', 'STOPPED', 'TIMED_OUT'] as const;

export class ListCommand extends JobctlCommand {
  static override paths = [['list']];
  static override usage = Command.Usage({
    description: 'List jobs, newest first: id, status, exit code or signal, start time, command',
    details: `
      \`--status\`, \`--owner\` (the CN of the certificate that created the job), \`--label key=value\` (repeatable: every one must match) and \`--node\` (in a fleet) filter; \`--limit N\` prints the newest N that match. NAME and LABELS columns appear when a listed job has them.

      With \`--json\`: one JSON array of jobs, each as \`jobctl get --json\` prints it.
    `,
    examples: [
      ['List jobs', '$0 list'],
      ['The 50 newest running jobs', '$0 list --status RUNNING --limit 50'],
      ['Ids of the failed jobs', '$0 list --status FAILED --json | jq -r \'.[].id\''],
      ['Jobs of one shard of a load test', '$0 list --label env=load --label shard=3'],
    ],
  });

  status = Option.String('--status', {
    description: `Only jobs in this state: ${STATUSES.join(', ')}`,
    validator: t.isEnum(STATUSES),
  });
  owner = Option.String('--owner', { description: 'Only jobs created by this certificate CN' });
  node = Option.String('--node', { description: 'Fleet only: only jobs of this node' });
  label = Option.Array('--label', [], { description: 'Only jobs labelled key=value (repeatable; every one must match)', validator: isLabelEntries });
  limit = Option.String('--limit', { description: 'At most this many jobs (1 to 10000)', validator: isJobCount });

  protected override async run(client: JobworkerClient): Promise<number> {
    const status = this.status === undefined ? undefined : JobStatus[`JOB_STATUS_${this.status}` as const];
    const jobs = await client.list({ status, owner: this.owner, node: this.node, labels: labelsOf(this.label), limit: this.limit });
    this.context.stdout.write(this.json ? toJsonLine(jobs.map(jobJson)) : jobTable(jobs));
    return 0;
  }
}
