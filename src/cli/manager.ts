// `memshift manager --simulate`: the Sandpiper-style manager (src/manager/) run against a simulated
// cluster of `--hosts` hosts and `--guests` guests, seeded: profiles, hotspot detection, the migration
// plans (what, where, how much, which mode, and why) and night-time consolidation with the hosts that
// could power off. It measures the manager itself: planning time per interval, decisions per second,
// hotspots resolved and their delay in intervals, hosts freed against first-fit-decreasing. Managing
// real hosts (`memshift host`, metrics, executing the plans with the engine) is not built yet.

import { DEFAULT_SIMULATION, simulate } from '../manager/simulation.js';
import { checkOutputPaths, parseCommand, parseInteger, requireString, usageError, writeReportFile, type Flags } from './args.js';

export const managerFlags: Flags = {
  simulate: { type: 'boolean', help: 'run against a simulated cluster (the only mode built so far)' },
  hosts: { type: 'string', value: 'N', help: 'simulated hosts (32 cores, 256 GiB, 10 Gb/s each)', default: String(DEFAULT_SIMULATION.hosts) },
  guests: { type: 'string', value: 'N', help: 'simulated guests', default: String(DEFAULT_SIMULATION.guests) },
  seed: { type: 'string', value: 'N', help: 'seed of the simulated cluster and its demand', default: String(DEFAULT_SIMULATION.seed) },
  intervals: { type: 'string', value: 'N', help: 'detection intervals of the simulated day', default: String(DEFAULT_SIMULATION.intervals) },
  'surge-share': { type: 'string', value: 'PERCENT', help: 'hosts whose guests surge (CPU ×3) from the fifth interval', default: String(DEFAULT_SIMULATION.surgeShare * 100) },
  report: { type: 'string', value: 'FILE', help: 'write the JSON report here' },
  quiet: { type: 'boolean', help: 'no summary' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function runManager(argv: readonly string[]): Promise<number> {
  const a = parseCommand(argv, 'manager', 'Decide when and where to migrate (Sandpiper): hotspot detection, placement, consolidation. Only --simulate is built so far.', managerFlags);
  if (a === null) return 0;
  if (a.simulate !== true) throw usageError('--simulate', 'is required: managing real hosts is not built yet');
  checkOutputPaths(a, ['report']);
  const report = simulate({
    ...DEFAULT_SIMULATION,
    hosts: parseInteger(requireString(a, 'hosts'), '--hosts', 2, 100_000),
    guests: parseInteger(requireString(a, 'guests'), '--guests', 1, 1_000_000),
    seed: parseInteger(requireString(a, 'seed'), '--seed'),
    intervals: parseInteger(requireString(a, 'intervals'), '--intervals', 1, 10_000),
    surgeShare: parseInteger(requireString(a, 'surge-share'), '--surge-share', 0, 100) / 100,
  });
  writeReportFile(a, report);
  if (!a.quiet) {
    const c = report.consolidation;
    console.error(`manager (simulated): ${report.hosts} hosts, ${report.guests} guests; ${report.hotspots} hotspots, ${report.migrations} migrations planned, ${report.unresolved} hosts still hot at the end, ${report.pingPong} moved back`);
    console.error(`  hotspots resolved ${report.resolveIntervals.p50} intervals after onset (p50; worst ${report.resolveIntervals.max}); planning ${report.planMs.p50.toFixed(1)} ms per interval (worst ${report.planMs.max.toFixed(1)}), ${Math.round(report.decisionsPerSecond)} decisions/s`);
    console.error(`  night: consolidation frees ${c.freed} hosts (${c.hostsInUse} in use; first-fit-decreasing from scratch: ${c.ffdHosts ?? 'no fit'}) with ${c.moves} moves, ${(c.wattsBefore / 1000).toFixed(1)} → ${(c.wattsAfter / 1000).toFixed(1)} kW, planned in ${c.consolidateMs.toFixed(0)} ms`);
    for (const m of report.sample.slice(0, 3)) console.error(`  e.g. ${m.guest} ${m.from} → ${m.to} (${m.mode}): ${m.reason}`);
  }
  return 0;
}
