// A job's environment: a few documented variables plus what its request
// adds, never the server's own (its variables may hold secrets and paths of
// the server's, not the job's).
import { Errors } from './errors.js';
import type { JobUser } from './job-user.js';

const JOB_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const MAX_ENV_ENTRIES = 1024;
/** POSIX allows more in a name, but a name with '=' or NUL could not be passed at all. */
const NAME = /^[^=\0]+$/;

/** Checks NAME=value entries; returns how many bytes they take in the job's exec (for the argv budget). */
export function checkEnv(env: readonly string[]): number {
  if (env.length > MAX_ENV_ENTRIES) throw Errors.invalidArgument(`env has ${env.length} entries; at most ${MAX_ENV_ENTRIES}`);
  let bytes = 0;
  for (const entry of env) {
    const equals = entry.indexOf('=');
    if (equals <= 0 || !NAME.test(entry.slice(0, equals)) || entry.includes('\0', equals)) {
      throw Errors.invalidArgument(`env entries must be NAME=value with no NUL, got ${JSON.stringify(entry.slice(0, 100))}`);
    }
    bytes += Buffer.byteLength(entry) + 1;
  }
  return bytes;
}

/** All but JOBWORKER_JOB_ID, which the runner adds once it has made the id (and which a request cannot replace). */
export function jobEnvironment(user: JobUser, env: readonly string[]): Record<string, string> {
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
  for (const entry of env) {
    const equals = entry.indexOf('=');
    vars.set(entry.slice(0, equals), entry.slice(equals + 1));
  }
  return Object.fromEntries(vars);
}
