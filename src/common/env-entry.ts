// One entry of a job's environment as jobctl and the server both take it.

/** NAME=value: a name without '=', neither part with NUL (exec could not pass them). */
export const ENV_ENTRY = /^([^=\0]+)=([^\0]*)$/;
