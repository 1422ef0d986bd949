// What an operator can see while a migration runs, and what it cost the guest. For two guests between
// two processes on 127.0.0.1 (median of `runs` runs):
//   ETA error   the estimate made at the end of pass 1 (IterationRecord.etaMs) against what was
//               actually left: completedAtMs (RESUMED arrived) − that pass's endedAtMs
//   step rates  the guest's steps/s before (setup), during (median over the pre-copy passes), in the
//               stop-and-copy pass (paused: 0), and after resume on the destination (its report)
// The 256 MiB guest at 200k pages/s (90 % in a 16 MiB hot set) with a 10 ms limit needs a few passes,
// so its pass-1 estimate is the projected series (pass 1 prices a dirty page at a full page; later
// passes send deltas); the idle 1 GiB guest converges after pass 1, so its estimate is the final pass
// and the switchover alone, and its vCPU takes no steps at all.

import { migrateOnce, type MigrationRun } from './e2e.bench.js';
import { median, printTable, type Row } from './util.js';

interface Case {
  name: string;
  source: string[];
}

const CASES: Case[] = [
  {
    name: '256 MiB hot set, 200k pages/s, limit 10 ms',
    source: ['--memory', '256MiB', '--seed', '7', '--fill', 'mixed', '--workload', 'hotset', '--dirty-rate', '200000', '--downtime-limit', '10', '--warmup', '200'],
  },
  {
    name: '1 GiB random fill, idle',
    source: ['--memory', '1GiB', '--seed', '1', '--fill', 'random', '--workload', 'idle', '--warmup', '200'],
  },
  {
    name: '256 MiB uniform writer flat out, limit 10 ms, on-stall throttle',
    source: ['--memory', '256MiB', '--seed', '5', '--fill', 'mixed', '--workload', 'uniform', '--dirty-rate', 'max', '--downtime-limit', '10', '--on-stall', 'throttle', '--warmup', '200'],
  },
];

/** |eta − actual| / actual at the end of pass 1, in %; NaN when pass 1 had no finite estimate. */
export function pass1EtaErrorPct(m: MigrationRun): { eta: number; actual: number; errorPct: number } {
  const p1 = m.source.iterations[0];
  const actual = (m.source.completedAtMs ?? NaN) - p1.endedAtMs;
  const eta = p1.etaMs ?? NaN;
  return { eta, actual, errorPct: (Math.abs(eta - actual) / actual) * 100 };
}

/** The guest's step rates: pre-copy passes are all but the last (stop-and-copy) pass. */
function rates(m: MigrationRun): { before: number; during: number; paused: number; after: number } {
  const g = m.source.guestStepsPerSec;
  const precopy = g.perPass.slice(0, -1);
  return {
    before: g.beforeMigration ?? NaN,
    during: precopy.length === 0 ? NaN : median(precopy),
    paused: g.perPass[g.perPass.length - 1] ?? NaN,
    after: m.dest.guestStepsPerSec.afterResume ?? NaN,
  };
}

export async function benchVisibility(runs: number): Promise<void> {
  const results = new Map<string, MigrationRun[]>();
  for (let r = 0; r < runs; r++) {
    for (const c of CASES) {
      const m = await migrateOnce(c.source, ['--prealloc']);
      results.set(c.name, [...(results.get(c.name) ?? []), m]);
    }
  }
  const rows: Row[] = [];
  for (const c of CASES) {
    const ms = results.get(c.name)!;
    const p = (f: (m: MigrationRun) => number): number => median(ms.map(f));
    rows.push({
      name: c.name,
      passes: p((m) => m.source.iterations.length),
      'total ms': p((m) => m.source.totalTimeMs),
      converged: ms.filter((m) => m.source.converged).length + ` of ${ms.length}`,
      'pass-1 eta ms': p((m) => pass1EtaErrorPct(m).eta),
      'actual ms': p((m) => pass1EtaErrorPct(m).actual),
      'eta error %': p((m) => pass1EtaErrorPct(m).errorPct),
      'downtime ms': p((m) => m.source.downtimeMs ?? NaN),
      'predicted ms': p((m) => m.source.predictedDowntimeMs ?? NaN),
      'prediction error %': p((m) => (m.source.downtimeMs && m.source.predictedDowntimeMs !== null ? (100 * Math.abs(m.source.predictedDowntimeMs - m.source.downtimeMs)) / m.source.downtimeMs : NaN)),
      'steps/s before': p((m) => rates(m).before),
      'during': p((m) => rates(m).during),
      'stop-and-copy': p((m) => rates(m).paused),
      'after resume': p((m) => rates(m).after),
    });
  }
  printTable(`ETA at the end of pass 1 and the guest's step rate (median of ${runs} runs; actual = time left after pass 1; during = median over pre-copy passes)`, rows);
}
