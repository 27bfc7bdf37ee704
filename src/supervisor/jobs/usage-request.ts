// Asking a job's supervisor thread for the job's usage, over the job's port.
import type { MessagePort } from 'node:worker_threads';
import { settledSignal, unlessAborted } from '../../common/abortable.js';
import { settlesWithin } from '../../common/settle-within.js';
import type { ResourceUsage, TaskToMain, UsageRequest } from '../../workers/protocol.js';

/**
 * Resolves with the usage the thread read, or null when it had none to give
 * (the group is being torn down), when `ended` settles first, or after
 * `timeoutMs` (a wedged thread). Whichever way, the listener it added is
 * gone: a thread that never answers must not collect one per call.
 */
export async function askUsage(port: MessagePort, ended: Promise<unknown>, timeoutMs: number): Promise<ResourceUsage | null> {
  let usage: ResourceUsage | null = null;
  let onReport: ((message: TaskToMain) => void) | undefined;
  const answered = new Promise<void>((resolve) => {
    onReport = (message) => {
      if (message.type !== 'usage') return;
      usage = message.usage;
      resolve();
    };
    port.on('message', onReport);
  });
  try {
    const ask: UsageRequest = { type: 'usage' };
    port.postMessage(ask);
    // Not a race with `ended`: a job that runs for days is asked for its usage at every GetJob.
    await settlesWithin(unlessAborted(answered, settledSignal(ended), undefined), timeoutMs);
    return usage;
  } finally {
    port.off('message', onReport!);
  }
}
