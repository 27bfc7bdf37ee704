// What every jobctl command shares: the global options (flag > env >
// default), the typanion validators that check flags as they are parsed, and
// the base class that opens the connection, runs the command and turns any
// failure into one line on stderr and an exit code.
import { parseLabels } from '../src/common/labels.js';
import { Command, Option } from 'clipanion';
import * as t from 'typanion';
import { MAX_GRACE_MS, MAX_PAGE_SIZE, MAX_TIMEOUT_MS } from '../src/common/api-limits.js';
import { jobNameProblem, parseDependency, type DependencyRef } from '../src/common/job-refs.js';
import { DependencyCondition, type Dependency } from '../src/gen/jobworker/v1/jobworker.js';
import { ENV_ENTRY } from '../src/common/env-entry.js';
import { formatDuration, parseDuration } from '../src/common/units.js';
import { connect, type JobworkerClient } from '../src/client/client.js';
import { describeError } from './errors.js';

export const DEFAULT_SERVER = '127.0.0.1:50051';

// ---------------------------------------------------------------------------
// Validators. Each failure message names what was expected and the value
// given; clipanion prefixes it with "Invalid value for <flag>".

/** Pushes an error the way typanion's own predicates do (path ": " message). */
function fail(state: t.ValidationState | undefined, message: string): false {
  state?.errors?.push(`${state.p ?? '.'}: ${message}`);
  return false;
}

/**
 * A decimal integer from min to max. Written by hand rather than with
 * t.isNumber() so that "1e3", "0x10" or " 5" are refused and the message says
 * the range in the flag's own terms.
 */
export function isIntegerIn(min: number, max: number, unit: string): t.StrictValidator<unknown, number> {
  const expected = max === Number.MAX_SAFE_INTEGER ? `an integer of at least ${min}${unit}` : `an integer from ${min} to ${max}${unit}`;
  return t.makeValidator<unknown, number>({
    test: (value, state): value is number => {
      const parsed = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : Number.NaN;
      if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
        return fail(state, `expected ${expected}, got ${JSON.stringify(value)}`);
      }
      if (typeof value === 'string') {
        // clipanion hands validators the raw string and applies the coercion
        // afterwards; without a coercion slot the value cannot be converted.
        if (state?.coercions === undefined || state.coercion === undefined) return fail(state, 'unbound coercion result');
        state.coercions.push([state.p ?? '.', state.coercion.bind(null, parsed)]);
      }
      return true;
    },
  });
}

/**
 * Only the form and the hard floors are checked here: the ceilings (cores×100,
 * the host's memory) belong to the server's host, not the one jobctl runs on,
 * and the server reports them. proto3 carries these as uint32.
 */
const UINT32_MAX = 0xffff_ffff;

export const isCpuPercent = isIntegerIn(1, UINT32_MAX, ' (percent of one CPU core)');
export const isMemoryMb = isIntegerIn(4, UINT32_MAX, ' (MiB)');
export const isPids = isIntegerIn(0, UINT32_MAX, ' (processes; 0 is unlimited)');
export const isIoBps = isIntegerIn(0, Number.MAX_SAFE_INTEGER, ' (bytes/s; 0 is unlimited)');
/** The server refuses grace periods over 10 minutes. */
export const isGraceMs = isIntegerIn(0, MAX_GRACE_MS, ' (milliseconds)');

/** Lines, as `tail -n` counts them; proto3 carries it as uint32. */
export const isLineCount = isIntegerIn(0, UINT32_MAX, ' (lines)');
/** How many jobs `list --limit` prints; as many as the server's largest page (page_size). */
export const isJobCount = isIntegerIn(1, MAX_PAGE_SIZE, ' (jobs)');

/**
 * A point in time: a duration back from now ("90s", "10m", "2h", "1d") or
 * an ISO 8601 / RFC 3339 time with its zone ("2026-11-29T12:00:00Z").
 */
export function parseSince(value: string): Date | null {
  const duration = parseDuration(value);
  if (duration !== null) return new Date(Date.now() - duration);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value)) return null;
  const time = Date.parse(value);
  return Number.isNaN(time) ? null : new Date(time);
}

/** Parses as it checks (see isIntegerIn): the flag's value is the Date. */
export const isSince = t.makeValidator<unknown, Date>({
  test: (value, state): value is Date => {
    const since = typeof value === 'string' ? parseSince(value) : null;
    if (!since) return fail(state, `expected a duration back from now (90s, 10m, 2h, 1d) or a time such as 2026-11-29T12:00:00Z, got ${JSON.stringify(value)}`);
    if (state?.coercions === undefined || state.coercion === undefined) return fail(state, 'unbound coercion result');
    state.coercions.push([state.p ?? '.', state.coercion.bind(null, since)]);
    return true;
  },
});

/** Every entry NAME=value, as the server takes them. */
export const isEnvEntries = t.makeValidator<unknown, string[]>({
  test: (value, state): value is string[] => {
    const bad = Array.isArray(value) ? value.find((entry) => typeof entry !== 'string' || !ENV_ENTRY.test(entry)) : value;
    return bad === undefined || fail(state, `expected NAME=value, got ${JSON.stringify(bad)}`);
  },
});

/** The labels of flags isLabelEntries has checked. */
export function labelsOf(entries: readonly string[]): Record<string, string> {
  return (parseLabels(entries) as { labels: Record<string, string> }).labels;
}

