// jobctl attach-input: write jobctl's stdin to the stdin of a job created with -i.
import { Command, Option } from 'clipanion';
import type { JobworkerClient } from '../src/client/client.js';
import { INTERRUPTED_EXIT_CODE } from './errors.js';
import { toJsonLine } from './format.js';
import { JobctlCommand } from './options.js';

export class AttachInputCommand extends JobctlCommand {
  static override paths = [['attach-input']];
  static override usage = Command.Usage({
    description: "Write jobctl's stdin to a job's stdin, then close it",
    details: `
      For a job created with \`-i\` (\`jobctl create -i\`). Copies jobctl's stdin to the job as fast as the job reads it, then closes the job's stdin: the job reads EOF. Ctrl-C closes it too, after what was sent (exit 130). Exits 0 once the job has taken every byte (with \`--json\`: \`{"bytesWritten": N}\`).

      A job's input takes one writer, once: a second writer, a job created without \`-i\`, an ended job, or a job that stops reading before taking every byte is an error (exit 1).
    `,
    examples: [
      ['Feed a job a file', 'id=$($0 create -i wc -l); $0 attach-input "$id" < data.txt'],
      ['By name', "seq 100 | $0 attach-input counter"],
    ],
  });

  id = Option.String({ name: 'id|name' });

  protected override async run(client: JobworkerClient): Promise<number> {
    const interrupt = new AbortController();
    const onSignal = (): void => interrupt.abort();
    process.once('SIGINT', onSignal);
    try {
      const bytes = await client.writeInput(this.id, this.context.stdin as AsyncIterable<Uint8Array>, { signal: interrupt.signal });
      if (this.json) this.context.stdout.write(toJsonLine({ bytesWritten: bytes }));
      return 0;
    } catch (err) {
      if (!interrupt.signal.aborted) throw err;
      // Not an error of jobctl's: the job's stdin is closed after what was sent, as the help says.
      this.context.stderr.write("jobctl: interrupted: the job's stdin is closed after what was sent\n");
      return INTERRUPTED_EXIT_CODE;
    } finally {
      process.off('SIGINT', onSignal);
      // A terminal left open would keep jobctl waiting for a line.
      (this.context.stdin as Partial<NodeJS.ReadStream>).destroy?.();
    }
  }
}
