// Job records as the job history keeps them, for tests that write a history
// (or a store) of their own.
import type { StoredJob } from '../../src/supervisor/jobs/history.js';

/** A job of `true` that completed, an hour ago unless said otherwise; `fields` changes what the test needs. */
export function storedJob(id: string, fields: Partial<StoredJob> = {}): StoredJob {
  const startedAt = fields.startedAt ?? new Date(Date.now() - 3600_000);
  const createdAt = fields.createdAt ?? startedAt;
  return {
    id,
    command: 'true',
    args: [],
    limits: { cpuPercent: 100, memoryBytes: 64 * 2 ** 20, ioBps: 0, pids: 0 },
    isolation: null,
    workdir: null,
    owner: 'admin',
    name: null,
    labels: {},
    timeoutMs: null,
    stdin: false,
    pid: 1,
    cgroup: `/jobworker/${id}`,
    createdAt,
    startedAt,
    after: [],
    state: 'COMPLETED',
    endedAt: new Date(createdAt.getTime() + 1),
    exitCode: 0,
    signal: null,
    oomKilled: false,
    message: '',
    usage: null,
    outputBytes: 0,
    env: null,
    ...fields,
  };
}
