// Block migration's cost (issue 12's disk target): a 1 GiB idle random guest with a 4 GiB sparse disk of
// which the first 1 GiB is written (`--disk 4GiB --disk-fill 1GiB`) migrates live into a prepared
// destination, interleaved run by run with the same guest without the disk, next to two baselines
// measured in the same run: raw loopback TCP, and this machine's disk taking 1 GiB into a sparse file
// as the destination writes blocks (O_DIRECT, 4 MiB writes, then fdatasync; the page cache is no
// baseline here: its pages are new memory the hypervisor backs on first touch, 1–3 s per GiB from
// one run to the next). What the disk adds (start → guest running on the destination, with disk minus
// without) is compared with both, and with what the same bytes cost as RAM (the run without the
// disk moves 1 GiB of pages). Medians.

import { closeSync, constants, fdatasyncSync, mkdtempSync, openSync, rmSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rawLoopbackGBps } from './raw-tcp.js';
import { migrateOnce, type MigrationRun } from './e2e.bench.js';
import { cpuSeconds, median, printTable, type Row } from './util.js';

const WRITTEN = 2 ** 30;

/** ms to write `WRITTEN` bytes into a new sparse 4 GiB file, O_DIRECT in 4 MiB writes, then fdatasync. */
function diskWriteMs(): number {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-bench-disk-'));
  try {
    const path = join(dir, 'disk.img');
    closeSync(openSync(path, 'w'));
    truncateSync(path, 4 * WRITTEN);
    const fd = openSync(path, constants.O_WRONLY | constants.O_DIRECT);
    // O_DIRECT wants an aligned buffer: a WebAssembly memory starts on a page.
    const chunk = new Uint8Array(new WebAssembly.Memory({ initial: 64, maximum: 64 }).buffer).fill(0x5a);
    const t = performance.now();
    for (let at = 0; at < WRITTEN; at += chunk.length) writeSync(fd, chunk, 0, chunk.length, at);
    fdatasyncSync(fd);
    const ms = performance.now() - t;
    closeSync(fd);
    return ms;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchDisk(runs: number): Promise<void> {
  const raw: number[] = [];
  const disk: number[] = [];
  const withDisk: MigrationRun[] = [];
  const without: MigrationRun[] = [];
  const guest = ['--memory', '1GiB', '--seed', '1', '--fill', 'random', '--workload', 'idle', '--warmup', '200'];
  const prepared = ['--memory', '1GiB', '--prealloc'];
  for (let r = 0; r < runs; r++) {
    raw.push(await rawLoopbackGBps(2 ** 30));
    disk.push(diskWriteMs());
    withDisk.push(await migrateOnce([...guest, '--disk', '4GiB', '--disk-fill', '1GiB'], prepared));
    without.push(await migrateOnce(guest, prepared));
  }
  const rawGBps = median(raw);
  const rawMs = WRITTEN / 1e6 / rawGBps;
  const diskMs = median(disk);
  const done = (m: MigrationRun): number => m.source.completedAtMs ?? m.source.totalTimeMs;
  const added = median(withDisk.map((m, i) => done(m) - done(without[i])));
  const asRam = median(without.map(done));
  const rows: Row[] = [
    { name: 'raw loopback TCP, 1 GiB (baseline)', 'ms': rawMs, 'GB on the wire': WRITTEN / 1e9, 'cpu-s': '', '× raw TCP': 1, '× disk write': '', '× as RAM': '' },
    { name: 'disk: 1 GiB O_DIRECT into a sparse file + fdatasync (baseline)', 'ms': diskMs, 'GB on the wire': '', 'cpu-s': '', '× raw TCP': diskMs / rawMs, '× disk write': 1, '× as RAM': '' },
    { name: '1 GiB RAM, no disk', 'ms': asRam, 'GB on the wire': median(without.map((m) => m.source.bytesTransferred / 1e9)), 'cpu-s': median(without.map(cpuSeconds)), '× raw TCP': asRam / rawMs, '× disk write': '', '× as RAM': 1 },
    { name: '1 GiB RAM + 4 GiB disk, 1 GiB written', 'ms': median(withDisk.map(done)), 'GB on the wire': median(withDisk.map((m) => m.source.bytesTransferred / 1e9)), 'cpu-s': median(withDisk.map(cpuSeconds)), '× raw TCP': '', '× disk write': '', '× as RAM': '' },
    { name: 'what the disk adds (run by run)', 'ms': added, 'GB on the wire': '', 'cpu-s': '', '× raw TCP': added / rawMs, '× disk write': added / diskMs, '× as RAM': added / asRam },
  ];
  printTable(`Block migration: live, idle guest, prepared destination, medians of ${runs} interleaved runs (target: the disk adds ≤ 1.2× raw TCP's time for its written blocks; × as RAM: against moving the same bytes as pages)`, rows);
}
