// How requests name a job: by its id (a UUID, lower case) or by its name
// (CreateJobReq.name). The server and jobctl check names by these same rules.

const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** UUID-shaped in any case: such a name would read as an id. */
const ID_SHAPED = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NAME = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;

export const NAME_RULES = '1 to 63 letters, digits and _ . - starting and ending with a letter or digit, not shaped like a job id';

export function isJobId(text: string): boolean {
  return JOB_ID.test(text);
}

/** Why `name` cannot name a job, or null when it can. */
export function jobNameProblem(name: string): string | null {
  if (!NAME.test(name) || ID_SHAPED.test(name)) return `job name ${JSON.stringify(name.slice(0, 80))} is not valid (${NAME_RULES})`;
  return null;
}

/** A dependency as jobctl --after takes it: ID|NAME, then :ok (the default) or :any. */
export interface DependencyRef {
  job: string;
  condition: 'ok' | 'any';
}

/** `ID|NAME[:ok|:any]` (jobctl create --after), or why it is not one. */
export function parseDependency(text: string): DependencyRef | { problem: string } {
  const colon = text.lastIndexOf(':');
  const job = colon < 0 ? text : text.slice(0, colon);
  const condition = colon < 0 ? 'ok' : text.slice(colon + 1);
  if (condition !== 'ok' && condition !== 'any') return { problem: `expected ID|NAME[:ok|:any], got ${JSON.stringify(text.slice(0, 120))}: the condition is ok or any` };
  if (!isJobId(job) && jobNameProblem(job) !== null) return { problem: `expected ID|NAME[:ok|:any], got ${JSON.stringify(text.slice(0, 120))}: ${JSON.stringify(job.slice(0, 80))} is neither a job id nor a job name` };
  return { job, condition };
}
