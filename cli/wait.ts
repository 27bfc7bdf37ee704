// jobctl wait: block until jobs have ended; exit as the last one did.
import { Command, Option } from 'clipanion';
import type { JobworkerClient } from '../src/client/client.js';
import { exitCodeOf } from '../src/client/client.js';
import type { Job } from '../src/gen/jobworker/v1/jobworker.js';
import { TIMED_OUT_EXIT_CODE } from './errors.js';
import { jobJson, toJsonLine } from './format.js';
import { formatDuration } from '../src/common/units.js';
import { isTimeout, JobctlCommand } from './options.js';

/** A wait that its --timeout ended. */
const TIMED_OUT: unique symbol = Symbol('timed out');

export class WaitCommand extends JobctlCommand {
  static override paths = [['wait']];
  static override usage = Command.Usage({
    description: 'Wait until jobs have ended; print their exit codes and exit with the last one',
    details: `
      Waits for every job named (ids or names), all at once, and prints each one's exit code on a line of its own, in the order given, as \`docker wait\` does: its exit code, or 128 + the signal number if a signal killed it, 1 if the server cannot tell. jobctl then exits with the last job's. The server answers when a job ends: nothing polls.

      With \`--timeout\`, jobctl gives up after that long, names the jobs still running on stderr and exits 124, as \`timeout(1)\` does.

      With \`--json\`: one JSON array of the ended jobs, each as \`jobctl get --json\` prints it.
    `,
    examples: [
      ['Wait for a job', '$0 wait web-1'],
      ['Wait for three, at most 10 minutes', '$0 wait --timeout 10m "$a" "$b" "$c"'],
    ],
  });

  timeout = Option.String('--timeout', { description: 'Give up after this long (30s, 10m, 2h) and exit 124', validator: isTimeout });
  ids = Option.Rest({ name: 'id|name', required: 1 });

  protected override async run(client: JobworkerClient): Promise<number> {
    const expired = this.timeout === undefined ? undefined : AbortSignal.timeout(this.timeout);
    // The first job that cannot be waited for (not found, no server) ends the others' waits at once.
    const failed = new AbortController();
    const signal = expired ? AbortSignal.any([expired, failed.signal]) : failed.signal;
    const waits = this.ids.map((id) =>
      client.wait(id, { signal }).then(
        (job): Job | typeof TIMED_OUT => job,
        (err: unknown): Job | typeof TIMED_OUT => {
          if (expired?.aborted && !failed.signal.aborted) return TIMED_OUT;
          failed.abort(err);
          throw err;
        },
      ),
    );
    let outcomes: (Job | typeof TIMED_OUT)[];
    try {
      outcomes = await Promise.all(waits);
    } finally {
      // Rejections of the waits cut short by the first failure are that failure's echo.
      for (const wait of waits) wait.catch(() => undefined);
    }
    const waiting = this.ids.filter((_, at) => outcomes[at] === TIMED_OUT);
    if (waiting.length > 0) {
      this.context.stderr.write(`jobctl: wait timed out after ${formatDuration(this.timeout!)}; not ended: ${waiting.join(' ')}\n`);
      return TIMED_OUT_EXIT_CODE;
    }
    const jobs = outcomes as Job[];
    this.context.stdout.write(this.json ? toJsonLine(jobs.map(jobJson)) : jobs.map((job) => `${exitCodeOf(job)}\n`).join(''));
    return exitCodeOf(jobs[jobs.length - 1]!);
  }
}
