// The RPC boundary's one translation of errors into gRPC statuses.
import { Metadata, status as Status } from '@grpc/grpc-js';
import { ERROR_CODE_TRAILER } from '../../common/error-codes.js';
import { JobworkerError } from '../errors.js';

/**
 * A status's message travels in a trailer, percent-encoded (grpc-js runs it
 * through encodeURI: up to 12 bytes for one character), and clients refuse
 * trailers past a few KiB (grpc-js: 8 KiB of metadata by default). A message
 * that echoes what a user sent (a 200 KiB user name, a command line of
 * emoji) is cut here to at most this many bytes encoded, whatever made it.
 */
export const MAX_DETAILS_BYTES = 2048;

/**
 * The message as sent, cut at a character (never inside a surrogate pair:
 * half of one makes encodeURI throw, inside grpc-js) once its encoded form
 * would pass MAX_DETAILS_BYTES.
 */
export function boundedDetails(message: string): string {
  // A lone surrogate (half a character some code cut) would make encodeURI throw: U+FFFD instead.
  const text = message.toWellFormed();
  if (text.length * 12 <= MAX_DETAILS_BYTES) return text;
  let encoded = 0;
  let end = 0;
  for (const character of text) {
    encoded += encodeURI(character).length;
    // Room for the "…" that says it was cut (9 bytes encoded).
    if (encoded > MAX_DETAILS_BYTES - 9) return `${text.slice(0, end)}…`;
    end += character.length;
  }
  return text;
}

export interface StatusObject {
  code: Status;
  details: string;
  metadata?: Metadata;
}

/**
 * The RPC boundary: known errors keep their status and message, and their
 * code goes along in a trailer (the client library's ServerError.code);
 * anything else becomes INTERNAL.
 */
export function toStatus(err: unknown): { status: StatusObject; unexpected: boolean } {
  if (err instanceof JobworkerError) {
    const metadata = new Metadata();
    metadata.set(ERROR_CODE_TRAILER, err.code);
    return { status: { code: err.grpcStatus, details: boundedDetails(err.message), metadata }, unexpected: false };
  }
  return { status: { code: Status.INTERNAL, details: 'internal error (see the server log)' }, unexpected: true };
}
