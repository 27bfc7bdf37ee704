// Cron expressions as schedules read them: slots in a time zone across DST
// changes, cron's either-day rule, and refusals naming the field.
import test from 'ava';
import { CronSchedule, cronProblem, timezoneProblem } from '../../../src/supervisor/schedules/cron.js';
import { jobName } from '../../../src/supervisor/schedules/scheduler.js';

/** The next `n` slots after `from`, as ISO strings. */
function slots(expression: string, timezone: string, from: string, n: number): string[] {
  const cron = new CronSchedule(expression, timezone);
  const out: string[] = [];
  for (let at: Date | null = new Date(from); out.length < n; ) {
    at = cron.after(at);
    if (at === null) break;
    out.push(at.toISOString());
  }
  return out;
}

test('cron: the slot strictly after a time, in UTC by default', (t) => {
  t.deepEqual(slots('*/5 * * * *', '', '2026-01-01T00:05:00Z', 2), ['2026-01-01T00:10:00.000Z', '2026-01-01T00:15:00.000Z']);
  t.deepEqual(slots('@hourly', '', '2026-01-01T00:59:59.500Z', 1), ['2026-01-01T01:00:00.000Z']);
});

test('cron: a local time that DST skips fires once, right after the gap; one DST repeats fires once', (t) => {
  // Europe/Berlin: 2026-03-29 02:00 CET becomes 03:00 CEST; 2026-10-25 03:00 CEST becomes 02:00 CET.
  t.deepEqual(slots('30 2 * * *', 'Europe/Berlin', '2026-03-27T12:00:00Z', 3), ['2026-03-28T01:30:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-30T00:30:00.000Z']);
  t.deepEqual(slots('30 2 * * *', 'Europe/Berlin', '2026-10-24T12:00:00Z', 2), ['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z']);
  t.deepEqual(slots('0 9 * * MON-FRI', 'America/New_York', '2026-12-05T12:00:00Z', 1), ['2026-12-07T14:00:00.000Z']);
});

test('cron: day of month and day of week both restricted means either, as cron has it', (t) => {
  // 2027-01-01 is a Friday: the 1st, the 15th, or a Friday.
  t.deepEqual(slots('0 0 1,15 * 5', '', '2027-01-01T00:00:00Z', 4), ['2027-01-08T00:00:00.000Z', '2027-01-15T00:00:00.000Z', '2027-01-22T00:00:00.000Z', '2027-01-29T00:00:00.000Z']);
});

test('cron: what is refused names the field or says why', (t) => {
  t.is(cronProblem('*/5 * * * *', ''), null);
  t.is(cronProblem('@daily', 'Asia/Tokyo'), null);
  t.is(cronProblem('', ''), 'cron is required (five fields such as */5 * * * *, or @hourly)');
  t.is(cronProblem('61 * * * *', ''), 'cron "61 * * * *": Invalid value for minute: 61');
  t.is(cronProblem('0 0 * * 8', ''), 'cron "0 0 * * 8": Invalid value for dayOfWeek: 8');
  t.is(cronProblem('0 0 31 2 *', ''), 'cron "0 0 31 2 *" never fires (no date matches it)');
  t.is(cronProblem('* * * *', ''), 'cron "* * * *": expected five fields (minute hour day-of-month month day-of-week), got 4');
  t.regex(cronProblem('@reboot', '')!, /^cron "@reboot": unknown nickname/);
  t.is(timezoneProblem(''), null);
  t.is(timezoneProblem('Europe/Berlin'), null);
  t.is(timezoneProblem('Europe/Nowhere'), 'timezone "Europe/Nowhere" is not an IANA time zone such as Europe/Berlin or UTC');
});

test('job names: the schedule, then the slot in UTC (and milliseconds for run-now), a valid job name at most 63 long', (t) => {
  const at = new Date('2026-12-06T03:00:00.042Z');
  t.is(jobName('nightly', at), 'nightly-20261206-030000');
  t.is(jobName('nightly', at, true), 'nightly-20261206-030000-042');
  t.is(jobName('n'.repeat(43), at, true).length, 63);
});
