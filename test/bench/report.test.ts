// What a benchmark run reports: failures and noise are shown, not hidden.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { failedRow, markdown, row, writeJson, type Machine } from '../../bench/report.js';
import { spread } from '../../bench/stats.js';

const info: Machine = { cores: 2, memoryGiB: 24, kernel: '6.1', node: 'v20', cgroupDriver: 'v1', date: '2026-11-29T00:00:00Z' };

test('a failed scenario is a FAILED row in the table and a null figure in the JSON', (t) => {
  const rows = [row({ name: 'ok | fine', figure: 2, unit: 'ms', baseline: 1, baseline_name: 'floor', goal: { text: 'ratio ≤ 3', maxRatio: 3 }, spread: '1.0–3.0' }), failedRow('3. flood', 'server died')];
  const table = markdown(rows, info);
  t.regex(table, /\| ok \\\| fine \| 2\.00 ms \| 1\.00 ms \(floor\) \| 2\.00× \| ratio ≤ 3 \| yes \|/);
  t.regex(table, /\| 3\. flood \| - +\| - \| - \| - \| \*\*no\*\* \| FAILED: server died \|/);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'jobworker-report-')), 'out.json');
  t.teardown(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));
  writeJson(file, info, rows);
  const json = JSON.parse(fs.readFileSync(file, 'utf8')) as { scenarios: { name: string; figure: number | null; met: boolean; spread: string }[] };
  t.like(json.scenarios[1], { name: '3. flood', figure: null, met: false, spread: 'FAILED: server died' });
});

test('a spread whose slowest sample passes 5× the median is marked noisy', (t) => {
  t.is(spread([1, 2, 2, 3]), '1.0–3.0');
  t.is(spread([1, 2, 2, 30]), '1.0–30.0 (noisy: max > 5× median)');
});
