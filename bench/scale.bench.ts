// How cost grows with the guest: live migrations of idle random guests from 256 MiB to 8 GiB into
// prepared destinations (`dest --memory SIZE --prealloc`), sizes interleaved run by run (256M 1G 4G 8G
// 256M …) so that drift on a noisy machine hits every size alike, next to raw loopback TCP measured in
// the same run. Per size: first-pass rate and its ratio to raw TCP, milliseconds and CPU-seconds per
// GiB moved, and each side's peak resident memory against the budget (guest + 10 % + 64 MiB).

import { rawLoopbackGBps } from './raw-tcp.js';
import { migrateOnce, type MigrationRun } from './e2e.bench.js';
import { cpuSeconds, median, printTable, type Row } from './util.js';

const SIZES: ReadonlyArray<{ name: string; bytes: number }> = [
  { name: '256MiB', bytes: 2 ** 28 },
  { name: '1GiB', bytes: 2 ** 30 },
  { name: '4GiB', bytes: 2 ** 32 },
  { name: '8GiB', bytes: 2 ** 33 },
];
const MiB = 2 ** 20;

/** The memory budget for one side: the guest, a tenth more, and 64 MiB. */
const budget = (guestBytes: number): number => guestBytes * 1.1 + 64 * MiB;

export async function benchScale(runs: number): Promise<void> {
  const results = SIZES.map(() => [] as MigrationRun[]);
  const raw: number[] = [];
  for (let r = 0; r < runs; r++) {
    raw.push(await rawLoopbackGBps(2 ** 30));
    for (let i = 0; i < SIZES.length; i++) {
      const size = SIZES[i].name;
      results[i].push(await migrateOnce(
        ['--memory', size, '--seed', '1', '--fill', 'random', '--workload', 'idle', '--warmup', '200'],
        ['--memory', size, '--prealloc'],
      ));
    }
  }
  const rawGBps = median(raw);
  const rows: Row[] = [{ name: 'raw loopback TCP (baseline)', 'pass 1 GB/s': rawGBps, '× raw TCP': 1, 'ms per GiB': 2 ** 30 / 1e6 / rawGBps, 'cpu-s per GB': '', 'source peak MiB': '', 'dest peak MiB': '', 'budget MiB': '' }];
  SIZES.forEach((s, i) => {
    const ms = results[i];
    const pass1 = median(ms.map((m) => m.source.iterations[0].bytes / m.source.iterations[0].ms / 1e6));
    const gib = s.bytes / 2 ** 30;
    rows.push({
      name: `${s.name} random, idle, prepared destination`,
      'pass 1 GB/s': pass1,
      '× raw TCP': pass1 / rawGBps,
      'ms per GiB': median(ms.map((m) => (m.source.completedAtMs ?? m.source.totalTimeMs) / gib)),
      'cpu-s per GB': median(ms.map((m) => cpuSeconds(m) / (m.source.bytesTransferred / 1e9))),
      'source peak MiB': median(ms.map((m) => (m.source.peakRssBytes ?? NaN) / MiB)),
      'dest peak MiB': median(ms.map((m) => (m.dest.peakRssBytes ?? NaN) / MiB)),
      'budget MiB': budget(s.bytes) / MiB,
    });
  });
  printTable(`Scale: idle random guests, medians of ${runs} interleaved runs (ms per GiB: start to guest running on the destination)`, rows);
}
