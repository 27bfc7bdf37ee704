// Crash points for the tests of the hand-off: with JOBWORKER_FLEET_CRASH_AT
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
  | 'owner-after-start';

const CRASH_AT = process.env.JOBWORKER_FLEET_CRASH_AT;

export function crashAt(point: CrashPoint): void {
  if (CRASH_AT === point) process.kill(process.pid, 'SIGKILL');
}
