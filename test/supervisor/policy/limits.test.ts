import test from 'ava';
import { JobworkerError } from '../../../src/supervisor/errors.js';
import { resolveLimits } from '../../../src/supervisor/policy/limits.js';

const host = { cores: 2, memoryBytes: 8 * 1024 ** 3 };
const MIB = 1024 * 1024;

test('limits: zero and missing fields take the server defaults', (t) => {
  t.deepEqual(resolveLimits(undefined, host), { cpuPercent: 100, memoryBytes: 512 * MIB, ioBps: 0, pids: 4096 });
  t.deepEqual(resolveLimits({ maxCpuPercent: 0, maxMemoryMb: 0, maxIoBps: 0 }, host), { cpuPercent: 100, memoryBytes: 512 * MIB, ioBps: 0, pids: 4096 });
});

test('limits: values within range are kept', (t) => {
  t.deepEqual(resolveLimits({ maxCpuPercent: 200, maxMemoryMb: 4, maxIoBps: 1_000_000, maxPids: 0 }, host), { cpuPercent: 200, memoryBytes: 4 * MIB, ioBps: 1_000_000, pids: 0 });
  t.deepEqual(resolveLimits({ maxCpuPercent: 1, maxMemoryMb: 8192, maxIoBps: 1, maxPids: 64 }, host), { cpuPercent: 1, memoryBytes: 8192 * MIB, ioBps: 1, pids: 64 });
});

const rejects = test.macro({
  exec(t, limits: { maxCpuPercent: number; maxMemoryMb: number; maxIoBps: number; maxPids?: number }, message: RegExp) {
    const err = t.throws(() => resolveLimits(limits, host), { instanceOf: JobworkerError });
    t.is(err?.code, 'INVALID_LIMITS');
    t.regex(err!.message, message);
  },
  title: (title) => `limits: rejects ${title}`,
});

test('cpu above cores x 100', rejects, { maxCpuPercent: 201, maxMemoryMb: 0, maxIoBps: 0 }, /max_cpu_percent must be from 1 to 200 \(2 cores\), got 201/);
test('negative cpu', rejects, { maxCpuPercent: -5, maxMemoryMb: 0, maxIoBps: 0 }, /max_cpu_percent .* got -5/);
test('memory below 4 MB', rejects, { maxCpuPercent: 0, maxMemoryMb: 3, maxIoBps: 0 }, /max_memory_mb must be from 4 to 8192 .* got 3/);
test("memory above the host's", rejects, { maxCpuPercent: 0, maxMemoryMb: 8193, maxIoBps: 0 }, /got 8193/);
test('negative io', rejects, { maxCpuPercent: 0, maxMemoryMb: 0, maxIoBps: -1 }, /max_io_bps .* got -1/);
test('pids above the kernel ceiling', rejects, { maxCpuPercent: 0, maxMemoryMb: 0, maxIoBps: 0, maxPids: 5_000_000 }, /max_pids must be 0 \(unlimited\) or from 1 to 4194304, got 5000000/);
test('fractional cpu', rejects, { maxCpuPercent: 1.5, maxMemoryMb: 0, maxIoBps: 0 }, /got 1.5/);
