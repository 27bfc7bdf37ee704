// The connection to etcd, set up for the pitfalls measured with etcd 3.4 and
// the etcd3 client (../shared/FACTS.md): every unary call gets a deadline (the
// client sets none, and a stopped member hung calls for as long as it was
// stopped; with one, the client's retry moves the call to another member),
// gRPC keepalive finds dead connections, and answers may be large (a page of
// job records).
import type { ChannelCredentials } from '@grpc/grpc-js';
import { Etcd3, EtcdPermissionDeniedError } from 'etcd3';
import { withoutIpServerName } from '../client/channel.js';
import { messageOf } from '../common/error-message.js';
import type { TlsMaterial } from '../supervisor/rpc/tls-credentials.js';

/** Per unary call; the client retries on another member within its own policy (3 tries). */
export const CALL_TIMEOUT_MS = 2_000;

export function connectEtcd(endpoints: string[], tls: TlsMaterial): Etcd3 {
  const client = new Etcd3({
    hosts: endpoints,
    credentials: { rootCertificate: tls.ca, privateKey: tls.key, certChain: tls.cert },
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS }),
    dialTimeout: CALL_TIMEOUT_MS,
    grpcOptions: {
      'grpc.keepalive_time_ms': 5_000,
      'grpc.keepalive_timeout_ms': 2_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    },
  });
  // etcd members are usually named by IP address, which grpc-js would send as
  // the TLS server name and Node would warn about on the server's stderr
  // (DEP0123). etcd3 makes one credentials object, shared by its hosts and
  // used only at their first connection: the client library's fix is applied
  // to it in place. (Cosmetic: if etcd3's insides change, the warning is back.)
  const hosts = (client as unknown as { pool?: { hosts?: { channelCredentials?: ChannelCredentials }[] } }).pool?.hosts ?? [];
  for (const credentials of new Set(hosts.map((host) => host.channelCredentials))) if (credentials) withoutIpServerName(credentials);
  return client;
}

/** etcd could not be used at start: the flags or the cluster are wrong. jobworkerd exits 2. */
export class FleetStartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FleetStartError';
  }
}

/**
 * One read and one write under this node's own keys, so that a wrong
 * endpoint, certificate or etcd role is found at start, named, rather than
 * at the first job.
 */
export async function checkEtcd(client: Etcd3, endpoints: string[], ownKey: string): Promise<void> {
  try {
    await client.get(ownKey).exec();
    await client.put(ownKey).value('').exec();
  } catch (err) {
    const why = err instanceof EtcdPermissionDeniedError ? `permission denied writing ${ownKey} (grant this node's etcd user its nodes/<name>/ prefix)` : messageOf(err);
    throw new FleetStartError(`cannot use etcd at ${endpoints.join(',')}: ${why}`);
  }
}
