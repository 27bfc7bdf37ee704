// What a benchmark run produces: one row per figure, each beside its
// baseline — measured in the same run, or labelled for what it is (a goal,
// or extrapolated) — printed, written to bench/results.md and, with --json,
// to a file.
import fs from 'node:fs';
import os from 'node:os';

export interface Row {
  name: string;
  figure: number;
  unit: string;
  baseline: number | null;
  baseline_name: string | null;
  /**
   * measured: in this run, beside the figure; goal: a constant the figure
   * is held to, nothing measured; extrapolated: computed from a
   * measurement of this run (N × one reading). null without a baseline.
   */
  baseline_kind: BaselineKind | null;
  /** figure / baseline. */
  ratio: number | null;
  /** e.g. "ratio <= 3"; null when the issue sets none. */
  goal: string | null;
  met: boolean | null;
  /** min–max of the samples behind the figure. */
  spread: string;
}

export interface Machine {
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  cgroupDriver: string;
  date: string;
}

export function machine(cgroupDriver: string): Machine {
  return {
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    cgroupDriver,
    date: new Date().toISOString(),
  };
}

export type BaselineKind = 'measured' | 'goal' | 'extrapolated';

export interface Goal {
  text: string;
  maxRatio?: number;
  minRatio?: number;
}

/** A scenario that threw: reported in the table and the JSON, not left out. */
export function failedRow(scenario: string, message: string): Row {
  return { name: scenario, figure: Number.NaN, unit: '', baseline: null, baseline_name: null, baseline_kind: null, ratio: null, goal: null, met: false, spread: `FAILED: ${message}` };
}

export function row(fields: Omit<Row, 'ratio' | 'met' | 'goal' | 'baseline_kind'> & { goal?: Goal; baseline_kind?: BaselineKind }): Row {
  const ratio = fields.baseline ? fields.figure / fields.baseline : null;
  const { goal, ...rest } = fields;
  return {
    ...rest,
    baseline_kind: fields.baseline === null ? null : (fields.baseline_kind ?? 'measured'),
    ratio,
    goal: goal?.text ?? null,
    met: goal && ratio !== null ? ratio <= (goal.maxRatio ?? Infinity) && ratio >= (goal.minRatio ?? 0) : null,
  };
}

/** A table cell: a `|` inside would end it. */
const cell = (text: string): string => text.replace(/\|/g, '\\|');

const fmt = (value: number | null, digits = 2): string =>
  value === null || Number.isNaN(value) ? '-' : value >= 100 ? value.toFixed(0) : value.toFixed(digits);

export function markdown(rows: readonly Row[], info: Machine): string {
  const lines = [
    '# Benchmark results',
    '',
    '`npm run bench` wrote this file; rerun it to refresh.',
    '',
    `${info.cores} cores, ${info.memoryGiB} GiB, Linux ${info.kernel}, Node ${info.node}, cgroup ${info.cgroupDriver}, ${info.date}.`,
    'Ratio = figure / baseline. A baseline is measured in the same run, beside the figure, unless the table says otherwise: a *goal* is a constant the figure is held to (nothing is measured for it), an *extrapolated* one is computed from a measurement of the same run. Spread is min–max of the samples (or what else the row says), marked noisy when the slowest passes 5× the median.',
    '',
    '| scenario | figure | baseline | ratio | goal | met | spread |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) =>
      [
        '',
        cell(r.name),
        `${fmt(r.figure)} ${r.unit}`,
        r.baseline === null ? '-' : cell(`${fmt(r.baseline)} ${r.unit} (${r.baseline_name}${r.baseline_kind === 'measured' ? '' : `; ${r.baseline_kind === 'goal' ? '*goal*: a constant' : '*extrapolated*'}`})`),
        r.ratio === null ? '-' : `${fmt(r.ratio)}×`,
        r.goal ?? '-',
        r.met === null ? '-' : r.met ? 'yes' : '**no**',
        cell(r.spread),
        '',
      ].join(' | ').trim(),
    ),
    '',
  ];
  return lines.join('\n');
}

export function writeJson(file: string, info: Machine, rows: readonly Row[]): void {
  fs.writeFileSync(file, `${JSON.stringify({ machine: info, scenarios: rows }, null, 2)}\n`);
}
