// How a thread's event loop is doing, in fixed windows: the lag a timer
// would see (p99 and max) and the share of the time the loop was busy.
// Windows rather than since-start figures, so that a slow minute shows
// instead of being averaged away by a quiet day.
import { monitorEventLoopDelay, performance, type EventLoopUtilization } from 'node:perf_hooks';

export const LOOP_WINDOW_MS = 10_000;

/** One window of a thread's event loop. */
export interface LoopWindow {
  lagP99Seconds: number;
  lagMaxSeconds: number;
  /** Share of the window the loop was busy, 0 to 1. */
  utilization: number;
}
/** How often the delay is sampled; each sample is the time between two ticks of this timer. */
const RESOLUTION_MS = 10;

/**
 * Calls `report` with every finished window (and once at start, with
 * zeros). Its timer is unref'd: it never keeps a thread alive. stop() ends it.
 */
export function monitorLoop(report: (window: LoopWindow) => void, windowMs = LOOP_WINDOW_MS): () => void {
  const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  delay.enable();
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  report({ lagP99Seconds: 0, lagMaxSeconds: 0, utilization: 0 });
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    // A sample is the whole interval between ticks: the lag is what exceeds it.
    const lag = (ns: number): number => Math.max(0, ns / 1e9 - RESOLUTION_MS / 1000);
    report({
      lagP99Seconds: delay.count > 0 ? lag(delay.percentile(99)) : 0,
      lagMaxSeconds: delay.count > 0 ? lag(delay.max) : 0,
      utilization: performance.eventLoopUtilization(now, last).utilization,
    });
    last = now;
    delay.reset();
  }, windowMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    delay.disable();
  };
}
