// Order statistics for benchmark samples. Figures are medians and
// percentiles, spreads min–max: means hide the outliers these machines have.

export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) throw new Error('no samples');
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export const median = (samples: readonly number[]): number => percentile(samples, 50);

/** Past this many times the median, the slowest sample makes a figure suspect. */
const NOISY = 5;

/** "min–max" with the given precision, marked when the samples are unusually spread. */
export function spread(samples: readonly number[], digits = 1): string {
  const max = Math.max(...samples);
  const noisy = max > NOISY * median(samples) ? ` (noisy: max > ${NOISY}× median)` : '';
  return `${Math.min(...samples).toFixed(digits)}–${max.toFixed(digits)}${noisy}`;
}

/** Milliseconds each of `count` sequential runs of `fn` took. */
export async function timeEach(count: number, fn: (i: number) => Promise<unknown>): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await fn(i);
    samples.push(performance.now() - started);
  }
  return samples;
}
