// Quotas (--quota-file): how much each caller may use at once, by the CN of
// its certificate, its role, or a default. One rule a line; the most
// specific rule that matches a caller is the one that applies, whole (cn,
// then role, then default): a rule for alice says everything alice may do,
// and what it leaves out is not limited for her.
//
//   # who           limits (any subset)
//   default         running=100
//   role=admin      running=50 cpu=800 memory=16384
//   cn=alice        running=2 cpu=150 memory=512 output=1G rate=60/m
//
// This module is the file and its rules; policy/quota-checks.ts says what a
// rule makes of the use, which jobs/quota-ledger.ts counts on a single host
// and fleet/quota-use.ts in a fleet's etcd.
import { parseBytes } from '../../common/units.js';

/** What one rule limits; a limit left out is not limited. */
export interface QuotaLimits {
  /** Jobs of the caller running (or starting) at once. */
  running?: number;
  /** The --max-cpu of its running jobs together, in percent of one core (800 = 8 cores). */
  cpuPercent?: number;
  /** The --max-memory of its running jobs together, in MiB. */
  memoryMb?: number;
  /** Output of its jobs kept (running and ended), in bytes: past it, no new job. */
  outputBytes?: number;
  /** Jobs created per window. */
  rate?: { jobs: number; windowMs: number };
  /** Calls of the caller in flight at once (any RPC). */
  calls?: number;
  /** Calls of the caller begun per second (any RPC). */
  rps?: number;
}

/** Who a rule is for, as the file names it: "default", "role=admin", "cn=alice". */
export type QuotaSubject = 'default' | `role=${string}` | `cn=${string}`;

export interface QuotaRule {
  subject: QuotaSubject;
  limits: QuotaLimits;
  /** "quotas.conf:4", for messages. */
  where: string;
}

export class QuotaFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QuotaFileError';
  }
}

/** The caller a rule is looked up for. */
export interface QuotaCaller {
  cn: string;
  role: string | null;
}

/** The roles a rule may name: those of callers (a fleet node's own certificate, OU node, makes no calls of its own). */
const ROLES: readonly string[] = ['admin', 'viewer'];
const KEYS = ['running', 'cpu', 'memory', 'output', 'rate', 'calls', 'rps'] as const;
type Key = (typeof KEYS)[number];
const WINDOW_MS = { s: 1_000, m: 60_000, h: 3_600_000 } as const;
/** The most any count may say: far past what a host runs, small enough to add up exactly. */
const MAX_COUNT = 1_000_000_000;

export class QuotaRules {
  static readonly NONE = new QuotaRules([]);

  readonly #byCn = new Map<string, QuotaRule>();
  readonly #byRole = new Map<string, QuotaRule>();
  readonly #default: QuotaRule | undefined;

  private constructor(readonly rules: readonly QuotaRule[]) {
    let fallback: QuotaRule | undefined;
    for (const rule of rules) {
      if (rule.subject === 'default') fallback = rule;
      else if (rule.subject.startsWith('role=')) this.#byRole.set(rule.subject.slice('role='.length), rule);
      else this.#byCn.set(rule.subject.slice('cn='.length), rule);
    }
    this.#default = fallback;
  }

  /**
   * The file's text as rules. Every problem is a QuotaFileError naming
   * `source:line` and what was wrong: a typo must not silently leave a
   * caller unlimited.
   */
  static parse(text: string, source: string): QuotaRules {
    const rules: QuotaRule[] = [];
    const seen = new Map<string, string>();
    text.split('\n').forEach((raw, index) => {
      const line = raw.replace(/#.*$/, '').trim();
      if (line === '') return;
      const where = `${source}:${index + 1}`;
      const fail = (problem: string): never => {
        throw new QuotaFileError(`${where}: ${problem}`);
      };
      const [who, ...fields] = line.split(/\s+/);
      const subject = parseSubject(who!) ?? fail(`expected "default", "role=<role>" or "cn=<common name>" first, got ${JSON.stringify(who)}`);
      if (subject.startsWith('role=') && !ROLES.includes(subject.slice('role='.length))) {
        fail(`unknown role in ${JSON.stringify(who)}: a rule names ${ROLES.map((role) => `role=${role}`).join(' or ')} (a certificate's OU)`);
      }
      const earlier = seen.get(subject);
      if (earlier) fail(`a second rule for ${subject} (the first is at ${earlier})`);
      seen.set(subject, where);
      if (fields.length === 0) fail(`the rule for ${subject} sets no limit (${KEYS.join(', ')})`);
      const limits: QuotaLimits = {};
      const given = new Set<Key>();
      for (const field of fields) {
        const eq = field.indexOf('=');
        const key = field.slice(0, eq) as Key;
        const value = field.slice(eq + 1);
        if (eq < 0 || !KEYS.includes(key)) fail(`unknown limit ${JSON.stringify(field)}: expected key=value, key one of ${KEYS.join(', ')}`);
        if (given.has(key)) fail(`${key} is given twice`);
        given.add(key);
        const problem = setLimit(limits, key, value);
        if (problem) fail(`${key}=${value}: ${problem}`);
      }
      rules.push({ subject, limits, where });
    });
    return new QuotaRules(rules);
  }

  get size(): number {
    return this.rules.length;
  }

  /** The rule that applies to the caller: its CN's, else its role's, else the default; undefined: none. */
  ruleFor(caller: QuotaCaller): QuotaRule | undefined {
    return this.#byCn.get(caller.cn) ?? (caller.role === null ? undefined : this.#byRole.get(caller.role)) ?? this.#default;
  }
}

function parseSubject(who: string): QuotaSubject | null {
  if (who === 'default') return 'default';
  const match = /^(role|cn)=(.+)$/.exec(who);
  return match ? (`${match[1]}=${match[2]}` as QuotaSubject) : null;
}

/** Sets limits[key] from its text; a problem, or null. */
function setLimit(limits: QuotaLimits, key: Key, value: string): string | null {
  if (key === 'output') {
    const bytes = parseBytes(value);
    if (bytes === null) return 'expected a size such as 500M, 1G or 1073741824';
    limits.outputBytes = bytes;
    return null;
  }
  if (key === 'rate') {
    const match = /^(\d+)\/(s|m|h)$/.exec(value);
    if (!match || Number(match[1]) > MAX_COUNT) return 'expected jobs per second, minute or hour, such as 60/m';
    limits.rate = { jobs: Number(match[1]), windowMs: WINDOW_MS[match[2] as keyof typeof WINDOW_MS] };
    return null;
  }
  if (!/^\d+$/.test(value) || Number(value) > MAX_COUNT) return `expected a whole number from 0 to ${MAX_COUNT}`;
  const count = Number(value);
  if (key === 'running') limits.running = count;
  else if (key === 'cpu') limits.cpuPercent = count;
  else if (key === 'memory') limits.memoryMb = count;
  else if (key === 'calls') limits.calls = count;
  else limits.rps = count;
  return null;
}
