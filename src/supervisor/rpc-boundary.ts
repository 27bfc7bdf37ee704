// The one place every RPC passes through: it identifies the caller from the
// verified client certificate, applies the authorization table, logs one line
// per call, and turns errors into statuses (unknown errors are logged and
// reach the client only as INTERNAL).
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';

type AnyCall = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>;
import type { Logger } from 'pino';
import { authorize, callerOf, type Caller, type RpcName } from './authz.js';
import { Errors, toStatus } from './errors.js';

function identify(call: AnyCall): Caller {
  const cert = call.getAuthContext().sslPeerCertificate;
  // Unreachable with a server that requires client certificates; kept as a
  // guard so a misconfigured listener cannot serve anonymous callers.
  if (!cert || !cert.subject) throw Errors.unauthenticated('a client certificate is required');
  return callerOf(cert);
}

function jobIdOf(request: unknown): string | undefined {
  const id = (request as { id?: unknown } | undefined)?.id;
  return typeof id === 'string' && id !== '' ? id : undefined;
}

export class RpcBoundary {
  constructor(readonly logger: Logger) {}

  unary<Req, Res>(rpc: RpcName, handler: (caller: Caller, request: Req) => Res | Promise<Res>) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      const started = performance.now();
      let caller: Caller | undefined;
      void (async () => {
        caller = identify(call);
        authorize(caller, rpc);
        return handler(caller, call.request);
      })().then(
        (response) => {
          this.#log(rpc, call, caller, started, 'OK', response);
          callback(null, response);
        },
        (err: unknown) => {
          const { status, unexpected } = toStatus(err);
          this.#log(rpc, call, caller, started, status.details, undefined, unexpected ? err : undefined, status.code);
          callback(status);
        },
      );
    };
  }

  serverStream<Req, Res>(rpc: RpcName, handler: (caller: Caller, call: ServerWritableStream<Req, Res>) => Promise<void>) {
    return (call: ServerWritableStream<Req, Res>): void => {
      const started = performance.now();
      let caller: Caller | undefined;
      void (async () => {
        caller = identify(call);
        authorize(caller, rpc);
        await handler(caller, call);
      })().then(
        () => this.#log(rpc, call, caller, started, call.cancelled ? 'CANCELLED' : 'OK'),
        (err: unknown) => {
          const { status, unexpected } = toStatus(err);
          this.#log(rpc, call, caller, started, status.details, undefined, unexpected ? err : undefined, status.code);
          call.emit('error', status);
        },
      );
    };
  }

  #log(
    rpc: RpcName,
    call: AnyCall,
    caller: Caller | undefined,
    started: number,
    outcome: string,
    response?: unknown,
    err?: unknown,
    code?: number,
  ): void {
    const line = {
      rpc,
      peer: call.getPeer(),
      cn: caller?.cn,
      role: caller?.role,
      jobId: jobIdOf(call.request) ?? jobIdOf((response as { job?: unknown } | undefined)?.job),
      outcome,
      code: code ?? 0,
      ms: Math.round((performance.now() - started) * 10) / 10,
    };
    if (err) this.logger.error({ ...line, err }, 'rpc failed unexpectedly');
    else this.logger.info(line, 'rpc');
  }
}
