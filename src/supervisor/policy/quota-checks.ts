// What a rule of the quota file (quotas.ts) says of a job about to start,
// given the use counted so far: nothing, or QUOTA_EXCEEDED naming the
// quota, its limit and the use. One set of checks for both counters: a
// single host's (jobs/quota-ledger.ts, in memory) and a fleet's
// (fleet/quota-use.ts, in etcd); `scope` says whose use the message names.
import { Errors } from '../errors.js';
import type { QuotaRule } from './quotas.js';

const MIB = 1024 * 1024;

/** What an owner's running (or starting) jobs take together. */
export interface RunningUse {
  running: number;
  cpuPercent: number;
  memoryMb: number;
}

/** What the job about to start asks. */
export interface JobShare {
  cpuPercent: number;
  memoryBytes: number;
}

/** Whose use a message names: '' on a single host, ' in the fleet' in one. */
export type QuotaScope = '' | ' in the fleet';

/** Running jobs, their CPU and their memory, with this job's added. */
export function checkRunning(rule: QuotaRule, cn: string, use: RunningUse, job: JobShare, scope: QuotaScope = ''): void {
  const { running, cpuPercent, memoryMb } = rule.limits;
  const by = ruleName(rule);
  const who = `cn=${cn}`;
  if (running !== undefined && use.running + 1 > running) {
    throw Errors.quotaExceeded(`quota exceeded: running jobs: limit ${running}, ${who} has ${use.running} running or starting${scope} (rule ${by})`);
  }
  const askedMb = job.memoryBytes / MIB;
  if (cpuPercent !== undefined && use.cpuPercent + job.cpuPercent > cpuPercent) {
    throw Errors.quotaExceeded(
      `quota exceeded: cpu (the --max-cpu of running jobs, percent of a core): limit ${cpuPercent}, ${who} uses ${use.cpuPercent}${scope} and this job asks ${job.cpuPercent} (rule ${by})`,
    );
  }
  if (memoryMb !== undefined && use.memoryMb + askedMb > memoryMb) {
    throw Errors.quotaExceeded(
      `quota exceeded: memory (the --max-memory of running jobs, MiB): limit ${memoryMb}, ${who} uses ${use.memoryMb}${scope} and this job asks ${askedMb} (rule ${by})`,
    );
  }
}

/** Output kept (`keptBytes`, on this host: output stays on the node that ran the job). */
export function checkOutput(rule: QuotaRule, cn: string, keptBytes: number): void {
  const { outputBytes } = rule.limits;
  if (outputBytes !== undefined && keptBytes >= outputBytes) {
    throw Errors.quotaExceeded(`quota exceeded: output kept: limit ${outputBytes} bytes, cn=${cn}'s jobs keep ${keptBytes} (rule ${ruleName(rule)}; it drops as they are pruned)`);
  }
}

/** `created`: the owner's jobs created in the rule's window, this one left out. */
export function checkRate(rule: QuotaRule, cn: string, created: number, scope: QuotaScope = ''): void {
  const { rate } = rule.limits;
  if (rate !== undefined && created + 1 > rate.jobs) {
    throw Errors.quotaExceeded(`quota exceeded: rate: limit ${rate.jobs} jobs per ${windowName(rate.windowMs)}, cn=${cn} created ${created} in the last one${scope} (rule ${ruleName(rule)})`);
  }
}

function ruleName(rule: QuotaRule): string {
  return `${rule.subject} at ${rule.where}`;
}

function windowName(ms: number): string {
  return ms === 1_000 ? 'second' : ms === 60_000 ? 'minute' : 'hour';
}
