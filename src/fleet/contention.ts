// Writes made only while what they read is unchanged (a job's name, its
// owner's quota use): when another write changed it first, read again and
// try again, spread out so that racing nodes do not meet again at once, for
// a while; past it the write is refused as not made.
import { setTimeout as sleep } from 'node:timers/promises';
import { JobworkerError } from '../supervisor/errors.js';

/** How long a write keeps trying while other writes change what it depends on. */
export const CONTENDED_RETRY_MS = 10_000;

/**
 * `attempt` until it gives an answer (null: a condition did not hold, read
 * again); START_CONTENDED past CONTENDED_RETRY_MS, saying job `id` was not
 * `done` (started, accepted).
 */
export async function untilUncontended<T>(id: string, done: 'started' | 'accepted', attempt: () => Promise<T | null>): Promise<T> {
  const until = performance.now() + CONTENDED_RETRY_MS;
  for (let delayMs = 5; ; delayMs = Math.min(delayMs * 2, 100)) {
    const answer = await attempt();
    if (answer !== null) return answer;
    if (performance.now() > until) {
      const step = done === 'started' ? 'claim its start' : 'be recorded';
      throw new JobworkerError('START_CONTENDED', `job ${id} was not ${done}: for ${CONTENDED_RETRY_MS / 1000} s other starts kept changing its owner's quota use or its name before it could ${step}`);
    }
    await sleep(delayMs * (0.5 + Math.random()));
  }
}
