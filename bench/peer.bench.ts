// `npm run bench -- --peer qemu`: QEMU 7.2's live migration and memshift's on the same shapes, in one
// batch, interleaved run by run (QEMU, memshift, QEMU, memshift, …) because this host's steal time
// swings, next to raw loopback TCP measured in the same run. QEMU runs under TCG with the peer guest
// (test/qemu/guest/); memshift with its simulated guest. Medians of `runs` runs.
//
// Shapes (the targets of the performance issue, T1, T2, T4, T5):
//   idle      QEMU: 1 GiB guest, 512 MiB random + zero rest, destination pre-allocated;
//             memshift: 512 MiB random, destination prepared (--memory --prealloc). Same bytes on the wire.
//   dirty     256 MiB written at 200k pages/s, downtime limit 10 ms (QEMU: in a 512 MiB guest).
//   flat-out  256 MiB written flat out (memshift: at 500k pages/s, the peer guest's speed under TCG),
//             downtime limit 10 ms: QEMU post-copy after its first pass against
//             memshift hybrid (it decides when: rule 5 at half the link), and memshift live with
//             --on-stall throttle.
// Both guests write pages in order (memshift's `--workload sweep`, the peer guest's sweep), one write
// per page per step. QEMU's CPU includes its vCPU thread, which is idle (hlt) in the idle shape, the one
// CPU is compared on.

import { migrateOnce, type MigrationRun } from './e2e.bench.js';
import { QemuPeer, qemuInstalled, type QemuRun, type QemuShape } from './qemu/qemu-migration.js';
import { rawLoopbackGBps } from './raw-tcp.js';
import { cpuSeconds, gbPerCpuSecond, median, printTable, type Row } from './util.js';

interface Shape {
  name: string;
  qemu: QemuShape;
  memshift: Array<{ name: string; source: string[]; dest: string[] }>;
}

/**
 * The peer guest's flat-out rate under TCG: QEMU counts 0.4–0.6 M distinct dirty pages/s for it
 * (../shared/peers/qemu); memshift's simulated vCPU flat out writes ~5 M pages/s, another shape.
 */
const FLAT_OUT_RATE = '500000';

const sim = (memory: string, workload: string, rate: string, extra: string[] = []): string[] =>
  ['--memory', memory, '--seed', '7', '--fill', 'random', '--workload', workload, '--dirty-rate', rate, '--warmup', '1500', ...extra];

const SHAPES: Shape[] = [
  {
    name: 'idle',
    qemu: { memMiB: 1024, randomMiB: 512, dirtyMiB: 0, pagesPerSecond: 0, downtimeLimitMs: 300, postcopy: false, prealloc: true },
    memshift: [{ name: 'live', source: sim('512MiB', 'idle', 'max'), dest: ['--memory', '512MiB', '--prealloc'] }],
  },
  {
    name: 'dirty 200k pages/s',
    qemu: { memMiB: 512, randomMiB: 256, dirtyMiB: 256, pagesPerSecond: 200_000, downtimeLimitMs: 10, postcopy: false, prealloc: true },
    memshift: [{ name: 'live', source: sim('256MiB', 'sweep', '200000', ['--downtime-limit', '10']), dest: ['--memory', '256MiB', '--prealloc'] }],
  },
  {
    name: 'flat-out writer',
    // Post-copy needs fresh destination memory in QEMU (userfaultfd: pre-touched pages never fault);
    // memshift gates pages itself (present bits), so its destination is prepared as in the other shapes.
    qemu: { memMiB: 512, randomMiB: 256, dirtyMiB: 256, pagesPerSecond: 0, downtimeLimitMs: 10, postcopy: true, prealloc: false },
    memshift: [
      { name: 'hybrid', source: sim('256MiB', 'sweep', FLAT_OUT_RATE, ['--downtime-limit', '10', '--mode', 'hybrid']), dest: ['--memory', '256MiB', '--prealloc'] },
      { name: 'live, --on-stall throttle', source: sim('256MiB', 'sweep', FLAT_OUT_RATE, ['--downtime-limit', '10', '--on-stall', 'throttle']), dest: ['--memory', '256MiB', '--prealloc'] },
    ],
  },
];

