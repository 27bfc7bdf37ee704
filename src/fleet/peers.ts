// Calls to the other nodes of the fleet: gRPC over mutual TLS with this
// node's certificate, one channel per node. A node is trusted only as the
// node it registered as: its certificate must be a node certificate (OU
// node) whose CN is the node's name, besides naming its address, so an
// address a node advertised cannot lead a forwarded call anywhere else.
// Calls made for a client carry who the client is (FORWARDED_FOR_METADATA);
// the other node accepts that only from a node certificate.
import tls, { type PeerCertificate } from 'node:tls';
import { Metadata, credentials, status as Status, type CallOptions, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { withoutIpServerName } from '../client/channel.js';
import { ERROR_CODE_TRAILER, isErrorCode } from '../common/error-codes.js';
import { GetJobsStreamReq, JobServiceClient, NodeServiceClient } from '../gen/jobworker/v1/jobworker.js';
import { JobworkerError } from '../supervisor/errors.js';
import { FORWARDED_FOR_METADATA, forwardedFor, type Caller } from '../supervisor/rpc/authz.js';
import type { TlsMaterial } from '../supervisor/rpc/tls-credentials.js';
import type { NodeInfo } from './nodes.js';

const CHANNEL_OPTIONS = {
  // The window is per stream: what a relayed stream may hold in this node
  // while its client reads slowly (plus grpc-js's 16 messages read ahead).
  // Larger is faster on loopback (FACTS.md: 16 MiB), but 100 slow followers
  // would hold 1.6 GiB here; bench scenario 9 measures what this one costs.
  'grpc-node.flow_control_window': 1024 * 1024,
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
};

interface Peer {
  address: string;
  jobs: JobServiceClient;
  nodes: NodeServiceClient;
}

export class Peers {
  readonly #peers = new Map<string, Peer>();

  constructor(readonly tls: TlsMaterial) {}

  /** The node's channel, made anew when its address changed (it re-registered elsewhere). */
  #peer(node: NodeInfo): Peer {
    const known = this.#peers.get(node.name);
    if (known && known.address === node.address) return known;
    known?.jobs.close();
    const creds = withoutIpServerName(
      credentials.createSsl(this.tls.ca, this.tls.key, this.tls.cert, {
        checkServerIdentity: (host, cert) => tls.checkServerIdentity(host, cert) ?? notTheNode(node.name, cert),
      }),
    );
    const jobs = new JobServiceClient(node.address, creds, CHANNEL_OPTIONS);
    // Both services on one channel: one connection per node.
    const peer = { address: node.address, jobs, nodes: new NodeServiceClient(node.address, creds, { channelOverride: jobs.getChannel() }) };
    this.#peers.set(node.name, peer);
    return peer;
  }

  jobs(node: NodeInfo): JobServiceClient {
    return this.#peer(node).jobs;
  }

  nodes(node: NodeInfo): NodeServiceClient {
    return this.#peer(node).nodes;
  }

  /**
   * The job's output from its node, each chunk as the bytes it was encoded
   * in there: they go on to the client as they are.
   */
  outputOf(node: NodeInfo, caller: Caller, request: GetJobsStreamReq, options: Partial<CallOptions>): ClientReadableStream<Buffer> {
    return this.jobs(node).makeServerStreamRequest(
      '/jobworker.v1.JobService/GetJobsStream',
      (req: GetJobsStreamReq) => Buffer.from(GetJobsStreamReq.encode(req).finish()),
      (bytes: Buffer) => bytes,
      request,
      forwardedMetadata(caller),
      options,
    );
  }

  close(): void {
    // Closing one client closes the channel both use.
    for (const peer of this.#peers.values()) peer.jobs.close();
    this.#peers.clear();
  }
}

export function forwardedMetadata(caller: Caller): Metadata {
  const metadata = new Metadata();
  metadata.set(FORWARDED_FOR_METADATA, forwardedFor(caller));
  return metadata;
}

function notTheNode(name: string, cert: PeerCertificate): Error | undefined {
  const { CN, OU } = cert.subject ?? {};
  if (OU === 'node' && CN === name) return undefined;
  return new Error(`the certificate at node ${name}'s address is not node ${name}'s (CN ${JSON.stringify(CN)}, OU ${JSON.stringify(OU)})`);
}

/**
 * What another node's failed answer means here: its own error (a code in
 * the trailer) goes on to the client as it is; anything else means the node
 * could not answer, and says which node.
 */
export function fromPeer(err: unknown, node: NodeInfo): JobworkerError {
  const failure = err as ServiceError;
  const [code] = failure.metadata?.get(ERROR_CODE_TRAILER) ?? [];
  if (typeof code === 'string' && isErrorCode(code)) return new JobworkerError(code, failure.details);
  return nodeUnavailable(node, `${Status[failure.code] ?? 'error'}: ${failure.details ?? String(err)}`);
}

export function nodeUnavailable(node: Pick<NodeInfo, 'name' | 'address'>, why: string): JobworkerError {
  return new JobworkerError('NODE_UNAVAILABLE', `node ${node.name} (${node.address}) is unavailable: ${why}`);
}
