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
