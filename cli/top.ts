// jobctl top: running jobs with their CPU, memory and I/O, refreshed in place,
// like docker stats or systemd-cgtop; --once prints one table for scripts.
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, Option } from 'clipanion';
import type { JobworkerClient } from '../src/client/client.js';
import { JobStatus, type Job } from '../src/gen/jobworker/v1/jobworker.js';
import { topJson, topTable, toJsonLine, type TopRow } from './format.js';
import { isIntervalSeconds, JobctlCommand } from './options.js';
import { ratesBetween } from './usage-rates.js';

export class TopCommand extends JobctlCommand {
  static override paths = [['top']];
  static override usage = Command.Usage({
    description: 'Show running jobs with their CPU, memory and I/O, refreshed every few seconds',
    details: `
      One line per running job (in a fleet, every node's, with its node): its id, status, CPU (percent of one core, as \`--max-cpu\` counts it: 200% is two cores busy), memory in use, block-device reads and writes per second, how long it has run, and its command line; busiest first. On a terminal the table is redrawn in place every \`--interval\` seconds until Ctrl-C; otherwise each table follows the last, after a blank line.

      CPU and I/O are rates between two readings, so the first table shows \`-\` for them. \`--once\` takes two readings \`--interval\` apart and prints one table. With \`--json\`, each table is one JSON array on one line (\`cpuPercent\` and \`ioBytesPerSecond\` null where there is no rate yet).
    `,
    examples: [
      ['Watch the running jobs', '$0 top'],
      ['One table, for a script', '$0 top --once --interval 1'],
      ['The busiest job as JSON', "$0 top --once --json | jq '.[0]'"],
    ],
  });

  once = Option.Boolean('--once', false, { description: 'Print one table (two readings --interval apart) and exit' });
  interval = Option.String('--interval', '2', { description: 'Seconds between readings, 0.2 to 3600 (default 2)', validator: isIntervalSeconds });

  protected override async run(client: JobworkerClient): Promise<number> {
    const stop = new AbortController();
    const onSignal = (): void => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const live = !this.once && !this.json && (this.context.stdout as Partial<NodeJS.WriteStream>).isTTY === true;
    try {
      let earlier = this.once ? await readRunning(client, stop.signal) : new Map<string, Job>();
      if (this.once) await sleep(this.interval * 1000, undefined, { signal: stop.signal });
      for (;;) {
        const now = await readRunning(client, stop.signal);
        const rows = [...now.values()].map((job): TopRow => ({ job, ...ratesBetween(earlier.get(job.id), job) }));
        rows.sort((a, b) => (b.cpuPercent ?? -1) - (a.cpuPercent ?? -1) || (a.job.startedAt?.getTime() ?? 0) - (b.job.startedAt?.getTime() ?? 0));
        this.#print(rows, live, client.server);
        if (this.once) return 0;
        earlier = now;
        await sleep(this.interval * 1000, undefined, { signal: stop.signal });
      }
    } catch (err) {
      // Ctrl-C: the usual way out.
      if (stop.signal.aborted) return 0;
      throw err;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }

  #print(rows: TopRow[], live: boolean, server: string): void {
    const out = this.context.stdout as Partial<NodeJS.WriteStream> & NodeJS.WritableStream;
    const now = new Date();
    if (this.json) {
      out.write(toJsonLine(rows.map((row) => topJson(row, now))));
      return;
    }
    const table = topTable(rows, now);
    if (!live) {
      out.write(`${this.once ? '' : '\n'}${table}`);
      return;
    }
    // Home, clear, then as many lines as the terminal holds, each cut to its width.
    // A terminal that does not say its size (0×0, as under script(1)) gets 120×40.
    const columns = out.columns || 120;
    const height = Math.max(3, (out.rows || 40) - 2);
    const lines = table.trimEnd().split('\n');
    const shown = lines.slice(0, height).map((line) => line.slice(0, columns));
    const more = lines.length - shown.length;
    const title = `jobctl top: ${rows.length} running on ${server}, every ${this.interval} s (Ctrl-C to quit)${more > 0 ? `, ${more} more not shown` : ''}`;
    out.write(`\x1b[H\x1b[2J${title.slice(0, columns)}\n\n${shown.join('\n')}\n`);
  }
}

/**
 * Every running job with its usage read afresh: a page of them per call
 * (the server reads their cgroups as it answers), not a call per job.
 */
function readRunning(client: JobworkerClient, signal: AbortSignal): Promise<Map<string, Job>> {
  return client.list({ status: JobStatus.JOB_STATUS_RUNNING, freshUsage: true, signal }).then((jobs) => new Map(jobs.map((job) => [job.id, job])));
}
