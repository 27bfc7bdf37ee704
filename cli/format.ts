// How jobs look on the terminal and in --json output. Pure functions of a Job.
//
// Command lines and messages come from whoever created the job, and a viewer
// sees every job: they are printed with control characters escaped so that a
// job's argv cannot move the cursor or rewrite the terminal of the person
// listing it.
import {
  CatchUpPolicy,
  ConcurrencyPolicy,
  DependencyCondition,
  FiringOutcome,
  JobStatus,
  Network,
  NodeState,
  OutputStream,
  type DataChunk,
  type Firing,
  type Job,
  type Node,
  type Quota,
  type Schedule,
} from '../src/gen/jobworker/v1/jobworker.js';
import { formatDuration } from '../src/common/units.js';
import type { JobRates } from './usage-rates.js';

const STATUS_NAMES: Readonly<Record<JobStatus, string>> = {
  [JobStatus.JOB_STATUS_UNSPECIFIED]: 'UNSPECIFIED',
  [JobStatus.JOB_STATUS_INITIALIZING]: 'INITIALIZING',
  [JobStatus.JOB_STATUS_RUNNING]: 'RUNNING',
  [JobStatus.JOB_STATUS_COMPLETED]: 'COMPLETED',
  [JobStatus.JOB_STATUS_FAILED]: 'FAILED',
  [JobStatus.JOB_STATUS_STOPPED]: 'STOPPED',
  [JobStatus.JOB_STATUS_TIMED_OUT]: 'TIMED_OUT',
  [JobStatus.JOB_STATUS_WAITING]: 'WAITING',
  [JobStatus.UNRECOGNIZED]: 'UNKNOWN',
};

export const statusName = (status: JobStatus): string => STATUS_NAMES[status] ?? 'UNKNOWN';

// ---------------------------------------------------------------------------
// JSON

/**
 * The --json shape of a job: proto3 JSON field names, but every field present
 * (null when unset) and the status without its enum prefix, so scripts can
 * read `.exitCode` or `.status == "COMPLETED"` without special cases.
 */
export function jobJson(job: Job) {
  return {
    id: job.id,
    name: job.name || null,
    status: statusName(job.status),
    command: job.command,
    args: job.args,
    labels: job.labels,
    owner: job.owner,
    pid: job.pid || null,
    cgroup: job.cgroup || null,
    limits: {
      maxCpuPercent: job.limits?.maxCpuPercent ?? null,
      maxMemoryMb: job.limits?.maxMemoryMb ?? null,
      maxIoBps: job.limits?.maxIoBps ?? null,
      maxPids: job.limits?.maxPids ?? null,
    },
    isolation: job.isolation
      ? {
          pidNamespace: job.isolation.pidNamespace ?? null,
          mountNamespace: job.isolation.mountNamespace ?? null,
          network: networkName(job.isolation.network),
          user: job.isolation.user,
          rootfs: job.isolation.rootfs || null,
        }
      : null,
    workdir: job.workdir || null,
    node: job.node || null,
    timeoutMs: job.timeoutMs || null,
    stdin: job.stdin,
    after: job.after.map((dependency) => ({ job: dependency.job, condition: dependency.condition === DependencyCondition.DEPENDENCY_CONDITION_ANY ? 'any' : 'ok' })),
    createdAt: (job.createdAt ?? job.startedAt)?.toISOString() ?? null,
    startedAt: job.startedAt?.toISOString() ?? null,
    endedAt: job.endedAt?.toISOString() ?? null,
    exitCode: job.exitCode ?? null,
    signal: job.signal || null,
    oomKilled: job.oomKilled,
    message: job.message || null,
    outputBytes: job.outputBytes,
    outputStart: job.outputStart,
    outputProblem: job.outputProblem || null,
    usage: job.usage ? { ...job.usage, sampledAt: job.usage.sampledAt?.toISOString() ?? null } : null,
  };
}

export const toJsonLine = (value: unknown): string => `${JSON.stringify(value)}\n`;

/** One line of `stream --json`. */
export function chunkJsonLine(chunk: DataChunk): string {
  const stream = chunk.stream === OutputStream.OUTPUT_STREAM_STDERR ? 'stderr' : 'stdout';
  const time = chunk.time ? { time: chunk.time.toISOString() } : {};
  return toJsonLine({ stream, offset: chunk.offset, ...time, data_base64: Buffer.from(chunk.data).toString('base64') });
}

