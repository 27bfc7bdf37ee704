// Parsers for the cgroupfs files a job's resource usage is read from. Pure
// functions of the file text, so both drivers share them and tests can feed
// them the formats of kernels this machine does not run.

/** Bytes read and written, summed over the given devices. */
export interface IoBytes {
  read: number;
  write: number;
}

/** Every "key value" line of a flat-keyed file (cpu.stat, memory.events…). */
export function parseFlatKeyed(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, value] = line.split(' ');
    if (key && value !== undefined) values.set(key, Number(value));
  }
  return values;
}

/**
 * cgroup v2 io.stat: one line per device that saw I/O,
 * "8:0 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0".
 * Only `devices` count: a loop or device-mapper device's I/O is counted
 * again on the physical device underneath.
 */
export function parseIoStat(text: string, devices: readonly string[]): IoBytes {
  const bytes: IoBytes = { read: 0, write: 0 };
  for (const line of text.split('\n')) {
    const [device, ...fields] = line.split(' ');
    if (!device || !devices.includes(device)) continue;
    for (const field of fields) {
      const [key, value] = field.split('=');
      if (key === 'rbytes') bytes.read += Number(value);
      else if (key === 'wbytes') bytes.write += Number(value);
    }
  }
  return bytes;
}

/**
 * cgroup v1 blkio.throttle.io_service_bytes: "8:0 Read 4096", "8:0 Write 0",
 * … per device, then "Total 4096". Counted at the throttling layer, so it
 * sees every bio the job issued whether or not a limit is set.
 */
export function parseBlkioServiceBytes(text: string, devices: readonly string[]): IoBytes {
  const bytes: IoBytes = { read: 0, write: 0 };
  for (const line of text.split('\n')) {
    const [device, op, value] = line.split(' ');
    if (!device || !devices.includes(device) || value === undefined) continue;
    if (op === 'Read') bytes.read += Number(value);
    else if (op === 'Write') bytes.write += Number(value);
  }
  return bytes;
}