export async function benchPeerQemu(runs: number): Promise<void> {
  if (!qemuInstalled()) {
    console.log('\n--peer qemu: qemu-system-x86_64 is not installed (apt-get install -y qemu-system-x86); skipped');
    return;
  }
  const peer = new QemuPeer();
  const raw: number[] = [];
  const qemu = new Map<string, QemuRun[]>();
  const ours = new Map<string, MigrationRun[]>();
  try {
    for (let r = 0; r < runs; r++) {
      raw.push(await rawLoopbackGBps(2 ** 30));
      for (const s of SHAPES) {
        qemu.set(s.name, [...(qemu.get(s.name) ?? []), await peer.run(s.qemu)]);
        for (const m of s.memshift) {
          const key = `${s.name}/${m.name}`;
          ours.set(key, [...(ours.get(key) ?? []), await migrateOnce(m.source, m.dest)]);
        }
      }
    }
  } finally {
    peer.dispose();
  }
  const baseline = median(raw);
  const rows: Row[] = [{ name: 'raw loopback TCP (baseline)', 'total ms': '', 'transfer ms': '', 'GB/s': baseline, 'x raw': 1, 'downtime ms': '', 'stop→resume ms': '', 'predicted ms': '', passes: '', 'CPU-s': '', 'GB per CPU-s': '', 'guest errors': '' }];
  for (const s of SHAPES) {
    const q = qemu.get(s.name)!;
    const done = q.filter((x) => x.status === 'completed');
    rows.push({
      name: `${s.name}: QEMU 7.2 ${s.qemu.postcopy ? 'post-copy' : 'pre-copy'} (${done.length}/${q.length} completed)`,
      'total ms': median(q.map((x) => x.totalMs)),
      'transfer ms': median(q.map((x) => x.totalMs - x.setupMs)),
      'GB/s': median(q.map((x) => x.gbps)),
      'x raw': median(q.map((x) => x.gbps)) / baseline,
      'downtime ms': median(q.map((x) => x.downtimeMs)),
      // QEMU's downtime is already STOP (source) → RESUME (destination), from its own events.
      'stop→resume ms': median(q.map((x) => x.downtimeMs)),
      'predicted ms': q.some((x) => x.expectedDowntimeMs !== null) ? median(q.map((x) => x.expectedDowntimeMs ?? NaN)) : '',
      passes: median(q.map((x) => x.dirtySyncCount)),
      'CPU-s': median(q.map((x) => x.cpuSeconds)),
      'GB per CPU-s': median(q.map((x) => x.transferredBytes / 1e9 / Math.max(0.01, x.cpuSeconds))),
      // The peer guest's own check on the destination: errors in its first sweep there / its last.
      'guest errors': q.every((x) => x.guestErrors === null) ? '' : q.map((x) => (x.guestErrors === null ? '–' : `${x.guestErrors.first}/${x.guestErrors.last}`)).join(' '),
    });
    for (const m of s.memshift) {
      const ms = ours.get(`${s.name}/${m.name}`)!;
      const pass1 = median(ms.map((x) => x.source.iterations[0].bytes / x.source.iterations[0].ms / 1e6));
      rows.push({
        name: `${s.name}: memshift ${m.name} (${ms.filter((x) => x.source.outcome === 'completed').length}/${ms.length} completed)`,
        'total ms': median(ms.map((x) => x.source.totalTimeMs)),
        'transfer ms': median(ms.map((x) => x.source.totalTimeMs - x.source.setupTimeMs)),
        'GB/s': pass1,
        'x raw': pass1 / baseline,
        'downtime ms': median(ms.map((x) => x.source.downtimeMs ?? NaN)),
        // Same host, same clock: the source's pause to the destination's resume, without RESUMED's way back.
        'stop→resume ms': median(ms.map((x) => (x.dest.resumedAtEpochMs ?? NaN) - (x.source.pausedAtEpochMs ?? NaN))),
        'predicted ms': median(ms.map((x) => x.source.predictedDowntimeMs ?? NaN)),
        passes: median(ms.map((x) => x.source.iterations.length)),
        'CPU-s': median(ms.map(cpuSeconds)),
        'GB per CPU-s': median(ms.map(gbPerCpuSecond)),
        // memshift's oracle is the digest both ends agree on; a mismatch fails the run instead.
        'guest errors': '',
      });
    }
  }
  printTable(`QEMU 7.2 (TCG) and memshift side by side on 127.0.0.1, interleaved, median of ${runs} runs (GB/s: QEMU bytes over total − setup, memshift first pass)`, rows);
}
