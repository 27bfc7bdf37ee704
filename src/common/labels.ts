// Node labels (jobworkerd --node-label) and the constraints jobs place
// themselves with (jobctl --constraint, CreateJobReq.constraints): the same
// key=value syntax everywhere, checked by the same rules. Kubernetes' label
// rules, roughly: short, printable, no spaces, nothing a shell or a table
// would mangle.
const KEY = /^[A-Za-z0-9]([A-Za-z0-9_./-]{0,61}[A-Za-z0-9])?$/;
const VALUE = /^([A-Za-z0-9]([A-Za-z0-9_./-]{0,61}[A-Za-z0-9])?)?$/;

export const LABEL_RULES = 'keys of 1 to 63 letters, digits and _ . / - starting and ending with a letter or digit; values the same, or empty';

/** Why a key and value do not make a label, or null when they do. */
export function labelProblem(key: string, value: string): string | null {
  if (!KEY.test(key)) return `label key ${JSON.stringify(key.slice(0, 80))} is not valid (${LABEL_RULES})`;
  if (!VALUE.test(value)) return `label value ${JSON.stringify(value.slice(0, 80))} of ${key} is not valid (${LABEL_RULES})`;
  return null;
}

/** "key=value" pairs into a map; the first problem as a message (a key given twice is one). */
export function parseLabels(entries: readonly string[]): { labels: Record<string, string> } | { problem: string } {
  const labels: Record<string, string> = {};
  for (const entry of entries) {
    const at = entry.indexOf('=');
    if (at < 0) return { problem: `expected key=value, got ${JSON.stringify(entry.slice(0, 80))}` };
    const key = entry.slice(0, at);
    const value = entry.slice(at + 1);
    const problem = labelProblem(key, value);
    if (problem) return { problem };
    if (Object.hasOwn(labels, key)) return { problem: `${key} is given twice` };
    labels[key] = value;
  }
  return { labels };
}
