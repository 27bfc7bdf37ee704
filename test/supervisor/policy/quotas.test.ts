// The quota file (--quota-file): its rules, which one applies to a caller,
// and a precise error, naming file:line, for anything it cannot take.
import test from 'ava';
import { QuotaFileError, QuotaRules } from '../../../src/supervisor/policy/quotas.js';
import { CallQuota } from '../../../src/supervisor/rpc/call-quota.js';

const EXAMPLE = `# who           limits (any subset)
default         running=100
role=admin      running=50 cpu=800 memory=16384

cn=alice        running=2 cpu=150 memory=512 output=1G rate=60/m calls=32 rps=200   # a careful harness
`;

test('quotas: the most specific rule applies, whole: cn, then role, then default', (t) => {
  const rules = QuotaRules.parse(EXAMPLE, 'q.conf');
  t.is(rules.size, 3);
  t.deepEqual(rules.ruleFor({ cn: 'alice', role: 'viewer' }), {
    subject: 'cn=alice',
    where: 'q.conf:5',
    limits: { running: 2, cpuPercent: 150, memoryMb: 512, outputBytes: 1024 ** 3, rate: { jobs: 60, windowMs: 60_000 }, calls: 32, rps: 200 },
  });
  t.deepEqual(rules.ruleFor({ cn: 'bob', role: 'admin' })?.limits, { running: 50, cpuPercent: 800, memoryMb: 16384 });
  t.like(rules.ruleFor({ cn: 'bob', role: 'viewer' }), { subject: 'default', where: 'q.conf:2', limits: { running: 100 } });
  t.like(rules.ruleFor({ cn: 'carol', role: null }), { subject: 'default' });
  t.is(QuotaRules.parse('role=admin running=1\n', 'q').ruleFor({ cn: 'x', role: 'viewer' }), undefined, 'no default: nobody else is limited');
  t.is(QuotaRules.parse('# nothing\n\n', 'q').size, 0);
  t.deepEqual(QuotaRules.parse('default rate=5/s\ncn=b rate=100/h output=500M running=0', 'q').rules.map((r) => r.limits), [
    { rate: { jobs: 5, windowMs: 1_000 } },
    { rate: { jobs: 100, windowMs: 3_600_000 }, outputBytes: 500 * 1024 ** 2, running: 0 },
  ]);
});

test('quotas: anything the file cannot take is an error naming file:line and what was wrong', (t) => {
  const cases: [string, string][] = [
    ['default running=1\nuser=alice running=2', 'q.conf:2: expected "default", "role=<role>" or "cn=<common name>" first, got "user=alice"'],
    ['cn=alice', 'q.conf:1: the rule for cn=alice sets no limit (running, cpu, memory, output, rate, calls, rps)'],
    ['role=Admin running=1', 'q.conf:1: unknown role in "role=Admin": a rule names role=admin or role=viewer (a certificate\'s OU)'],
    ['role=node running=1', 'q.conf:1: unknown role in "role=node": a rule names role=admin or role=viewer (a certificate\'s OU)'],
    ['cn=alice runing=2', 'q.conf:1: unknown limit "runing=2": expected key=value, key one of running, cpu, memory, output, rate, calls, rps'],
    ['cn=alice running', 'q.conf:1: unknown limit "running": expected key=value, key one of running, cpu, memory, output, rate, calls, rps'],
    ['cn=alice running=2 running=3', 'q.conf:1: running is given twice'],
    ['cn=alice running=-1', 'q.conf:1: running=-1: expected a whole number from 0 to 1000000000'],
    ['cn=alice memory=1.5', 'q.conf:1: memory=1.5: expected a whole number from 0 to 1000000000'],
    ['cn=alice output=lots', 'q.conf:1: output=lots: expected a size such as 500M, 1G or 1073741824'],
    ['cn=alice rate=60', 'q.conf:1: rate=60: expected jobs per second, minute or hour, such as 60/m'],
    ['cn=alice rate=60/d', 'q.conf:1: rate=60/d: expected jobs per second, minute or hour, such as 60/m'],
    ['\n# two for one\ncn=alice running=1\ncn=alice cpu=100', 'q.conf:4: a second rule for cn=alice (the first is at q.conf:3)'],
  ];
  for (const [text, message] of cases) {
    const err = t.throws(() => QuotaRules.parse(text, 'q.conf'), { instanceOf: QuotaFileError });
    t.is(err?.message, message);
  }
});

test('calls: past calls= in flight or rps= a second a call is refused at once, and admitted again when one ends or time passes', (t) => {
  const quota = new CallQuota();
  quota.rules = QuotaRules.parse('cn=alice calls=2\ncn=bob rps=10', 'q.conf');
  const alice = { cn: 'alice', role: 'admin' };
  const first = quota.enter(alice);
  const second = quota.enter(alice);
  const refused = t.throws(() => quota.enter(alice));
  t.is(refused?.message, 'quota exceeded: calls in flight: limit 2, cn=alice has 2 open (rule cn=alice at q.conf:1)');
  t.is((refused as { code?: string }).code, 'QUOTA_EXCEEDED');
  t.notThrows(() => quota.enter({ cn: 'carol', role: 'admin' }), 'another caller is not counted with alice');
  first();
  first();
  const third = quota.enter(alice);
  t.throws(() => quota.enter(alice), undefined, 'leaving twice frees one place, not two');
  second();
  third();

  const bob = { cn: 'bob', role: 'admin' };
  for (let i = 0; i < 10; i++) quota.enter(bob, 1_000)();
  t.is(t.throws(() => quota.enter(bob, 1_000))?.message, 'quota exceeded: calls per second: limit 10, cn=bob is past it (rule cn=bob at q.conf:2)');
  quota.enter(bob, 1_100)();
  t.throws(() => quota.enter(bob, 1_100), undefined, 'a tenth of a second gives back one call');
  for (let i = 0; i < 10; i++) quota.enter(bob, 3_000)();
  t.throws(() => quota.enter(bob, 3_000), undefined, 'a quiet spell gives back at most a second of calls');
});
