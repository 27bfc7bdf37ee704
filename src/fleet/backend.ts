// The fleet as a backend of the server (ServerOptions.backend): connects to
// etcd, checks it can use it (a wrong endpoint, certificate or role stops the
// start with one line, as any bad flag does), and puts a FleetNode in front
// of the local JobService; the fleet's schedules are kept in etcd.
import type { Backend, BackendFactory } from '../supervisor/server.js';
import type { FleetConfig } from './config.js';
import { checkEtcd, connectEtcd } from './etcd.js';
import { FleetNode } from './fleet-node.js';
import { fleetJobs } from './fleet-schedules.js';
import { FleetKeys } from './keys.js';
import { EtcdScheduleStore } from './schedule-store.js';

export function fleetBackend(config: FleetConfig): BackendFactory {
  return async (local): Promise<Backend> => {
    const client = connectEtcd(config.etcd, config.etcdTls);
    try {
      await checkEtcd(client, config.etcd, `${new FleetKeys(config.prefix).nodePrefix(config.nodeName)}check`);
    } catch (err) {
      client.close();
      throw err;
    }
    // One scrape configuration covers the fleet: every series says its node.
    local.metrics.registry.setDefaultLabels({ node: config.nodeName });
    const node = new FleetNode(config, client, local, local.logger.child({ node: config.nodeName }));
    const book = new EtcdScheduleStore(client, node.keys);
    return {
      api: node,
      services: { fleet: node, node },
      jobEnded: (record) => node.jobEnded(record),
      jobPruned: (record) => node.jobPruned(record),
      join: (port) => node.join(port),
      leaving: () => node.leaving(),
      close: () => node.close(),
      schedules: {
        book,
        jobs: fleetJobs(node, book),
        // A firing under forbid or replace waits on a dead node's firing until the fleet has judged it: past its loss.
        fleet: { node: config.nodeName, syncEveryMs: config.heartbeatMs, policyWaitMs: Math.max(60_000, 2 * config.nodeLostAfterMs + 10_000) },
      },
    };
  };
}

export { FleetStartError } from './etcd.js';
