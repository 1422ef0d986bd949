// `npm run bench -- --only qemu`: one QEMU guest (test/qemu/guest/) migrated by QEMU 7.2 alone and by
// QEMU + memshift (qemu-source → qemu-dest: memshift carries the RAM, hash-scanned, QEMU the devices),
// interleaved run by run in one batch because this host's steal time swings. QEMU under TCG.
//
// Shapes (issue 13's targets: stop→resume ≤ QEMU's own; total ≤ 1.2× QEMU's on the idle 1 GiB guest):
//   idle 1 GiB   512 MiB random + zero rest, both destinations pre-allocated, downtime limit 300 ms
//   dirty        512 MiB guest, 256 MiB written at 20k pages/s, downtime limit 50 ms
// CPU is every process's: both QEMUs (vCPU threads included) and, with memshift, both memshift processes.

import { openSync, closeSync, readSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { GuestMemory } from '../src/memory/guest-memory.js';
import { scanChangedPages } from '../src/memory/file-pages.js';
import { kernelsOf } from '../src/memory/slab.js';
import { windowOf } from '../src/memory/slab-layout.js';
import { ScratchAgent } from '../src/memory/scratch-agents.js';
import { QemuPeer, qemuInstalled, type QemuRun, type QemuShape } from './qemu/qemu-migration.js';
import { median, printTable, type Row } from './util.js';

const SHAPES: Array<{ name: string; shape: QemuShape }> = [
  { name: 'idle 1 GiB', shape: { memMiB: 1024, randomMiB: 512, dirtyMiB: 0, pagesPerSecond: 0, downtimeLimitMs: 300, postcopy: false, prealloc: true } },
  { name: 'dirty 20k pages/s', shape: { memMiB: 512, randomMiB: 256, dirtyMiB: 256, pagesPerSecond: 20_000, downtimeLimitMs: 50, postcopy: false, prealloc: true } },
];

export async function benchQemuAdapter(runs: number): Promise<void> {
  benchHashScan(runs);
  if (!qemuInstalled()) {
    console.log('\nqemu: qemu-system-x86_64 is not installed (apt-get install -y qemu-system-x86); skipped');
    return;
  }
  const peer = new QemuPeer();
  const results = new Map<string, QemuRun[]>();
  const add = (key: string, r: QemuRun): void => void results.set(key, [...(results.get(key) ?? []), r]);
  try {
    for (let r = 0; r < runs; r++) {
      for (const s of SHAPES) {
        add(`${s.name}/qemu`, await peer.run({ ...s.shape, carrier: 'qemu' }));
        add(`${s.name}/memshift`, await peer.run({ ...s.shape, carrier: 'memshift' }));
      }
    }
  } finally {
    peer.dispose();
  }
  const rows: Row[] = [];
  for (const s of SHAPES) {
    const q = results.get(`${s.name}/qemu`)!;
    const m = results.get(`${s.name}/memshift`)!;
    const row = (label: string, x: QemuRun[], ref: QemuRun[] | null): Row => ({
      name: `${s.name}: ${label} (${x.filter((y) => y.status === 'completed').length}/${x.length} completed)`,
      'total ms': median(x.map((y) => y.totalMs)),
      'x QEMU total': ref === null ? 1 : median(x.map((y) => y.totalMs)) / median(ref.map((y) => y.totalMs)),
      'stop→resume ms': median(x.map((y) => y.downtimeMs)),
      'x QEMU stop→resume': ref === null ? 1 : median(x.map((y) => y.downtimeMs)) / median(ref.map((y) => y.downtimeMs)),
      'MB moved': median(x.map((y) => y.transferredBytes / 1e6)),
      passes: median(x.map((y) => y.dirtySyncCount)),
      'CPU-s (all)': median(x.map((y) => y.cpuSeconds)),
      'of which memshift': median(x.map((y) => y.memshiftCpuSeconds)),
      // The guest's own check on the destination: its error count in the first and last status line there.
      'guest errors': x.map((y) => (y.guestErrors === null ? '–' : `${y.guestErrors.first}/${y.guestErrors.last}`)).join(' '),
    });
    rows.push(row('QEMU 7.2 alone', q, null), row('QEMU + memshift', m, q));
  }
  printTable(`One QEMU guest moved by QEMU 7.2 alone and by QEMU + memshift (RAM over memshift, hash-scan), interleaved, median of ${runs} runs`, rows);
}

/**
 * What one hash-scan costs, on one thread, over a 1 GiB file of random pages on /dev/shm (tmpfs, where
 * a QEMU keeps its RAM file): reading it alone (positioned reads of half a MiB into a window, the
 * baseline), hashing a window-full at a time alone, and the scan itself (file-pages.ts scanChangedPages).
 */
function benchHashScan(runs: number): void {
  const path = `/dev/shm/memshift-bench-scan-${process.pid}`;
  const bytes = 2 ** 30;
  const chunk = 512 * 1024;
  const fd = openSync(path, 'w+');
  try {
    for (let at = 0; at < bytes; at += 16 << 20) writeSync(fd, randomBytes(16 << 20), 0, 16 << 20, at);
    const memory = GuestMemory.allocate([{ id: 0, name: 'ram', kind: 'ram', pageSize: 4096, pageCount: bytes / 4096, file: { path, offset: 0 } }]);
    const slab = memory.slabsOf(0)[0];
    const window = windowOf(slab.layout, ScratchAgent.MAIN);
    const u8 = new Uint8Array(slab.memory.buffer);
    const k = kernelsOf(slab).raw;
    const read: number[] = [];
    const hash: number[] = [];
    const scan: number[] = [];
    for (let r = 0; r < runs; r++) {
      let t = performance.now();
      for (let at = 0; at < bytes; at += chunk) readSync(fd, u8, window, chunk, at);
      read.push(performance.now() - t);
      t = performance.now();
      for (let at = 0; at < bytes; at += chunk) k.hashPages(window, 4096, chunk / 4096, slab.layout.scratch);
      hash.push(performance.now() - t);
      t = performance.now();
      scanChangedPages(slab, ScratchAgent.MAIN, 0, slab.pageCount);
      scan.push(performance.now() - t);
    }
    memory.closeFiles();
    const base = median(read);
    printTable(`Hash-scan of 1 GiB of random pages on /dev/shm, one thread, median of ${runs} runs`, [
      { name: 'read into a window, half a MiB at a time (baseline)', ms: base, 'x read': 1 },
      { name: 'hash a window-full at a time (mxh64)', ms: median(hash), 'x read': median(hash) / base },
      { name: 'scan: read + hash + compare (scanChangedPages)', ms: median(scan), 'x read': median(scan) / base },
    ]);
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
}
