// GET /metrics for Prometheus (--metrics-listen). On a loopback address it is
// plain HTTP: only local processes reach it, as with most exporters (and jobs
// the server lets use the host's network). Anywhere else it takes the gRPC
// port's rules: TLS 1.3, a client certificate from the CA, clientAuth, not on
// the deny list, and a role (admin or viewer).
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { lookup } from 'node:dns/promises';
import net, { type AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { DenyList } from '../rpc/deny-list.js';
import { JobworkerError } from '../errors.js';
import { identify } from '../rpc/authz.js';
import { contextOptions, type TlsMaterial } from '../rpc/tls-credentials.js';

export interface MetricsEndpointOptions {
  /** host:port; port 0 picks a free one. */
  listen: string;
  registry: Registry;
  tls: TlsMaterial;
  /** Read on every request: reloads apply at once. */
  denyList: () => DenyList;
  logger: Logger;
}

export interface MetricsEndpoint {
  port: number;
  /** True when served over mutual TLS (not a loopback address). */
  secure: boolean;
  setTls(material: TlsMaterial): void;
  close(): Promise<void>;
}

/** host:port, the host a name, an IPv4 address or a bracketed IPv6 one. */
export function parseListen(listen: string): { host: string; port: number } | null {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/.exec(listen);
  const port = Number(match?.[2]);
  if (!match || port > 65535) return null;
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

/** An address (not a name: names are looked up first) only this host can reach. */
function isLoopback(address: string): boolean {
  return (net.isIPv4(address) && address.startsWith('127.')) || address === '::1';
}

/** Scrapers are few; this many connections at once is already abuse. */
const MAX_CONNECTIONS = 64;

export async function startMetricsEndpoint(options: MetricsEndpointOptions): Promise<MetricsEndpoint> {
  const address = parseListen(options.listen);
  if (!address) throw new Error(`--metrics-listen ${JSON.stringify(options.listen)}: expected host:port such as 127.0.0.1:9464`);
  // Whether it is loopback is decided on the address the name stands for, which is also the one bound.
  const host = await lookup(address.host).then(
    (found) => found.address,
    (err: NodeJS.ErrnoException) => {
      throw new Error(`--metrics-listen ${options.listen}: cannot resolve ${address.host} (${err.code ?? err.message})`);
    },
  );
  const secure = !isLoopback(host);
  const handle = (request: IncomingMessage, response: ServerResponse): void => {
    void serve(request, response, options, secure).catch((err: unknown) => {
      options.logger.error({ err }, 'metrics: could not answer a scrape');
      if (!response.headersSent) response.writeHead(500, { 'content-type': 'text/plain' });
      response.end('internal error (see the server log)\n');
    });
  };
  const server = secure
    ? https.createServer({ ...contextOptions(options.tls), requestCert: true, rejectUnauthorized: true, handshakeTimeout: 5_000 }, handle)
    : http.createServer(handle);
  // Scrapers keep their connection; an idle one is closed before it piles up.
  server.keepAliveTimeout = 60_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.maxConnections = MAX_CONNECTIONS;
  // Every socket, handshake done or not, so that close() ends them all at once.
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`--metrics-listen ${options.listen}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`);
  });
  server.on('error', (err) => options.logger.error({ err }, 'metrics endpoint failed'));
  return {
    port: (server.address() as AddressInfo).port,
    secure,
    setTls: (material) => {
      if (secure) (server as https.Server).setSecureContext(contextOptions(material));
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

async function serve(request: IncomingMessage, response: ServerResponse, options: MetricsEndpointOptions, secure: boolean): Promise<void> {
  if (secure) {
    try {
      const caller = identify((request.socket as TLSSocket).getPeerCertificate(), options.denyList());
      if (caller.role === null) return refuse(response, 403, `permission denied: ${caller.roleProblem}`);
      // A fleet node's certificate is for calls between nodes, not for reading this.
      if (caller.role === 'node') return refuse(response, 403, 'permission denied: role "node" may not read the metrics');
    } catch (err) {
      if (err instanceof JobworkerError) return refuse(response, 403, err.message);
      throw err;
    }
  }
  const path = new URL(request.url ?? '/', 'http://metrics').pathname;
  if (path !== '/metrics') return refuse(response, 404, 'not found: the metrics are at /metrics');
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.setHeader('allow', 'GET, HEAD');
    return refuse(response, 405, 'method not allowed: GET /metrics');
  }
  const body = await options.registry.metrics();
  response.writeHead(200, { 'content-type': options.registry.contentType });
  response.end(request.method === 'HEAD' ? undefined : body);
}

function refuse(response: ServerResponse, status: number, message: string): void {
  response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  response.end(`${message}\n`);
}
