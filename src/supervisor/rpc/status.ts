// The RPC boundary's one translation of errors into gRPC statuses.
import { Metadata, status as Status } from '@grpc/grpc-js';
import { ERROR_CODE_TRAILER } from '../../common/error-codes.js';
import { JobworkerError } from '../errors.js';

/**
 * A status's message travels in a trailer, and clients refuse trailers past
 * a few KiB (grpc-js: 8 KiB of metadata by default): a message that echoes
 * what a user sent (a 200 KiB user name) is cut here, whatever made it.
 */
export const MAX_DETAILS_LENGTH = 1024;

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
    const details = err.message.length > MAX_DETAILS_LENGTH ? `${err.message.slice(0, MAX_DETAILS_LENGTH)}…` : err.message;
    return { status: { code: err.grpcStatus, details, metadata }, unexpected: false };
  }
  return { status: { code: Status.INTERNAL, details: 'internal error (see the server log)' }, unexpected: true };
}
