// Cron expressions, parsed and stepped by croner (a well-kept, dependency-free
// library with time zones, which names the field it refuses): five fields or
// an @nickname, the slot after a given time in the schedule's time zone.
import { Cron } from 'croner';

const NICKNAMES = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']);

/** Why `expression` is not a cron expression this server takes, or null. */
export function cronProblem(expression: string, timezone: string): string | null {
  const text = expression.trim();
  if (text === '') return 'cron is required (five fields such as */5 * * * *, or @hourly)';
  if (text.length > 200) return `cron must be at most 200 characters, got ${text.length}`;
  if (text.startsWith('@')) {
    if (!NICKNAMES.has(text.toLowerCase())) return `cron ${JSON.stringify(text)}: unknown nickname (one of ${[...NICKNAMES].join(', ')})`;
  } else if (text.split(/\s+/).length !== 5) {
    return `cron ${JSON.stringify(text)}: expected five fields (minute hour day-of-month month day-of-week), got ${text.split(/\s+/).length}`;
  }
  let cron: Cron;
  try {
    cron = new Cron(text, { paused: true, timezone: timezone || 'UTC' });
  } catch (err) {
    // croner says "CronPattern: Invalid value for minute: 61".
    return `cron ${JSON.stringify(text)}: ${(err as Error).message.replace(/^CronPattern: /, '')}`;
  }
  if (cron.nextRun(new Date()) === null) return `cron ${JSON.stringify(text)} never fires (no date matches it)`;
  return null;
}

/** Why `timezone` is not an IANA time zone, or null ('' is UTC). */
export function timezoneProblem(timezone: string): string | null {
  if (timezone === '') return null;
  try {
    new Intl.DateTimeFormat('en', { timeZone: timezone });
    return null;
  } catch {
    return `timezone ${JSON.stringify(timezone.slice(0, 80))} is not an IANA time zone such as Europe/Berlin or UTC`;
  }
}

/** A checked expression in its time zone. */
export class CronSchedule {
  readonly #cron: Cron;

  constructor(expression: string, timezone: string) {
    this.#cron = new Cron(expression.trim(), { paused: true, timezone: timezone || 'UTC' });
  }

  /** The first slot strictly after `time`; null when none is left. */
  after(time: Date): Date | null {
    return this.#cron.nextRun(time);
  }
}
