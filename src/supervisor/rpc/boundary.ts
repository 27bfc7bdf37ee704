// The one place every RPC passes through: it identifies the caller from the
// verified client certificate, refuses certificates that are not for client
// authentication or are on the deny list, applies the authorization table
// and the caller's call quota (call-quota.ts), writes one audit line and
// counts one call per call, and turns errors into statuses (unknown errors
// are logged and reach the client only as INTERNAL).
import { status as Status, type sendUnaryData, type ServerReadableStream, type ServerUnaryCall, type ServerWritableStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { FORWARDED_FOR_METADATA, authorize, forwardedCaller, identify, type Caller, type RpcName } from './authz.js';
import { CallQuota } from './call-quota.js';
import { DenyList } from './deny-list.js';
import { toStatus } from './status.js';
import type { ServerMetrics } from '../ops/metrics.js';

type AnyCall = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown> | ServerReadableStream<unknown, unknown>;

function jobIdOf(request: unknown): string | undefined {
  const id = (request as { id?: unknown } | undefined)?.id;
  return typeof id === 'string' && id !== '' ? id : undefined;
}

export class RpcBoundary {
  /** Replaced whole on reload; read on every call. */
  denyList: DenyList = DenyList.EMPTY;
  /** Set by the server, which shows its counts in GetQuota too. */
  calls = new CallQuota();

  constructor(
    /** Where unexpected errors go. */
    readonly logger: Logger,
    /** One line per call. */
    readonly audit: Logger,
    readonly metrics: ServerMetrics,
  ) {}

  #identify(call: AnyCall, rpc: RpcName): Caller {
    const caller = identify(call.getAuthContext().sslPeerCertificate, this.denyList);
    const [forwarded] = call.metadata.get(FORWARDED_FOR_METADATA);
    return forwardedCaller(caller, typeof forwarded === 'string' ? Buffer.from(forwarded) : forwarded, rpc);
  }

  /** `signal` (for handlers that wait): aborted when the caller goes away. */
  unary<Req, Res>(rpc: RpcName, handler: (caller: Caller, request: Req, signal: AbortSignal) => Res | Promise<Res>) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      const gone = new AbortController();
      call.once('cancelled', () => gone.abort());
      this.#answer(rpc, call, callback, (caller) => handler(caller, call.request, gone.signal));
    };
  }

  /** A client-streaming call: one answer once the handler has read what it needs. */
  clientStream<Req, Res>(rpc: RpcName, handler: (caller: Caller, call: ServerReadableStream<Req, Res>) => Promise<Res>) {
    return (call: ServerReadableStream<Req, Res>, callback: sendUnaryData<Res>): void => this.#answer(rpc, call, callback, (caller) => handler(caller, call));
  }

  /** One answer to a call: the handler's, or its error as a status. */
  #answer<Res>(rpc: RpcName, call: AnyCall, callback: sendUnaryData<Res>, handle: (caller: Caller) => Res | Promise<Res>): void {
    const started = performance.now();
    let caller: Caller | undefined;
    void (async () => {
      caller = this.#identify(call, rpc);
      authorize(caller, rpc);
      return this.#withinQuota(caller, handle);
    })()
      .then(
        (response) => {
          this.#log(rpc, call, caller, started, 'OK', response);
          callback(null, response);
        },
        (err: unknown) => {
          const { status, unexpected } = toStatus(err);
          this.#log(rpc, call, caller, started, status.details, undefined, unexpected ? err : undefined, status.code);
          callback(status);
        },
      )
      .catch((err: unknown) => this.#answerFailed(rpc, err));
  }

  serverStream<Req, Res>(rpc: RpcName, handler: (caller: Caller, call: ServerWritableStream<Req, Res>) => Promise<void>) {
    return (call: ServerWritableStream<Req, Res>): void => {
      const started = performance.now();
      let caller: Caller | undefined;
      void (async () => {
        caller = this.#identify(call, rpc);
        authorize(caller, rpc);
        await this.#withinQuota(caller, (admitted) => handler(admitted, call));
      })().then(
        () => (call.cancelled ? this.#log(rpc, call, caller, started, 'CANCELLED', undefined, undefined, Status.CANCELLED) : this.#log(rpc, call, caller, started, 'OK')),
        (err: unknown) => {
          const { status, unexpected } = toStatus(err);
          this.#log(rpc, call, caller, started, status.details, undefined, unexpected ? err : undefined, status.code);
          call.emit('error', status);
        },
      )
      .catch((err: unknown) => this.#answerFailed(rpc, err));
    };
  }

  /** Runs a call's handler counted in flight for its caller (QUOTA_EXCEEDED past the caller's call quota). */
  async #withinQuota<T>(caller: Caller, handle: (caller: Caller) => T | Promise<T>): Promise<T> {
    const leave = this.calls.enter(caller);
    try {
      return await handle(caller);
    } finally {
      leave();
    }
  }

  /**
   * grpc-js threw while taking the answer (it must not: the answer is ours
   * to keep sendable). Logged: an error left to reject here would take the
   * whole server down with every running job.
   */
  #answerFailed(rpc: RpcName, err: unknown): void {
    this.logger.error({ rpc, err }, 'could not send an answer');
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
    const seconds = (performance.now() - started) / 1000;
    this.metrics.rpcs.inc({ method: rpc, code: Status[code ?? Status.OK] ?? String(code) });
    // Streams and waits last as long as their jobs: their durations say nothing of the server.
    if (rpc !== 'GetJobsStream' && rpc !== 'WriteInput' && rpc !== 'WaitJob') this.metrics.rpcDuration.observe({ method: rpc }, seconds);
    const line = {
      rpc,
      peer: call.getPeer(),
      cn: caller?.cn,
      role: caller?.role,
      via: caller?.via,
      jobId: jobIdOf((call as { request?: unknown }).request) ?? jobIdOf((response as { job?: unknown } | undefined)?.job),
      outcome,
      code: code ?? 0,
      ms: Math.round(seconds * 10_000) / 10,
    };
    // The audit line carries who, what and how it ended: never request
    // bodies (a command line may hold secrets) nor job output.
    this.audit.info(line, 'rpc');
    if (err) this.logger.error({ ...line, err }, 'rpc failed unexpectedly');
  }
}
