// Who is calling, and what they may call. The caller is read from the
// verified client certificate (the gRPC boundary and the metrics endpoint
// both ask here); roles come from its Subject OU, and the table below is the
// only place that decides. In a fleet, a node may forward a call on behalf
// of the caller it came from (forwardedCaller).
import type { PeerCertificate } from 'node:tls';
import { Errors } from '../errors.js';
import type { DenyList } from './deny-list.js';

/** `node` is a fleet node's own certificate: it may hand jobs to other nodes and forward calls, nothing more. */
export type Role = 'admin' | 'viewer' | 'node';
export type RpcName =
  | 'CreateJob'
  | 'GetJob'
  | 'StopJob'
  | 'GetJobs'
  | 'GetJobsStream'
  | 'WriteInput'
  | 'WaitJob'
  | 'GetQuota'
  | 'CreateSchedule'
  | 'GetSchedule'
  | 'GetSchedules'
  | 'PauseSchedule'
  | 'ResumeSchedule'
  | 'DeleteSchedule'
  | 'RunSchedule'
  | 'GetNodes'
  | 'DrainNode'
  | 'UndrainNode'
  | 'StartJob';

export const PERMISSIONS: Readonly<Record<RpcName, readonly Role[]>> = {
  CreateJob: ['admin'],
  StopJob: ['admin'],
  GetJob: ['admin', 'viewer'],
  GetJobs: ['admin', 'viewer'],
  GetJobsStream: ['admin', 'viewer'],
  WriteInput: ['admin'],
  WaitJob: ['admin', 'viewer'],
  GetQuota: ['admin', 'viewer'],
  CreateSchedule: ['admin'],
  GetSchedule: ['admin', 'viewer'],
  GetSchedules: ['admin', 'viewer'],
  PauseSchedule: ['admin'],
  ResumeSchedule: ['admin'],
  DeleteSchedule: ['admin'],
  RunSchedule: ['admin'],
  GetNodes: ['admin', 'viewer'],
  DrainNode: ['admin'],
  UndrainNode: ['admin'],
  StartJob: ['node'],
};

const ROLES: readonly string[] = ['admin', 'viewer', 'node'];

export interface Caller {
  cn: string;
  /** null when the certificate names no single known role. */
  role: Role | null;
  /** Why role is null, for the denial message. */
  roleProblem?: string;
  /** CN of the fleet node that forwarded the call for this caller: the call is this node's to answer. */
  via?: string;
}

/**
 * Binary metadata (JSON of { cn, role }) a forwarding node sends with a call
 * it makes for its caller. Only a node certificate may send it.
 */
export const FORWARDED_FOR_METADATA = 'jobworker-forwarded-for-bin';

/** What a node forwards to a job's node; anything else it answers itself (CreateJob goes by StartJob). */
const FORWARDED_RPCS: readonly RpcName[] = ['GetJob', 'StopJob', 'GetJobsStream', 'WriteInput', 'WaitJob'];

const CLIENT_AUTH_EKU = '1.3.6.1.5.5.7.3.2';

/**
 * Who a verified client certificate is; UNAUTHENTICATED for one that is not
 * for client authentication or is on the deny list. The caller's role may
 * still be null (no OU, an unknown one): authorize() refuses those.
 */
export function identify(cert: PeerCertificate | undefined, denyList: DenyList): Caller {
  // Unreachable with a server that requires client certificates; kept as a
  // guard so a misconfigured listener cannot serve anonymous callers.
  if (!cert || !cert.subject) throw Errors.unauthenticated('a client certificate is required');
  // OpenSSL refuses a client certificate whose extended key usage leaves
  // out clientAuth, but accepts one with no such extension at all.
  if (!cert.ext_key_usage?.includes(CLIENT_AUTH_EKU)) {
    throw Errors.unauthenticated('the client certificate is not for client authentication (no clientAuth extended key usage)');
  }
  const caller = callerOf(cert);
  const denied = denyList.refuses(cert, caller.cn);
  if (denied) throw Errors.unauthenticated(`the client certificate (${denied}) is on the server's deny list`);
  return caller;
}

/**
 * Reads the caller from its verified certificate. A certificate with several
 * OU values gets no role at all, even if one of them is "admin": a CA that
 * issued such a certificate did not mean to grant one role, and guessing
 * which is a privilege escalation waiting to happen.
 */
export function callerOf(cert: PeerCertificate): Caller {
  const subject = cert.subject ?? {};
  const cn = typeof subject.CN === 'string' ? subject.CN : Array.isArray(subject.CN) ? (subject.CN as string[]).join(',') : '';
  const ou: unknown = subject.OU;
  if (ou === undefined) return { cn, role: null, roleProblem: 'the client certificate has no OU (role)' };
  if (Array.isArray(ou)) return { cn, role: null, roleProblem: `the client certificate has several OUs (${ou.map((v) => JSON.stringify(v)).join(', ')}); exactly one role is required` };
  if (typeof ou !== 'string' || !ROLES.includes(ou)) return { cn, role: null, roleProblem: `unknown role ${JSON.stringify(ou)} in the client certificate's OU` };
  return { cn, role: ou as Role };
}

/** Throws PERMISSION_DENIED unless the caller's role may call `rpc`. */
export function authorize(caller: Caller, rpc: RpcName): void {
  if (caller.role === null) throw Errors.permissionDenied(`permission denied: ${caller.roleProblem}`);
  if (!PERMISSIONS[rpc].includes(caller.role)) {
    throw Errors.permissionDenied(`permission denied: role "${caller.role}" may not ${rpc}`);
  }
}

/**
 * The caller a call is answered for: the certificate's own, or, when a node
 * forwarded the call (FORWARDED_FOR_METADATA), the caller the node says it
 * came from, already authenticated and authorized there. Anyone but a node
 * sending it is UNAUTHENTICATED: an admin client cannot pose as a forwarding
 * node, and a node cannot forward a node.
 */
export function forwardedCaller(caller: Caller, forwarded: Buffer | undefined, rpc: RpcName): Caller {
  if (forwarded === undefined) return caller;
  if (caller.role !== 'node') throw Errors.unauthenticated('only a fleet node\'s certificate (OU node) may forward calls for another caller');
  if (!FORWARDED_RPCS.includes(rpc)) throw Errors.unauthenticated(`${rpc} is never forwarded between nodes (only ${FORWARDED_RPCS.join(', ')})`);
  let claimed: unknown;
  try {
    claimed = JSON.parse(forwarded.toString('utf8'));
  } catch {
    throw Errors.unauthenticated(`${FORWARDED_FOR_METADATA} is not JSON`);
  }
  const { cn, role } = (claimed ?? {}) as { cn?: unknown; role?: unknown };
  if (typeof cn !== 'string' || (role !== 'admin' && role !== 'viewer')) {
    throw Errors.unauthenticated(`${FORWARDED_FOR_METADATA} must name a cn and an admin or viewer role`);
  }
  return { cn, role, via: caller.cn };
}

/** The metadata value forwardedCaller reads back. */
export function forwardedFor(caller: Caller): Buffer {
  return Buffer.from(JSON.stringify({ cn: caller.cn, role: caller.role }));
}