// ---------------------------------------------------------------------------
// Text

/** "COMPLETED (exit 0)", "STOPPED (signal SIGTERM)", "RUNNING". */
export function statusLine(job: Job): string {
  const outcome = outcomeOf(job);
  return outcome ? `${statusName(job.status)} (${outcome})` : statusName(job.status);
}

function outcomeOf(job: Job): string | undefined {
  if (job.signal) return `signal ${job.signal}${job.oomKilled ? ', OOM killed' : ''}`;
  if (job.exitCode !== undefined) return `exit ${job.exitCode}${job.oomKilled ? ', OOM killed' : ''}`;
  return undefined;
}

/** The table of `jobctl list`: aligned columns, the command last and unpadded. */
export function jobTable(jobs: readonly Job[]): string {
  const fleet = inFleet(jobs);
  // Columns of what no job has stay out: a host that names nothing lists as before.
  const named = jobs.some((job) => job.name !== '');
  const labelled = jobs.some((job) => Object.keys(job.labels).length > 0);
  const header = ['ID', ...(named ? ['NAME'] : []), 'STATUS', ...(fleet ? ['NODE'] : []), 'EXIT', 'STARTED', ...(labelled ? ['LABELS'] : []), 'COMMAND'];
  const rows = jobs.map((job) => [
    job.id,
    ...(named ? [job.name || '-'] : []),
    statusName(job.status),
    ...(fleet ? [job.node] : []),
    exitColumn(job),
    formatTime(job.startedAt),
    ...(labelled ? [labelsText(job.labels)] : []),
    commandLine(job),
  ]);
  return alignColumns([header, ...rows]);
}

/** env=load,shard=3 (keys sorted); - for none. Label syntax leaves nothing to escape. */
export function labelsText(labels: Readonly<Record<string, string>>): string {
  const entries = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1));
  return entries.length === 0 ? '-' : entries.map(([key, value]) => `${key}=${value}`).join(',');
}

/** Jobs of a fleet carry their node: tables then have a NODE column (a single host's have none). */
const inFleet = (jobs: readonly Job[]): boolean => jobs.some((job) => job.node !== '');

function exitColumn(job: Job): string {
  if (job.signal) return job.signal;
  if (job.exitCode !== undefined) return String(job.exitCode);
  return '-';
}

/** A line of `jobctl top`: the job as last read, and its rates since the reading before. */
export interface TopRow extends JobRates {
  job: Job;
}

export function topTable(rows: readonly TopRow[], now: Date): string {
  const fleet = inFleet(rows.map((row) => row.job));
  const header = ['ID', 'STATUS', ...(fleet ? ['NODE'] : []), 'CPU%', 'MEM', 'IO/S', 'ELAPSED', 'COMMAND'];
  const lines = rows.map(({ job, cpuPercent, ioBytesPerSecond }) => [
    job.id,
    statusName(job.status),
    ...(fleet ? [job.node] : []),
    cpuPercent === null ? '-' : `${cpuPercent.toFixed(1)}%`,
    job.usage ? binaryBytes(job.usage.memoryBytes) : '-',
    ioBytesPerSecond === null ? '-' : `${binaryBytes(ioBytesPerSecond)}/s`,
    elapsed(job, now),
    commandLine(job),
  ]);
  return alignColumns([header, ...lines]);
}

export function topJson({ job, cpuPercent, ioBytesPerSecond }: TopRow, now: Date) {
  return {
    id: job.id,
    status: statusName(job.status),
    node: job.node || null,
    cpuPercent: cpuPercent === null ? null : Math.round(cpuPercent * 10) / 10,
    memoryBytes: job.usage?.memoryBytes ?? null,
    ioBytesPerSecond: ioBytesPerSecond === null ? null : Math.round(ioBytesPerSecond),
    elapsedSeconds: elapsedSeconds(job, now),
    command: job.command,
    args: job.args,
  };
}

/** 512 B, 3.4 KiB, 12.0 MiB, 1.5 GiB. */
function binaryBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Whole seconds from the job's start until now, or until its end. */
function elapsedSeconds(job: Job, now: Date): number | null {
  return job.startedAt ? Math.max(0, Math.floor(((job.endedAt ?? now).getTime() - job.startedAt.getTime()) / 1000)) : null;
}

