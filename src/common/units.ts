// Sizes and durations as operators type them on command lines.

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** "90s", "10m", "2h", "7d", "250ms" in milliseconds; null for anything else. */
export function parseDuration(text: string): number | null {
  const match = DURATION.exec(text);
  return match ? Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS] : null;
}

const SIZE = /^(\d+)(K|M|G|T)?(i?B)?$/i;
const UNIT_BYTES = { K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 } as const;

/** "1073741824", "512M", "1G", "1GiB" in bytes (K, M, G, T are powers of 1024); null for anything else. */
export function parseBytes(text: string): number | null {
  const match = SIZE.exec(text);
  if (!match) return null;
  const bytes = Number(match[1]) * (match[2] ? UNIT_BYTES[match[2].toUpperCase() as keyof typeof UNIT_BYTES] : 1);
  return Number.isSafeInteger(bytes) ? bytes : null;
}

/** Milliseconds as the largest unit that keeps them whole: "30s", "90m", "1500ms"; parseDuration reads it back. */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms >= UNIT_MS[unit] && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
