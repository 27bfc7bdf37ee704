// Who may call what. Roles come from the client certificate's Subject OU;
// this table is the only place that decides.
import type { PeerCertificate } from 'node:tls';
import { Errors } from '../errors.js';

export type Role = 'admin' | 'viewer';
export type RpcName = 'CreateJob' | 'GetJob' | 'StopJob' | 'GetJobs' | 'GetJobsStream';

export const PERMISSIONS: Readonly<Record<RpcName, readonly Role[]>> = {
  CreateJob: ['admin'],
  StopJob: ['admin'],
  GetJob: ['admin', 'viewer'],
  GetJobs: ['admin', 'viewer'],
  GetJobsStream: ['admin', 'viewer'],
};

const ROLES: readonly string[] = ['admin', 'viewer'];

export interface Caller {
  cn: string;
  /** null when the certificate names no single known role. */
  role: Role | null;
  /** Why role is null, for the denial message. */
  roleProblem?: string;
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
