// What a job starts with: its environment, a few documented variables plus
// what its request adds, never the server's own (its variables may hold
// secrets and paths of the server's, not the job's); and its working directory.
import { ENV_ENTRY } from '../../common/env-entry.js';
import { Errors } from '../errors.js';
import { checkAbsolutePath } from './isolation.js';
import type { JobUser } from './job-user.js';

const JOB_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const MAX_ENV_ENTRIES = 1024;
export const JOB_ID_VARIABLE = 'JOBWORKER_JOB_ID';

export interface RequestedEnv {
  entries: [name: string, value: string][];
}

/** Checks the request's NAME=value entries (INVALID_ARGUMENT) and splits them. */
export function parseEnv(env: readonly string[]): RequestedEnv {
  if (env.length > MAX_ENV_ENTRIES) throw Errors.invalidArgument(`env has ${env.length} entries; at most ${MAX_ENV_ENTRIES}`);
  const entries: [string, string][] = [];
  for (const entry of env) {
    const match = ENV_ENTRY.exec(entry);
    if (!match) throw Errors.invalidArgument(`env entries must be NAME=value with no NUL, got ${JSON.stringify(entry.slice(0, 100))}`);
    if (match[1] === JOB_ID_VARIABLE) throw Errors.invalidArgument(`env ${JOB_ID_VARIABLE} is the server's to set: it is the job's id`);
    entries.push([match[1]!, match[2]!]);
  }
  return { entries };
}

/** All but JOBWORKER_JOB_ID, which the runner adds once it has made the id (parseEnv refuses it in a request). */
export function jobEnvironment(user: JobUser, requested: RequestedEnv): Record<string, string> {
  // A Map: a name such as __proto__ must be a variable like any other.
  const vars = new Map([
    ['PATH', JOB_PATH],
    ['HOME', user.home],
    ['LANG', 'C.UTF-8'],
  ]);
  if (user.name !== null) {
    vars.set('USER', user.name);
    vars.set('LOGNAME', user.name);
  }
  for (const [name, value] of requested.entries) vars.set(name, value);
  return Object.fromEntries(vars);
}

/** The request's workdir, checked (INVALID_ARGUMENT); / when it names none. */
export function resolveWorkdir(workdir: string): string {
  if (workdir === '') return '/';
  checkAbsolutePath(workdir, 'workdir');
  return workdir;
}