/** 45s, 3m05s, 2h07m, 3d04h. */
function elapsed(job: Job, now: Date): string {
  const total = elapsedSeconds(job, now);
  if (total === null) return '-';
  const [d, h, m, s] = [Math.floor(total / 86400), Math.floor(total / 3600) % 24, Math.floor(total / 60) % 60, total % 60];
  const two = (n: number): string => String(n).padStart(2, '0');
  if (d > 0) return `${d}d${two(h)}h`;
  if (h > 0) return `${h}h${two(m)}m`;
  if (m > 0) return `${m}m${two(s)}s`;
  return `${s}s`;
}

function alignColumns(rows: readonly string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows
    .map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  '))
    .join('\n')
    .concat('\n');
}

/** The key/value view of `jobctl get`. */
export function jobDetail(job: Job): string {
  const fields: [string, string][] = [
    ['id', job.id],
    ['name', job.name || '-'],
    ['status', statusName(job.status)],
    ...(job.node ? ([['node', job.node]] as [string, string][]) : []),
    ['command', commandLine(job)],
    ['owner', escapeControl(job.owner) || '-'],
    ['pid', job.pid ? String(job.pid) : '-'],
    ['cgroup', escapeControl(job.cgroup) || '-'],
    ['limits', limitsText(job)],
    ['isolation', isolationText(job)],
    ['workdir', escapeControl(job.workdir) || '-'],
    ['labels', labelsText(job.labels)],
    ['timeout', job.timeoutMs ? formatDuration(job.timeoutMs) : '-'],
    ['stdin', job.stdin ? 'open for input' : '/dev/null'],
    ...(job.after.length > 0 ? ([['after', afterText(job)]] as [string, string][]) : []),
    ...(job.createdAt && job.createdAt.getTime() !== job.startedAt?.getTime() ? ([['created', formatTime(job.createdAt)]] as [string, string][]) : []),
    ['started', formatTime(job.startedAt)],
    ['ended', formatTime(job.endedAt)],
    ['exit code', job.exitCode === undefined ? '-' : String(job.exitCode)],
    ['signal', job.signal || '-'],
    ['oom killed', job.oomKilled ? 'yes' : 'no'],
    ['message', escapeControl(job.message) || '-'],
    ['output bytes', job.outputStart > 0 ? `${job.outputBytes} (the first ${job.outputStart} discarded)` : String(job.outputBytes)],
    ['output problem', escapeControl(job.outputProblem) || '-'],
    ...usageFields(job),
  ];
  const width = Math.max(...fields.map(([key]) => key.length)) + 1;
  return fields.map(([key, value]) => `${`${key}:`.padEnd(width)}  ${value}\n`).join('');
}

/** id:ok, id:any: what the job waited for. */
function afterText(job: Job): string {
  return job.after.map((dependency) => `${dependency.job}:${dependency.condition === DependencyCondition.DEPENDENCY_CONDITION_ANY ? 'any' : 'ok'}`).join(', ');
}

function limitsText(job: Job): string {
  const limits = job.limits;
  if (!limits) return '-';
  const io = limits.maxIoBps ? `${limits.maxIoBps} B/s` : 'unlimited';
  const pids = limits.maxPids ? String(limits.maxPids) : 'unlimited';
  return `cpu ${limits.maxCpuPercent}%, memory ${limits.maxMemoryMb} MiB, io ${io}, pids ${pids}`;
}

/** none, host; a value this jobctl does not know (from a newer server) as its number. */
function networkName(network: Network): string | null {
  if (network === Network.NETWORK_UNSPECIFIED) return null;
  const name = Network[network] as string | undefined;
  return name ? name.replace(/^NETWORK_/, '').toLowerCase() : String(network);
}

/** "user 65534:65534, network none, pid and mount namespaces" and so on; - for jobs recorded before isolation. */
function isolationText(job: Job): string {
  const isolation = job.isolation;
  if (!isolation) return '-';
  const namespaces = [isolation.pidNamespace && 'pid', isolation.mountNamespace && 'mount'].filter(Boolean).join(' and ');
  return [
    `user ${isolation.user}`,
    `network ${networkName(isolation.network) ?? '-'}`,
    namespaces ? `${namespaces} namespace${namespaces.includes(' and ') ? 's' : ''}` : "host's namespaces",
    ...(isolation.rootfs ? [`rootfs ${escapeControl(isolation.rootfs)}`] : []),
  ].join(', ');
}

