// jobctl nodes, drain, undrain: the nodes of a fleet.
import { Command, Option } from 'clipanion';
import type { JobworkerClient } from '../src/client/client.js';
import { nodeJson, nodeTable, toJsonLine } from './format.js';
import { JobctlCommand } from './options.js';

export class NodesCommand extends JobctlCommand {
  static override paths = [['nodes']];
  static override usage = Command.Usage({
    description: "List the fleet's nodes: state, address, capacity, what their running jobs reserve, heartbeat, version, labels",
    details: `
      One line per node the fleet knows, by name. STATE is \`ready\` (taking jobs), \`draining\` (\`jobctl drain\`: no new jobs, its running ones go on) or \`lost\` (no heartbeat within its \`--node-lost-after\`: its unfinished jobs were ended as lost). CPU is in percent of one core (200% is two cores); RESERVED is the sum of the limits of its running jobs, which placement counts against its capacity.

      With \`--json\`: one JSON array of nodes. A server that is not part of a fleet answers with an error (exit 1).
    `,
    examples: [
      ['List the nodes', '$0 nodes'],
      ['Names of the ready nodes', "$0 nodes --json | jq -r '.[] | select(.state == \"ready\") | .name'"],
    ],
  });

  protected override async run(client: JobworkerClient): Promise<number> {
    const nodes = await client.nodes();
    this.context.stdout.write(this.json ? toJsonLine(nodes.map(nodeJson)) : nodeTable(nodes, new Date()));
    return 0;
  }
}

abstract class MarkCommand extends JobctlCommand {
  name = Option.String({ name: 'node' });

  protected abstract mark(client: JobworkerClient): ReturnType<JobworkerClient['drain']>;

  protected override async run(client: JobworkerClient): Promise<number> {
    const node = await this.mark(client);
    this.context.stdout.write(this.json ? toJsonLine(nodeJson(node)) : nodeTable([node], new Date()));
    return 0;
  }
}

export class DrainCommand extends MarkCommand {
  static override paths = [['drain']];
  static override usage = Command.Usage({
    description: 'Place no new jobs on a node; its running jobs go on (admin)',
    details: `
      The node stays \`draining\` until \`jobctl undrain\`, restarts included. \`create --node\` naming it is refused too. Prints the node as it is now.
    `,
    examples: [['Drain n2 before maintenance', '$0 drain n2']],
  });

  protected mark(client: JobworkerClient) {
    return client.drain(this.name);
  }
}

export class UndrainCommand extends MarkCommand {
  static override paths = [['undrain']];
  static override usage = Command.Usage({
    description: 'Place jobs on a drained node again (admin)',
    examples: [['Back in service', '$0 undrain n2']],
  });

  protected mark(client: JobworkerClient) {
    return client.undrain(this.name);
  }
}
