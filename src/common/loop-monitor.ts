// How a thread's event loop is doing, in fixed windows: the lag a timer
// would see (p99 and max) and the share of the time the loop was busy.
// Windows rather than since-start figures, so that a slow minute shows
// instead of being averaged away by a quiet day.
import { createHistogram, performance, type EventLoopUtilization } from 'node:perf_hooks';

export const LOOP_WINDOW_MS = 10_000;
/** How often the lag is sampled: each sample is how late this timer fired. */
const RESOLUTION_MS = 10;

/** One window of a thread's event loop. */
export interface LoopWindow {
  lagP99Seconds: number;
  lagMaxSeconds: number;
  /** Share of the window the loop was busy, 0 to 1. */
  utilization: number;
}

/**
 * Calls `report` with every finished window (and once at start, with
 * zeros). Its timers are unref'd: they never keep a thread alive. Not
 * monitorEventLoopDelay(): its reset() also forgets when it last ticked, so
 * a stall that ends as a window closes — both timers due at once — was
 * dropped from both windows. Here the sampler keeps its own last tick.
 */
export function monitorLoop(report: (window: LoopWindow) => void, windowMs = LOOP_WINDOW_MS): () => void {
  const lags = createHistogram();
  let lastTick = performance.now();
  const sampler = setInterval(() => {
    const now = performance.now();
    // Nanoseconds, at least 1 (the histogram's floor).
    lags.record(Math.max(1, Math.round((now - lastTick - RESOLUTION_MS) * 1e6)));
    lastTick = now;
  }, RESOLUTION_MS);
  sampler.unref();
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  report({ lagP99Seconds: 0, lagMaxSeconds: 0, utilization: 0 });
  const reporter = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const seconds = (ns: number): number => (ns <= 1 ? 0 : ns / 1e9);
    report({
      lagP99Seconds: lags.count > 0 ? seconds(lags.percentile(99)) : 0,
      lagMaxSeconds: lags.count > 0 ? seconds(lags.max) : 0,
      utilization: performance.eventLoopUtilization(now, last).utilization,
    });
    last = now;
    lags.reset();
  }, windowMs);
  reporter.unref();
  return () => {
    clearInterval(sampler);
    clearInterval(reporter);
  };
}
