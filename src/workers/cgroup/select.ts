import fs from 'node:fs';
import path from 'node:path';
import type { CgroupConfig, CgroupDriverName } from '../protocol.js';
import type { CgroupDriver } from './driver.js';
import { CgroupV1Driver } from './v1.js';
import { CgroupV2Driver } from './v2.js';

/**
 * v2 when the mount root is a cgroup2 mount that offers controllers (a pure
 * v2 host); otherwise v1. A hybrid host (v1 controllers plus an empty
 * cgroup2 tree at <root>/unified) is v1.
 */
export function detectDriver(mountRoot: string): CgroupDriverName {
  try {
    const controllers = fs.readFileSync(path.join(mountRoot, 'cgroup.controllers'), 'utf8').trim();
    return controllers === '' ? 'v1' : 'v2';
  } catch {
    return 'v1';
  }
}

const drivers = new Map<string, CgroupDriver>();

/** One driver per configuration per thread: v1 parses mountinfo once. */
export function driverFor(config: CgroupConfig): CgroupDriver {
  const key = `${config.driver}:${config.mountRoot}:${config.parent}`;
  let driver = drivers.get(key);
  if (!driver) {
    driver = config.driver === 'v2' ? new CgroupV2Driver(config.mountRoot, config.parent) : new CgroupV1Driver(config.parent);
    drivers.set(key, driver);
  }
  return driver;
}
