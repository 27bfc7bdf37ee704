// A JobService client over mutual TLS 1.3: what jobctl and the tests use.
import fs from 'node:fs';
import tls from 'node:tls';
import { credentials, type ChannelOptions } from '@grpc/grpc-js';
import { JobServiceClient } from '../src/gen/jobworker/v1/jobworker.js';

export interface ConnectOptions {
  /** host:port */
  server: string;
  ca: string;
  cert: string;
  key: string;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Large windows let one stream carry output at loopback speed instead of grpc-js's 64 KiB default. */
const CHANNEL_OPTIONS: ChannelOptions = {
  'grpc-node.flow_control_window': 16 * 1024 * 1024,
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
};

export function readPemFile(file: string, what: string): Buffer {
  let pem: Buffer;
  try {
    pem = fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(`cannot read ${what} ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN ')) throw new ConfigError(`${what} ${file} is not a PEM file`);
  return pem;
}

export function connect(options: ConnectOptions): JobServiceClient {
  const ca = readPemFile(options.ca, 'CA certificate');
  const cert = readPemFile(options.cert, 'client certificate');
  const key = readPemFile(options.key, 'client key');
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ ca, cert, key, minVersion: 'TLSv1.3' });
  } catch (err) {
    throw new ConfigError(`cannot use client certificate ${options.cert} with key ${options.key}: ${(err as Error).message}`);
  }
  return new JobServiceClient(options.server, credentials.createFromSecureContext(context), CHANNEL_OPTIONS);
}
