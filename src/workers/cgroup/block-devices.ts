import fs from 'node:fs';
import path from 'node:path';

/**
 * "major:minor" of every physical block device: the entries of /sys/block
 * backed by hardware (they have a `device` link). Loop, zram, ram and
 * device-mapper devices are left out: their I/O lands on a physical device,
 * where the throttle applies.
 */
export function physicalBlockDevices(sysBlock = '/sys/block'): string[] {
  const devices: string[] = [];
  for (const name of fs.readdirSync(sysBlock)) {
    const dir = path.join(sysBlock, name);
    if (!fs.existsSync(path.join(dir, 'device'))) continue;
    devices.push(fs.readFileSync(path.join(dir, 'dev'), 'utf8').trim());
  }
  return devices;
}
