// Post-copy and hybrid migrations of a 1 GiB guest next to live, with raw loopback TCP from the same
// run: fault latency while bulk pages flow (the vCPU's blocked time, fault to page present), faults as
// a share of the working set, and total time against the time raw TCP needs for the guest's bytes.

import { rawLoopbackGBps } from './raw-tcp.js';
import { GUEST, migrateOnce, type MigrationRun } from './e2e.bench.js';
import { median, printTable, type Row } from './util.js';

const GUEST_BYTES = 2 ** 30;
const HOT_BYTES = 64 * 2 ** 20;

export async function benchPostcopy(runs: number): Promise<void> {
  const guest = ['--memory', GUEST, '--seed', '2', '--fill', 'mixed', '--workload', 'hotset', '--hot-size', '64MiB', '--warmup', '200'];
  const cases: [string, string[]][] = [
    ['live', ['--mode', 'live']],
    ['postcopy', ['--mode', 'postcopy']],
    // The same with the background push capped, leaving the CPU to the fault path: the latency floor.
    ['postcopy, push capped at 64 MiB/s', ['--mode', 'postcopy', '--max-bandwidth', '64MiB']],
    ['hybrid (post-copy after 1 pass)', ['--mode', 'hybrid', '--postcopy-after', '1']],
  ];
  const raw: number[] = [];
  const results = new Map<string, MigrationRun[]>();
  for (let r = 0; r < runs; r++) {
    raw.push(await rawLoopbackGBps(GUEST_BYTES));
    for (const [name, args] of cases) {
      const m = await migrateOnce([...guest, ...args], ['--prealloc', '--run-steps', '2000000']);
      results.set(name, [...(results.get(name) ?? []), m]);
    }
  }
  const baseline = median(raw);
  const rawMs = GUEST_BYTES / baseline / 1e6;
  const rows: Row[] = [{ name: 'raw loopback TCP for the guest bytes (baseline)', 'total ms': rawMs, 'x raw time': 1, 'downtime ms': '', faults: '', 'faults / hot pages': '', 'p50 µs': '', 'p99 µs': '', 'max µs': '' }];
  for (const [name] of cases) {
    const ms = results.get(name)!;
    const p = (f: (m: MigrationRun) => number): number => median(ms.map(f));
    const pc = ms[0].dest.postcopy;
    const total = p((m) => m.source.totalTimeMs - m.source.setupTimeMs);
    rows.push({
      name: `${name}, pre-touched destination`,
      'total ms': total,
      'x raw time': total / rawMs,
      'downtime ms': p((m) => m.source.downtimeMs ?? NaN),
      faults: pc === null ? '' : p((m) => m.dest.postcopy!.faults),
      'faults / hot pages': pc === null ? '' : p((m) => m.dest.postcopy!.faults / (HOT_BYTES / 4096)),
      'p50 µs': pc === null ? '' : p((m) => m.dest.postcopy!.faultLatencyUs.p50),
      'p99 µs': pc === null ? '' : p((m) => m.dest.postcopy!.faultLatencyUs.p99),
      'max µs': pc === null ? '' : p((m) => m.dest.postcopy!.faultLatencyUs.max),
    });
  }
  printTable(`Post-copy of a ${GUEST} guest with a 64 MiB hot set (median of ${runs} runs; total = after setup; latency = vCPU blocked per fault)`, rows);
}
