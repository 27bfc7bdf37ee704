// jobctl list: the jobs the server knows, newest first.
import { Command, Option } from 'clipanion';
import * as t from 'typanion';
import { JobStatus, type Job } from '../src/gen/jobworker/v1/jobworker.js';
import type { Session } from './connect.js';
import { jobJson, jobTable, toJsonLine } from './format.js';
import { JobctlCommand, isJobCount } from './options.js';

const STATUSES = ['RUNNING', 'COMPLETED', 'FAILED', 'STOPPED'] as const;
/** Jobs per call when listing all of them: well under gRPC's 4 MiB message limit. */
const PAGE = 1000;

export class ListCommand extends JobctlCommand {
  static override paths = [['list']];
  static override usage = Command.Usage({
    description: 'List jobs, newest first: id, status, exit code or signal, start time, command',
    details: `
      \`--status\` and \`--owner\` (the CN of the certificate that created the job) filter; \`--limit N\` prints the newest N that match.

      With \`--json\`: one JSON array of jobs, each as \`jobctl get --json\` prints it.
    `,
    examples: [
      ['List jobs', '$0 list'],
      ['The 50 newest running jobs', '$0 list --status RUNNING --limit 50'],
      ['Ids of the failed jobs', '$0 list --status FAILED --json | jq -r \'.[].id\''],
    ],
  });

  status = Option.String('--status', {
    description: `Only jobs in this state: ${STATUSES.join(', ')}`,
    validator: t.isEnum(STATUSES),
  });
  owner = Option.String('--owner', { description: 'Only jobs created by this certificate CN' });
  limit = Option.String('--limit', { description: 'At most this many jobs (1 to 10000)', validator: isJobCount });

  protected override async run(session: Session): Promise<number> {
    const filter = { status: this.status === undefined ? JobStatus.JOB_STATUS_UNSPECIFIED : JobStatus[`JOB_STATUS_${this.status}` as keyof typeof JobStatus], owner: this.owner ?? '' };
    const limit = this.limit ?? Number.POSITIVE_INFINITY;
    const jobs: Job[] = [];
    let pageToken = '';
    do {
      const page = await session.unary('getJobs', { ...filter, pageSize: Math.min(PAGE, limit - jobs.length), pageToken });
      jobs.push(...page.jobs);
      pageToken = page.nextPageToken;
    } while (pageToken !== '' && jobs.length < limit);
    this.context.stdout.write(this.json ? toJsonLine(jobs.map(jobJson)) : jobTable(jobs));
    return 0;
  }
}