function usageFields(job: Job): [string, string][] {
  const usage = job.usage;
  if (!usage) return [['usage', '-']];
  const now = job.endedAt ? '' : `${mebibytes(usage.memoryBytes)} now, `;
  return [
    ['cpu time', `${seconds(usage.cpuUsec)} (throttled ${seconds(usage.cpuThrottledUsec)})`],
    ['memory', `${now}peak ${mebibytes(usage.memoryPeakBytes)}`],
    ['block io', `read ${mebibytes(usage.ioReadBytes)}, written ${mebibytes(usage.ioWriteBytes)}`],
    ['usage read at', formatTime(usage.sampledAt)],
  ];
}

const seconds = (usec: number): string => `${(usec / 1e6).toFixed(3)} s`;
const mebibytes = (bytes: number): string => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;

/** ISO 8601 in UTC to the second: sortable, unambiguous across time zones. */
function formatTime(date: Date | undefined): string {
  return date ? date.toISOString().replace(/\.\d{3}Z$/, 'Z') : '-';
}

// ---------------------------------------------------------------------------
// Command lines

/** The job's argv as a shell would need it typed: `sh -c 'exit 3'`. */
export function commandLine(job: Pick<Job, 'command' | 'args'>): string {
  return [job.command, ...job.args].map(shellQuote).join(' ');
}

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;
// C0 controls, DEL and C1 controls (ESC-less CSI is 0x9b), and the invisible
// ones that reorder or hide text: zero-width characters, bidi embeddings,
// overrides and isolates, the byte-order mark.
const CONTROL_CLASS = '[\\u0000-\\u001f\\u007f-\\u009f\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2069\\ufeff]';
const CONTROL = new RegExp(CONTROL_CLASS);
const CONTROL_GLOBAL = new RegExp(CONTROL_CLASS, 'g');

export function shellQuote(word: string): string {
  if (SAFE_WORD.test(word)) return word;
  if (!CONTROL.test(word)) return `'${word.replace(/'/g, `'\\''`)}'`;
  // Bash's $'…' quoting spells control characters as escapes.
  return `$'${word.replace(/[\\']/g, '\\$&').replace(CONTROL_GLOBAL, hexEscape)}'`;
}

export function escapeControl(text: string): string {
  return text.replace(CONTROL_GLOBAL, hexEscape);
}

