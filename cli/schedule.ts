// jobctl schedule: jobs the server creates at the times a cron expression names.
import { Command, Option } from 'clipanion';
import * as t from 'typanion';
import type { JobworkerClient } from '../src/client/client.js';
import { CatchUpPolicy, ConcurrencyPolicy } from '../src/gen/jobworker/v1/jobworker.js';
import { StartCommand } from './create.js';
import { escapeControl, firingJson, firingOutcomeText, scheduleDetail, scheduleJson, scheduleTable, toJsonLine } from './format.js';
import { isJobName, isTimeout, JobctlCommand } from './options.js';

const CONCURRENCY = { allow: ConcurrencyPolicy.CONCURRENCY_POLICY_ALLOW, forbid: ConcurrencyPolicy.CONCURRENCY_POLICY_FORBID, replace: ConcurrencyPolicy.CONCURRENCY_POLICY_REPLACE } as const;
const CATCH_UP = { once: CatchUpPolicy.CATCH_UP_POLICY_ONCE, none: CatchUpPolicy.CATCH_UP_POLICY_NONE } as const;

export class ScheduleCreateCommand extends StartCommand {
  static override paths = [['schedule', 'create']];
  static override usage = Command.Usage({
    category: 'Schedules',
    description: 'Create a schedule and print its id',
    details: `
      At each time \`--cron\` names (five fields, minute hour day-of-month month day-of-week, or @hourly, @daily…; in \`--timezone\`, UTC by default), the server creates the job given here, with every option \`create\` takes (limits, isolation, env, labels, timeout) but \`--after\` and \`-i\` (the server refuses those: a scheduled job waits for nothing and reads /dev/null). Each job is labelled \`schedule=<id>\` (\`jobctl list --label schedule=<id>\`) and named after the schedule and the firing time (\`nightly-20261206-030000\`, UTC).

      \`--concurrency\` says what a firing does while the job of an earlier one has not ended: \`allow\` (the default) starts another, \`forbid\` skips the firing, \`replace\` stops that job first. \`--catch-up\` says what the server does at its start for the slots it missed while it was down: \`once\` (the default) fires the latest missed slot once if it is no older than \`--catch-up-window\` (1h by default), \`none\` fires none. A skip is recorded with its reason (\`jobctl schedule get\`); a slot never fires twice.

      In a fleet the schedule is the fleet's: any node answers for it, each slot fires once for the whole fleet, and its job is placed as \`create\` places one (\`--node\`, \`--constraint\`).

      Prints the schedule's id alone (with \`--json\`: the schedule).
    `,
    examples: [
      ['Every five minutes', "$0 schedule create --cron '*/5 * * * *' --name probe -- curl -fsS http://localhost/health"],
      ['03:00 in Berlin, never two at once', "$0 schedule create --cron '0 3 * * *' --timezone Europe/Berlin --concurrency forbid --name nightly -- ./backup"],
    ],
  });

  cron = Option.String('--cron', { required: true, description: "When: five cron fields (minute hour day-of-month month day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly" });
  override name = Option.String('--name', { description: "Name the schedule (unique among schedules; it names its jobs too): every schedule command takes it for the id", validator: isJobName });
  timezone = Option.String('--timezone', { description: 'IANA time zone the cron fields are read in, such as Europe/Berlin (default UTC)' });
  concurrency = Option.String('--concurrency', { description: 'While an earlier firing\'s job has not ended: allow (default), forbid (skip), replace (stop it)', validator: t.isEnum(['allow', 'forbid', 'replace'] as const) });
  catchUp = Option.String('--catch-up', { description: 'After downtime: once (default; the latest missed slot, within --catch-up-window) or none', validator: t.isEnum(['once', 'none'] as const) });
  catchUpWindow = Option.String('--catch-up-window', { description: 'How old a missed slot --catch-up once still fires (30m, 2h; default 1h)', validator: isTimeout });

  protected override async run(client: JobworkerClient): Promise<number> {
    const job = { ...this.createRequest(), name: '' };
    const schedule = await client.createSchedule({
      cron: this.cron,
      name: this.name ?? '',
      timezone: this.timezone ?? '',
      job,
      concurrency: this.concurrency === undefined ? undefined : CONCURRENCY[this.concurrency],
      catchUp: this.catchUp === undefined ? undefined : CATCH_UP[this.catchUp],
      catchUpWindowMs: this.catchUpWindow,
    });
    this.context.stdout.write(this.json ? toJsonLine(scheduleJson(schedule)) : `${schedule.id}\n`);
    return 0;
  }
}