/** A duration such as 30s, 10m, 2h (jobctl --timeout): milliseconds, from 1 ms to MAX_TIMEOUT_MS. */
export const isTimeout = t.makeValidator<unknown, number>({
  test: (value, state): value is number => {
    const ms = typeof value === 'string' ? parseDuration(value) : null;
    if (ms === null || !Number.isInteger(ms) || ms < 1 || ms > MAX_TIMEOUT_MS) {
      return fail(state, `expected a duration from 1ms to ${formatDuration(MAX_TIMEOUT_MS)} such as 30s, 10m or 2h, got ${JSON.stringify(value)}`);
    }
    if (state?.coercions === undefined || state.coercion === undefined) return fail(state, 'unbound coercion result');
    state.coercions.push([state.p ?? '.', state.coercion.bind(null, ms)]);
    return true;
  },
});

/** A job's name (jobctl --name), by the server's rules. */
export const isJobName = t.makeValidator<unknown, string>({
  test: (value, state): value is string => {
    const problem = typeof value === 'string' ? jobNameProblem(value) : 'expected a job name';
    return problem === null || fail(state, problem);
  },
});

/** ID|NAME[:ok|:any] each (jobctl create --after). */
export const isDependencies = t.makeValidator<unknown, string[]>({
  test: (value, state): value is string[] => {
    if (!Array.isArray(value)) return fail(state, `expected ID|NAME[:ok|:any], got ${JSON.stringify(value)}`);
    for (const entry of value as unknown[]) {
      const parsed = typeof entry === 'string' ? parseDependency(entry) : { problem: `expected ID|NAME[:ok|:any], got ${JSON.stringify(entry)}` };
      if ('problem' in parsed) return fail(state, parsed.problem);
    }
    return true;
  },
});

/** The dependencies of flags isDependency has checked, as CreateJobReq.after takes them. */
export function dependenciesOf(entries: readonly string[]): Dependency[] {
  return entries.map((entry) => {
    const { job, condition } = parseDependency(entry) as DependencyRef;
    return { job, condition: condition === 'any' ? DependencyCondition.DEPENDENCY_CONDITION_ANY : DependencyCondition.DEPENDENCY_CONDITION_OK };
  });
}

/** key=value pairs (jobctl --constraint), by the rules of node labels. */
export const isLabelEntries = t.makeValidator<unknown, string[]>({
  test: (value, state): value is string[] => {
    if (!Array.isArray(value)) return fail(state, `expected key=value, got ${JSON.stringify(value)}`);
    const parsed = parseLabels(value as string[]);
    return 'labels' in parsed || fail(state, parsed.problem);
  },
});

/** Seconds between `jobctl top` readings: 0.2 to 3600, decimals allowed. */
export const isIntervalSeconds = t.makeValidator<unknown, number>({
  test: (value, state): value is number => {
    const seconds = typeof value === 'string' && /^\d+(\.\d+)?$/.test(value) ? Number(value) : Number.NaN;
    if (!(seconds >= 0.2 && seconds <= 3600)) return fail(state, `expected seconds from 0.2 to 3600 such as 2 or 0.5, got ${JSON.stringify(value)}`);
    if (state?.coercions === undefined || state.coercion === undefined) return fail(state, 'unbound coercion result');
    state.coercions.push([state.p ?? '.', state.coercion.bind(null, seconds)]);
    return true;
  },
});

/** host:port, with IPv6 hosts in brackets ([::1]:50051); several, comma-separated (nodes of a fleet). */
export const isServerAddress = t.makeValidator<unknown, string>({
  test: (value, state): value is string => {
    const addresses = typeof value === 'string' ? value.split(',') : [];
    const valid = (address: string): boolean => {
      if (!/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$/.test(address)) return false;
      const port = Number(address.slice(address.lastIndexOf(':') + 1));
      return port >= 1 && port <= 65535;
    };
    if (addresses.length > 0 && addresses.every(valid)) return true;
    return fail(state, `expected host:port such as ${DEFAULT_SERVER}, or several comma-separated, got ${JSON.stringify(value)}`);
  },
});

// ---------------------------------------------------------------------------
// The base class

export abstract class JobctlCommand extends Command {
  server = Option.String('--server', DEFAULT_SERVER, {
    env: 'JOBWORKER_SERVER',
    description: `Server address, host:port; several comma-separated (nodes of a fleet) are tried in turn when one is unavailable (env JOBWORKER_SERVER; default ${DEFAULT_SERVER})`,
    validator: isServerAddress,
  });
  ca = Option.String('--ca', 'certs/ca-cert.pem', {
    env: 'JOBWORKER_CA',
    description: 'CA certificate the server certificate must chain to (env JOBWORKER_CA)',
  });
  cert = Option.String('--cert', 'certs/client-admin-cert.pem', {
    env: 'JOBWORKER_CERT',
    description: 'Client certificate; its OU is your role (env JOBWORKER_CERT)',
  });
  key = Option.String('--key', 'certs/client-admin-key.pem', {
    env: 'JOBWORKER_KEY',
    description: 'Private key of the client certificate (env JOBWORKER_KEY)',
  });
  json = Option.Boolean('--json', false, { description: 'Print JSON instead of text' });

  /** The command's work; returns the exit code. Errors it throws are reported by execute(). */
  protected abstract run(client: JobworkerClient): Promise<number>;

  override async execute(): Promise<number> {
    let client: JobworkerClient | undefined;
    try {
      client = connect({ server: this.server, ca: this.ca, cert: this.cert, key: this.key });
      return await this.run(client);
    } catch (err) {
      const { message, exitCode } = describeError(err);
      if (message !== undefined) this.context.stderr.write(`jobctl: ${message}\n`);
      return exitCode;
    } finally {
      client?.close();
    }
  }
}
