// Block migration's cost (issue 12's disk target): a 1 GiB idle random guest with a 4 GiB sparse disk of
// which the first 1 GiB is written (`--disk 4GiB --disk-fill 1GiB`) migrates live into a prepared
// destination, interleaved run by run with the same guest without the disk, next to raw loopback TCP
// measured in the same run. What the disk adds (start → guest running on the destination, with disk
// minus without) is compared with the time raw TCP needs for the disk's written blocks. Medians.

import { rawLoopbackGBps } from './raw-tcp.js';
import { migrateOnce, type MigrationRun } from './e2e.bench.js';
import { cpuSeconds, median, printTable, type Row } from './util.js';

const WRITTEN = 2 ** 30;

export async function benchDisk(runs: number): Promise<void> {
  const raw: number[] = [];
  const withDisk: MigrationRun[] = [];
  const without: MigrationRun[] = [];
  const guest = ['--memory', '1GiB', '--seed', '1', '--fill', 'random', '--workload', 'idle', '--warmup', '200'];
  const prepared = ['--memory', '1GiB', '--prealloc'];
  for (let r = 0; r < runs; r++) {
    raw.push(await rawLoopbackGBps(2 ** 30));
    withDisk.push(await migrateOnce([...guest, '--disk', '4GiB', '--disk-fill', '1GiB'], prepared));
    without.push(await migrateOnce(guest, prepared));
  }
  const rawGBps = median(raw);
  const rawMs = WRITTEN / 1e6 / rawGBps;
  const done = (m: MigrationRun): number => m.source.completedAtMs ?? m.source.totalTimeMs;
  const added = median(withDisk.map((m, i) => done(m) - done(without[i])));
  const rows: Row[] = [
    { name: 'raw loopback TCP, 1 GiB (baseline)', 'ms': rawMs, 'GB on the wire': WRITTEN / 1e9, 'cpu-s': '', '× raw TCP for the written blocks': 1 },
    { name: '1 GiB RAM, no disk', 'ms': median(without.map(done)), 'GB on the wire': median(without.map((m) => m.source.bytesTransferred / 1e9)), 'cpu-s': median(without.map(cpuSeconds)), '× raw TCP for the written blocks': '' },
    { name: '1 GiB RAM + 4 GiB disk, 1 GiB written', 'ms': median(withDisk.map(done)), 'GB on the wire': median(withDisk.map((m) => m.source.bytesTransferred / 1e9)), 'cpu-s': median(withDisk.map(cpuSeconds)), '× raw TCP for the written blocks': '' },
    { name: 'what the disk adds (run by run)', 'ms': added, 'GB on the wire': '', 'cpu-s': '', '× raw TCP for the written blocks': added / rawMs },
  ];
  printTable(`Block migration: live, idle guest, prepared destination, medians of ${runs} interleaved runs (target: the disk adds ≤ 1.2× raw TCP for its written blocks)`, rows);
}
