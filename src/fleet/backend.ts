// The fleet as a backend of the server (ServerOptions.backend): connects to
// etcd, checks it can use it (a wrong endpoint, certificate or role stops the
// start with one line, as any bad flag does), and puts a FleetNode in front
// of the local JobService.
import type { Backend, BackendFactory } from '../supervisor/server.js';
import type { FleetConfig } from './config.js';
import { checkEtcd, connectEtcd } from './etcd.js';
import { FleetNode } from './fleet-node.js';
import { FleetKeys } from './keys.js';

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
    return {
      api: node,
      services: { fleet: node, node },
      jobEnded: (record) => node.jobEnded(record),
      jobPruned: (record) => node.jobPruned(record),
      join: (port) => node.join(port),
      leaving: () => node.leaving(),
      close: () => node.close(),
    };
  };
}

export { FleetStartError } from './etcd.js';
