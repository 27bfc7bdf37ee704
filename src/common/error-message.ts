/** The text of a thrown value, for records and logs: errors carry theirs, anything else is stringified. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