export class ScheduleListCommand extends JobctlCommand {
  static override paths = [['schedule', 'list']];
  static override usage = Command.Usage({
    category: 'Schedules',
    description: 'List the schedules, oldest first: id, name, cron, time zone, next firing, last firing, command',
    details: 'LAST is the outcome of the newest firing (STARTED, SKIPPED or FAILED) and, while the server keeps it, its job\'s status. With `--json`: one array of schedules, each with its last firings.',
  });

  protected override async run(client: JobworkerClient): Promise<number> {
    const schedules = await client.schedules();
    this.context.stdout.write(this.json ? toJsonLine(schedules.map(scheduleJson)) : scheduleTable(schedules));
    return 0;
  }
}

/** The commands that name one schedule: get, pause, resume, delete. */
abstract class OneScheduleCommand extends JobctlCommand {
  schedule = Option.String({ name: 'ID|NAME' });
}

export class ScheduleGetCommand extends OneScheduleCommand {
  static override paths = [['schedule', 'get']];
  static override usage = Command.Usage({
    category: 'Schedules',
    description: 'Show a schedule: its settings, next firing time, and its last firings with their outcomes',
    details: 'Each firing: the slot it was for, STARTED (its job, and the job\'s status while the server keeps it), SKIPPED or FAILED with the reason. With `--json`: the schedule.',
  });

  protected override async run(client: JobworkerClient): Promise<number> {
    const schedule = await client.schedule(this.schedule);
    this.context.stdout.write(this.json ? toJsonLine(scheduleJson(schedule)) : scheduleDetail(schedule));
    return 0;
  }
}

export class SchedulePauseCommand extends OneScheduleCommand {
  static override paths = [['schedule', 'pause']];
  static override usage = Command.Usage({ category: 'Schedules', description: 'Pause a schedule: it fires no more until resumed (the slots it misses meanwhile are not caught up)' });

  protected override async run(client: JobworkerClient): Promise<number> {
    const schedule = await client.pauseSchedule(this.schedule);
    this.context.stdout.write(this.json ? toJsonLine(scheduleJson(schedule)) : `${schedule.id} paused\n`);
    return 0;
  }
}

export class ScheduleResumeCommand extends OneScheduleCommand {
  static override paths = [['schedule', 'resume']];
  static override usage = Command.Usage({ category: 'Schedules', description: 'Resume a paused schedule: it fires from its next slot on' });

  protected override async run(client: JobworkerClient): Promise<number> {
    const schedule = await client.resumeSchedule(this.schedule);
    this.context.stdout.write(this.json ? toJsonLine(scheduleJson(schedule)) : `${schedule.id} next firing ${schedule.nextFiringAt?.toISOString() ?? '-'}\n`);
    return 0;
  }
}

export class ScheduleDeleteCommand extends OneScheduleCommand {
  static override paths = [['schedule', 'delete']];
  static override usage = Command.Usage({ category: 'Schedules', description: 'Delete a schedule and its firings (the jobs it created stay)' });

  protected override async run(client: JobworkerClient): Promise<number> {
    const schedule = await client.deleteSchedule(this.schedule);
    this.context.stdout.write(this.json ? toJsonLine(scheduleJson(schedule)) : `${schedule.id} deleted\n`);
    return 0;
  }
}

export class ScheduleRunNowCommand extends OneScheduleCommand {
  static override paths = [['schedule', 'run-now']];
  static override usage = Command.Usage({
    category: 'Schedules',
    description: "Fire a schedule now, whatever its cron and a pause say; prints the job's id",
    details: 'Its concurrency policy still holds: a firing it forbids is skipped, and jobctl then prints why on stderr and exits 1, as for a firing that failed. With `--json`: the firing.',
  });

  protected override async run(client: JobworkerClient): Promise<number> {
    const firing = await client.runSchedule(this.schedule);
    if (this.json) this.context.stdout.write(toJsonLine(firingJson(firing)));
    if (firing.jobId) {
      if (!this.json) this.context.stdout.write(`${firing.jobId}\n`);
      return 0;
    }
    if (!this.json) this.context.stderr.write(`jobctl: ${firingOutcomeText(firing).toLowerCase()}: ${escapeControl(firing.reason)}\n`);
    return 1;
  }
}
