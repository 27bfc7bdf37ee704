// Crash points for the tests of the hand-off and of schedules: with JOBWORKER_FLEET_CRASH_AT
// naming a step, the process SIGKILLs itself there, as a power cut would,
// so a test can check that each step leaves exactly one outcome. Unset (any
// real deployment), crashAt() does nothing.
export type CrashPoint =
  /** Entry node: the job is placed, the chosen node not yet called. */
  | 'entry-before-hand-off'
  /** Entry node: the chosen node answered, the client not yet. */
  | 'entry-after-hand-off'
  /** Chosen node: its start claim is written, the job not started. */
  | 'owner-after-claim'
  /** Chosen node: the job runs, the entry node not yet answered. */
  | 'owner-after-start'
  /** A schedule's firing: its STARTING claim is written, its job not yet created. */
  | 'schedule-after-claim';

const CRASH_AT = process.env.JOBWORKER_FLEET_CRASH_AT;

export function crashAt(point: CrashPoint): void {
  if (CRASH_AT === point) process.kill(process.pid, 'SIGKILL');
}

// Delay points, for the tests of races: with JOBWORKER_FLEET_DELAY_AT set to
// "<point>:<ms>", the step waits that long there, so that racing starts all
// reach it before any goes on. Unset, delayAt() resolves at once.
export type DelayPoint =
  /** Chosen node: its owner's quota use is read, the start not yet claimed. */
  'quota-read';

const DELAY_AT = /^([a-z-]+):(\d{1,5})$/.exec(process.env.JOBWORKER_FLEET_DELAY_AT ?? '');

export async function delayAt(point: DelayPoint): Promise<void> {
  if (DELAY_AT?.[1] === point) await new Promise((resolve) => setTimeout(resolve, Number(DELAY_AT[2])));
}
