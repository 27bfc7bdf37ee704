// Job ids in a fleet: UUIDv7 (RFC 9562), whose first 48 bits are the time in
// milliseconds, so the fleet's records (jobs/<id>) sort newest last by key and
// GetJobs pages through them with one range read each, whichever node
// created them. Within one millisecond the order is random; across nodes it
// is as good as their clocks.
import { randomBytes } from 'node:crypto';

export function uuidv7(now = Date.now()): string {
  const bytes = randomBytes(16);
  bytes.writeUIntBE(now, 0, 6);
  bytes[6] = (bytes[6]! & 0x0f) | 0x70;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
