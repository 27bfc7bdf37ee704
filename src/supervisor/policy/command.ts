// What a job runs and what the server keeps of its request: the command and
// its arguments as exec takes them, and a cap on the whole request, which
// the server stores and answers back in every listing of the job.
import type { CreateJobReq } from '../../gen/jobworker/v1/jobworker.js';
import { Errors } from '../errors.js';

export const MAX_COMMAND_BYTES = 4096;
export const MAX_ARGS = 4096;
/** Linux refuses any one exec argument longer than this (MAX_ARG_STRLEN, NUL included). */
export const MAX_ARG_BYTES = 128 * 1024 - 1;
/**
 * The job's request — command, arguments, environment, workdir, rootfs and
 * user — in bytes, at most. It is kept with the job and sent back in every
 * GetJob and GetJobs answer until the job is pruned: bounded, four jobs at
 * the cap still fit one ~1 MiB GetJobs page, and what one user sends can
 * never make another user's listing too big to receive. (A command line of
 * a quarter of a megabyte is far past what shells and harnesses send; larger
 * inputs belong in a file the job reads.)
 */
export const MAX_REQUEST_BYTES = 256 * 1024;

/** What of a CreateJob request the server keeps with the job. */
type StoredParts = Pick<CreateJobReq, 'command' | 'args' | 'env' | 'workdir' | 'isolation'>;

/** The size of a request's stored parts: command, args, env, workdir, rootfs and user. */
export function requestBytes(request: StoredParts): number {
  let bytes = Buffer.byteLength(request.command) + Buffer.byteLength(request.workdir);
  for (const arg of request.args) bytes += Buffer.byteLength(arg);
  for (const entry of request.env) bytes += Buffer.byteLength(entry);
  return bytes + Buffer.byteLength(request.isolation?.rootfs ?? '') + Buffer.byteLength(request.isolation?.user ?? '');
}

/**
 * INVALID_ARGUMENT when the request's stored parts pass MAX_REQUEST_BYTES.
 * Checked first, before anything looks at what they say.
 */
export function checkRequestSize(request: StoredParts): void {
  const bytes = requestBytes(request);
  if (bytes > MAX_REQUEST_BYTES) {
    throw Errors.invalidArgument(
      `the job's command, args, env, workdir, rootfs and user must be at most ${MAX_REQUEST_BYTES} bytes together (256 KiB), got ${bytes}`,
    );
  }
}

/** The command and its arguments as exec takes them: INVALID_ARGUMENT otherwise. */
export function validateCommand(command: string, args: readonly string[]): void {
  if (command === '') throw Errors.invalidArgument('command must not be empty');
  if (Buffer.byteLength(command) > MAX_COMMAND_BYTES) throw Errors.invalidArgument(`command must be at most ${MAX_COMMAND_BYTES} bytes`);
  if (args.length > MAX_ARGS) throw Errors.invalidArgument(`at most ${MAX_ARGS} arguments, got ${args.length}`);
  for (const arg of [command, ...args]) {
    // exec takes NUL-terminated strings: a NUL would silently cut the argument.
    if (arg.includes('\0')) throw Errors.invalidArgument('command and arguments must not contain NUL bytes');
    const bytes = Buffer.byteLength(arg);
    if (bytes > MAX_ARG_BYTES) throw Errors.invalidArgument(`each argument must be at most ${MAX_ARG_BYTES} bytes (the kernel's limit), got one of ${bytes}`);
  }
}
