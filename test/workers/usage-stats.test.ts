import test from 'ava';
import { parseBlkioServiceBytes, parseFlatKeyed, parseIoStat } from '../../src/workers/cgroup/usage-stats.js';

test('usage: cpu.stat and memory.events parse as key → number', (t) => {
  const stat = parseFlatKeyed('usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nthrottled_usec 42\n');
  t.is(stat.get('usage_usec'), 1500);
  t.is(stat.get('throttled_usec'), 42);
  t.is(stat.get('nr_bursts'), undefined);
});

test('usage: io.stat sums rbytes and wbytes over the physical devices only', (t) => {
  const text = [
    '254:0 rbytes=1048576 wbytes=2097152 rios=16 wios=32 dbytes=0 dios=0',
    '253:0 rbytes=999 wbytes=999 rios=1 wios=1 dbytes=0 dios=0', // dm on top of 254:0: counted there already
    '8:16 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0',
    '',
  ].join('\n');
  t.deepEqual(parseIoStat(text, ['254:0', '8:16']), { read: 1048576 + 4096, write: 2097152 });
  t.deepEqual(parseIoStat('', ['254:0']), { read: 0, write: 0 }, 'no line: no I/O yet');
});

test('usage: blkio.throttle.io_service_bytes sums Read and Write over the physical devices only', (t) => {
  const text = [
    '254:0 Read 8388608',
    '254:0 Write 4194304',
    '254:0 Sync 4194304',
    '254:0 Async 8388608',
    '254:0 Discard 0',
    '254:0 Total 12582912',
    '7:0 Read 512',
    '7:0 Write 512',
    'Total 12583936',
  ].join('\n');
  t.deepEqual(parseBlkioServiceBytes(text, ['254:0']), { read: 8388608, write: 4194304 });
});