/** \\x1b, or \\u202e past 0xff: what bash's $'…' reads back. */
function hexEscape(char: string): string {
  const code = char.charCodeAt(0);
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

// ---------------------------------------------------------------------------
// Nodes (jobctl nodes)

const NODE_STATES: Readonly<Record<NodeState, string>> = {
  [NodeState.NODE_STATE_UNSPECIFIED]: 'unknown',
  [NodeState.NODE_STATE_READY]: 'ready',
  [NodeState.NODE_STATE_DRAINING]: 'draining',
  [NodeState.NODE_STATE_LOST]: 'lost',
  [NodeState.UNRECOGNIZED]: 'unknown',
};

export const nodeStateName = (state: NodeState): string => NODE_STATES[state] ?? 'unknown';

/** The --json shape of a quota: every limit present, null when not limited. */
export function quotaJson(quota: Quota) {
  const limits = quota.limits;
  return {
    owner: quota.owner,
    rule: quota.rule === '' ? null : quota.rule,
    ruleSource: quota.ruleSource === '' ? null : quota.ruleSource,
    limits: {
      running: limits?.running ?? null,
      cpuPercent: limits?.cpuPercent ?? null,
      memoryMb: limits?.memoryMb ?? null,
      outputBytes: limits?.outputBytes ?? null,
      rate: limits?.rateJobs === undefined ? null : { jobs: limits.rateJobs, windowSeconds: limits.rateWindowSeconds },
      calls: limits?.calls ?? null,
      rps: limits?.rps ?? null,
    },
    use: {
      running: quota.use?.running ?? 0,
      cpuPercent: quota.use?.cpuPercent ?? 0,
      memoryMb: quota.use?.memoryMb ?? 0,
      outputBytes: quota.use?.outputBytes ?? 0,
      created: quota.use?.created ?? 0,
      calls: quota.use?.calls ?? 0,
    },
  };
}

/** One line naming the owner and its rule, then a row per quota: its limit and the use. */
export function quotaTable(quota: Quota): string {
  const { limits, use } = quotaJson(quota);
  const rule = quota.rule === '' ? 'no quota applies: nothing is limited' : `rule ${escapeControl(quota.rule)} at ${escapeControl(quota.ruleSource)}`;
  const limit = <T>(value: T | null, text: (value: T) => string): string => (value === null ? '-' : text(value));
  const window = (seconds: number): string => (seconds === 1 ? 's' : seconds === 60 ? 'm' : seconds === 3600 ? 'h' : `${seconds}s`);
  const rows = [
    ['QUOTA', 'LIMIT', 'USE'],
    ['running', limit(limits.running, String), String(use.running)],
    ['cpu', limit(limits.cpuPercent, (v) => `${v}%`), `${use.cpuPercent}%`],
    ['memory', limit(limits.memoryMb, (v) => binaryBytes(v * 1024 * 1024)), binaryBytes(use.memoryMb * 1024 * 1024)],
    ['output', limit(limits.outputBytes, binaryBytes), binaryBytes(use.outputBytes)],
    ['rate', limit(limits.rate, (r) => `${r.jobs}/${window(r.windowSeconds)}`), limits.rate === null ? '-' : String(use.created)],
    ['calls', limit(limits.calls, String), String(use.calls)],
    ['rps', limit(limits.rps, String), '-'],
  ];
  return `${escapeControl(quota.owner)}: ${rule}\n${alignColumns(rows)}`;
}

/** The --json shape of a node: every field present, the state as the table spells it. */
export function nodeJson(node: Node) {
  return {
    name: node.name,
    address: node.address,
    labels: node.labels,
    state: nodeStateName(node.state),
    cores: node.cpuPercent / 100,
    cpuPercent: node.cpuPercent,
    memoryMb: node.memoryMb,
    reservedCpuPercent: node.reservedCpuPercent,
    reservedMemoryMb: node.reservedMemoryMb,
    runningJobs: node.runningJobs,
    lastHeartbeat: node.lastHeartbeat?.toISOString() ?? null,
    version: node.version,
  };
}

export function nodeTable(nodes: readonly Node[], now: Date): string {
  const header = ['NAME', 'STATE', 'ADDRESS', 'CPU', 'MEMORY', 'RESERVED', 'JOBS', 'HEARTBEAT', 'VERSION', 'LABELS'];
  const rows = nodes.map((node) => [
    node.name,
    nodeStateName(node.state),
    node.address,
    `${node.cpuPercent}%`,
    binaryBytes(node.memoryMb * 1024 * 1024),
    `${node.reservedCpuPercent}% ${binaryBytes(node.reservedMemoryMb * 1024 * 1024)}`,
    String(node.runningJobs),
    node.lastHeartbeat ? `${Math.max(0, (now.getTime() - node.lastHeartbeat.getTime()) / 1000).toFixed(1)}s ago` : '-',
    node.version,
    Object.entries(node.labels).map(([key, value]) => `${key}=${value}`).join(',') || '-',
  ]);
  return alignColumns([header, ...rows]);
}

// ---------------------------------------------------------------------------
// Schedules

const CONCURRENCY_NAMES: Readonly<Record<number, string>> = {
  [ConcurrencyPolicy.CONCURRENCY_POLICY_UNSPECIFIED]: 'allow',
  [ConcurrencyPolicy.CONCURRENCY_POLICY_ALLOW]: 'allow',
  [ConcurrencyPolicy.CONCURRENCY_POLICY_FORBID]: 'forbid',
  [ConcurrencyPolicy.CONCURRENCY_POLICY_REPLACE]: 'replace',
};
const OUTCOME_NAMES: Readonly<Record<number, string>> = {
  [FiringOutcome.FIRING_OUTCOME_STARTED]: 'STARTED',
  [FiringOutcome.FIRING_OUTCOME_SKIPPED]: 'SKIPPED',
  [FiringOutcome.FIRING_OUTCOME_FAILED]: 'FAILED',
  [FiringOutcome.FIRING_OUTCOME_STARTING]: 'STARTING',
};
const outcomeName = (outcome: FiringOutcome): string => OUTCOME_NAMES[outcome] ?? 'UNKNOWN';

/** The --json shape of a firing: the job's status without its prefix, null where unset. */
export function firingJson(firing: Firing) {
  return {
    slot: firing.slot?.toISOString() ?? null,
    firedAt: firing.firedAt?.toISOString() ?? null,
    outcome: outcomeName(firing.outcome),
    jobId: firing.jobId || null,
    jobStatus: firing.jobStatus === JobStatus.JOB_STATUS_UNSPECIFIED ? null : statusName(firing.jobStatus),
    reason: firing.reason || null,
    manual: firing.manual,
  };
}

/** The --json shape of a schedule. */
export function scheduleJson(schedule: Schedule) {
  const job = schedule.job;
  return {
    id: schedule.id,
    name: schedule.name || null,
    cron: schedule.cron,
    timezone: schedule.timezone || 'UTC',
    paused: schedule.paused,
    concurrency: CONCURRENCY_NAMES[schedule.concurrency] ?? 'allow',
    catchUp: schedule.catchUp === CatchUpPolicy.CATCH_UP_POLICY_NONE ? 'none' : 'once',
    catchUpWindowMs: schedule.catchUpWindowMs,
    owner: schedule.owner,
    createdAt: schedule.createdAt?.toISOString() ?? null,
    nextFiringAt: schedule.nextFiringAt?.toISOString() ?? null,
    job: job ? { command: job.command, args: job.args, labels: job.labels, env: job.env, workdir: job.workdir || null, timeoutMs: job.timeoutMs ?? null } : null,
    firings: schedule.firings.map(firingJson),
  };
}

/** The table of `jobctl schedule list`. */
export function scheduleTable(schedules: readonly Schedule[]): string {
  const header = ['ID', 'NAME', 'CRON', 'TIMEZONE', 'NEXT', 'LAST', 'COMMAND'];
  const rows = schedules.map((schedule) => {
    const last = schedule.firings[0];
    return [
      schedule.id,
      schedule.name || '-',
      escapeControl(schedule.cron),
      schedule.timezone || 'UTC',
      schedule.paused ? 'paused' : formatTime(schedule.nextFiringAt),
      last ? firingOutcomeText(last) : '-',
      schedule.job ? commandLine(schedule.job) : '-',
    ];
  });
  return alignColumns([header, ...rows]);
}

/** The key/value view of `jobctl schedule get`, then its last firings, newest first. */
export function scheduleDetail(schedule: Schedule): string {
  const fields: [string, string][] = [
    ['id', schedule.id],
    ['name', schedule.name || '-'],
    ['cron', escapeControl(schedule.cron)],
    ['timezone', schedule.timezone || 'UTC'],
    ['state', schedule.paused ? 'paused' : 'active'],
    ['next firing', schedule.paused ? '- (paused)' : formatTime(schedule.nextFiringAt)],
    ['concurrency', CONCURRENCY_NAMES[schedule.concurrency] ?? 'allow'],
    ['catch-up', schedule.catchUp === CatchUpPolicy.CATCH_UP_POLICY_NONE ? 'none' : `once, within ${formatDuration(schedule.catchUpWindowMs)}`],
    ['owner', escapeControl(schedule.owner)],
    ['created', formatTime(schedule.createdAt)],
    ['command', schedule.job ? commandLine(schedule.job) : '-'],
    ['labels', labelsText({ ...(schedule.job?.labels ?? {}), schedule: schedule.id })],
  ];
  const width = Math.max(...fields.map(([key]) => key.length)) + 1;
  const head = fields.map(([key, value]) => `${`${key}:`.padEnd(width)}  ${value}\n`).join('');
  if (schedule.firings.length === 0) return `${head}firings: none yet\n`;
  const rows = schedule.firings.map((firing) => [
    formatTime(firing.slot) + (firing.manual ? ' (run-now)' : ''),
    outcomeName(firing.outcome),
    firing.jobId || '-',
    firing.jobStatus === JobStatus.JOB_STATUS_UNSPECIFIED ? '-' : statusName(firing.jobStatus),
    escapeControl(firing.reason) || '-',
  ]);
  return `${head}firings:\n${alignColumns([['SLOT', 'OUTCOME', 'JOB', 'JOB STATUS', 'REASON'], ...rows])}`;
}

/** "STARTED (COMPLETED)", "SKIPPED": a firing in one word or two. */
export function firingOutcomeText(firing: Firing): string {
  const status = firing.jobStatus === JobStatus.JOB_STATUS_UNSPECIFIED ? '' : ` (${statusName(firing.jobStatus)})`;
  return `${outcomeName(firing.outcome)}${status}`;
}
