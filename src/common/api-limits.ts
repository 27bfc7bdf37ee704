// Bounds of the API that jobctl checks as flags are parsed and the server
// checks as requests arrive: written once, so the two cannot disagree.

/** Jobs in one GetJobs page at most (page_size). */
export const MAX_PAGE_SIZE = 10_000;
/** Milliseconds between SIGTERM and SIGKILL a stop may ask for. */
export const MAX_GRACE_MS = 10 * 60 * 1000;
/** A job's deadline (timeout_ms) at most, whatever the server's --max-timeout: a year is as good as none. */
export const MAX_TIMEOUT_MS = 366 * 24 * 3600 * 1000;
/** Labels one job may carry. */
export const MAX_JOB_LABELS = 32;
