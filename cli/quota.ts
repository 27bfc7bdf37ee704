// jobctl quota: what a caller uses against its quota (jobworkerd --quota-file).
import { Command, Option } from 'clipanion';
import type { JobworkerClient } from '../src/client/client.js';
import { quotaJson, quotaTable, toJsonLine } from './format.js';
import { JobctlCommand } from './options.js';

export class QuotaCommand extends JobctlCommand {
  static override paths = [['quota']];
  static override usage = Command.Usage({
    description: "Show a caller's quota: the rule that applies, each limit and the use now",
    details: `
      The caller's own, by the CN of its certificate, or another CN's with \`--owner\`. The first line names the rule that applies (\`cn=…\`, \`role=…\` or \`default\`, and where the quota file says it) or that none does; then one row per quota: its limit (\`-\`: not limited) and the use now. CPU is in percent of one core and counts the \`--max-cpu\` of running jobs, memory their \`--max-memory\`; output is what the owner's jobs keep; rate counts the jobs created in the rule's window; calls, the calls in flight now (this one included, when it is your own).

      Another CN's role is in its certificate, not in its jobs: its role's rule shows once the server has seen it create a job.

      In a fleet, any node answers with the fleet's use: running jobs, CPU, memory and the rate count the owner's jobs on every node; output and calls are the answering node's own.

      With \`--json\`: one JSON object; a limit is null where nothing is limited.
    `,
    examples: [
      ['Your own quota', '$0 quota'],
      ["alice's running jobs against her limit", "$0 quota --owner alice --json | jq '.use.running, .limits.running'"],
    ],
  });

  owner = Option.String('--owner', { description: 'The certificate CN to show (default: your own)' });

  protected override async run(client: JobworkerClient): Promise<number> {
    const quota = await client.quota(this.owner ?? '');
    this.context.stdout.write(this.json ? toJsonLine(quotaJson(quota)) : quotaTable(quota));
    return 0;
  }
}
