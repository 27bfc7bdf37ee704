// CreateJob limits: defaults filled in and every value checked here, once,
// as the request enters; the rest of the server trusts JobLimits.
import os from 'node:os';
import type { JobLimits } from '../../workers/protocol.js';
import { Errors } from '../errors.js';

export const DEFAULT_CPU_PERCENT = 100;
export const DEFAULT_MEMORY_MB = 512;
export const MIN_MEMORY_MB = 4;
export const DEFAULT_PIDS = 4096;
/** The kernel's own ceiling on pids (PID_MAX_LIMIT on 64-bit). */
export const MAX_PIDS = 4_194_304;
const MIB = 1024 * 1024;

export interface RequestedLimits {
  maxCpuPercent: number;
  maxMemoryMb: number;
  maxIoBps: number;
  maxPids?: number | undefined;
}

export interface HostCapacity {
  cores: number;
  memoryBytes: number;
}

export const thisHost = (): HostCapacity => ({ cores: os.availableParallelism(), memoryBytes: os.totalmem() });

/**
 * 0 means "server default" for CPU and memory and "unlimited" for I/O
 * (proto3 has no unset for plain scalars); max_pids is optional, so unset is
 * the default and 0 unlimited.
 */
export function resolveLimits(requested: RequestedLimits | undefined, host: HostCapacity): JobLimits {
  const cpu = requested?.maxCpuPercent || DEFAULT_CPU_PERCENT;
  const memoryMb = requested?.maxMemoryMb || DEFAULT_MEMORY_MB;
  const io = requested?.maxIoBps ?? 0;
  const pids = requested?.maxPids ?? DEFAULT_PIDS;
  const maxCpu = host.cores * 100;
  if (!Number.isInteger(cpu) || cpu < 1 || cpu > maxCpu) {
    throw Errors.invalidLimits(`max_cpu_percent must be from 1 to ${maxCpu} (${host.cores} cores), got ${cpu}`);
  }
  const maxMemoryMb = Math.floor(host.memoryBytes / MIB);
  if (!Number.isInteger(memoryMb) || memoryMb < MIN_MEMORY_MB || memoryMb > maxMemoryMb) {
    throw Errors.invalidLimits(`max_memory_mb must be from ${MIN_MEMORY_MB} to ${maxMemoryMb} (the host's memory), got ${memoryMb}`);
  }
  if (!Number.isSafeInteger(io) || io < 0) {
    throw Errors.invalidLimits(`max_io_bps must be 0 (unlimited) or a positive number of bytes/s, got ${io}`);
  }
  if (!Number.isInteger(pids) || pids < 0 || pids > MAX_PIDS) {
    throw Errors.invalidLimits(`max_pids must be 0 (unlimited) or from 1 to ${MAX_PIDS}, got ${pids}`);
  }
  return { cpuPercent: cpu, memoryBytes: memoryMb * MIB, ioBps: io, pids };
}
