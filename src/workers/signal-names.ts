// Signal numbers to names, as Node names a child's end ("SIGABRT", not its
// alias "SIGIOT" that os.constants.signals lists after it).
import { constants } from 'node:os';

const NAMES = new Map<number, string>();
for (const [name, number] of Object.entries(constants.signals)) if (!NAMES.has(number)) NAMES.set(number, name);

/** "SIGTERM" for 15; "SIG<n>" for a number with no name (a real-time signal). */
export function signalName(number: number): string {
  return NAMES.get(number) ?? `SIG${number}`;
}
