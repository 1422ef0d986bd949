// `memshift manager`: the Sandpiper-style manager (src/manager/, src/cluster/live-manager.ts).
//   --hosts A,B,…    manages running `memshift host` processes: scrapes their /metrics every interval,
//                    detects hotspots, plans and executes migrations with the engine, until SIGINT,
//                    SIGTERM or --duration; the report holds every decision with its reason
//   --simulate       runs the same planner against a simulated cluster of --hosts hosts and --guests
//                    guests, seeded, and measures the manager itself: planning time per interval,
//                    decisions per second, hotspots resolved, hosts freed against first-fit-decreasing

import { readFileSync } from 'node:fs';
import { parseAddress } from '../index.js';
import { DashboardServer } from '../cluster/dashboard.js';
import { LiveManager } from '../cluster/live-manager.js';
import { DEFAULT_MANAGER_POLICY, parseScenario } from '../cluster/scenario.js';
import { DEFAULT_SIMULATION, simulate } from '../manager/simulation.js';
import { checkOutputPaths, optionalString, parseCommand, parseInteger, requireString, usageError, writeReportFile, type Flags } from './args.js';
import { securityFlags, securityFrom } from './security-flags.js';

export const managerFlags: Flags = {
  scenario: { type: 'string', value: 'FILE', help: 'with --hosts HOST:PORT,…: take the policy (thresholds, k of n, headroom, …) and interval from this scenario' },
  interval: { type: 'string', value: 'MS', help: 'with --hosts HOST:PORT,…: the detection interval (default 1000, or the scenario\'s)' },
  duration: { type: 'string', value: 'MS', help: 'with --hosts HOST:PORT,…: stop after this long (default: at SIGINT or SIGTERM)' },
  blackbox: { type: 'boolean', help: 'with --hosts HOST:PORT,…: ignore gray-box figures (what the manager does without the guests\' daemon)' },
  consolidate: { type: 'boolean', help: 'with --hosts HOST:PORT,…: pack a quiet cluster onto fewer hosts' },
  'downtime-limit': { type: 'string', value: 'MS', help: 'with --hosts HOST:PORT,…: migrations switch over at this expected downtime', default: '50' },
  dashboard: { type: 'string', value: 'HOST:PORT', help: 'with --hosts HOST:PORT,…: serve the dashboard here (port 0: any free port)' },
  ...securityFlags,
  simulate: { type: 'boolean', help: 'run against a simulated cluster instead' },
  hosts: { type: 'string', value: 'HOST:PORT,…|N', help: `the control addresses of the \`memshift host\` processes to manage; with --simulate, how many simulated hosts (32 cores, 256 GiB, 10 Gb/s each; default ${DEFAULT_SIMULATION.hosts})` },
  guests: { type: 'string', value: 'N', help: 'simulated guests', default: String(DEFAULT_SIMULATION.guests) },
  seed: { type: 'string', value: 'N', help: 'seed of the simulated cluster and its demand', default: String(DEFAULT_SIMULATION.seed) },
  intervals: { type: 'string', value: 'N', help: 'detection intervals of the simulated day', default: String(DEFAULT_SIMULATION.intervals) },
  'surge-share': { type: 'string', value: 'PERCENT', help: 'hosts whose guests surge (CPU ×3) from the fifth interval', default: String(DEFAULT_SIMULATION.surgeShare * 100) },
  'interval-seconds': { type: 'string', value: 'S', help: 'with --simulate: seconds of one interval (migrations that take longer land intervals later)', default: String(DEFAULT_SIMULATION.intervalSeconds) },
  report: { type: 'string', value: 'FILE', help: 'write the JSON report here' },
  quiet: { type: 'boolean', help: 'no summary' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function runManager(argv: readonly string[]): Promise<number> {
  const a = parseCommand(argv, 'manager', 'Decide when and where to migrate (Sandpiper): hotspot detection, placement, consolidation, over running hosts (--hosts HOST:PORT,…) or a simulated cluster (--simulate).', managerFlags);
  if (a === null) return 0;
  checkOutputPaths(a, ['report']);
  if (a.simulate !== true) {
    const hosts = optionalString(a, 'hosts');
    if (hosts === undefined) throw usageError('--hosts', 'is required: the hosts to manage (HOST:PORT,…), or --simulate a cluster');
    return runLive(a, hosts);
  }
  const report = simulate({
    ...DEFAULT_SIMULATION,
    hosts: parseInteger(optionalString(a, 'hosts') ?? String(DEFAULT_SIMULATION.hosts), '--hosts', 2, 100_000),
    guests: parseInteger(requireString(a, 'guests'), '--guests', 1, 1_000_000),
    seed: parseInteger(requireString(a, 'seed'), '--seed'),
    intervals: parseInteger(requireString(a, 'intervals'), '--intervals', 1, 10_000),
    surgeShare: parseInteger(requireString(a, 'surge-share'), '--surge-share', 0, 100) / 100,
    intervalSeconds: parseInteger(requireString(a, 'interval-seconds'), '--interval-seconds', 1, 3600),
  });
  writeReportFile(a, report);
  if (!a.quiet) {
    const c = report.consolidation;
    console.error(`manager (simulated): ${report.hosts} hosts, ${report.guests} guests; ${report.hotspots} hotspots, ${report.migrations} migrations planned, ${report.unresolved} hosts still hot at the end, ${report.pingPong} moved back`);
    console.error(`  hotspots resolved ${report.resolveIntervals.p50} intervals after onset (p50; worst ${report.resolveIntervals.max}); planning ${report.planMs.p50.toFixed(1)} ms per interval (worst ${report.planMs.max.toFixed(1)}), ${Math.round(report.decisionsPerSecond)} decisions/s`);
    const mc = report.migrationCost;
    console.error(`  migrations (the engine's model): ${mc.seconds.p50.toFixed(1)} s each (p50; worst ${mc.seconds.max.toFixed(1)}), downtime ${mc.downtimeMs.p50.toFixed(1)} ms (worst ${mc.downtimeMs.max.toFixed(1)}), ${(mc.bytes / 1e12).toFixed(2)} TB moved in all`);
    console.error(`  night: consolidation frees ${c.freed} hosts (${c.hostsInUse} in use; first-fit-decreasing from scratch: ${c.ffdHosts ?? 'no fit'}) with ${c.moves} moves, ${(c.wattsBefore / 1000).toFixed(1)} → ${(c.wattsAfter / 1000).toFixed(1)} kW, planned in ${c.consolidateMs.toFixed(0)} ms`);
    for (const m of report.sample.slice(0, 3)) console.error(`  e.g. ${m.guest} ${m.from} → ${m.to} (${m.mode}): ${m.reason}`);
  }
  return 0;
}

async function runLive(a: Record<string, string | boolean | undefined>, list: string): Promise<number> {
  const hosts = list.split(',').filter((h) => h !== '');
  if (hosts.length === 0 || hosts.some((h) => !/^[^\s:]+:\d{1,5}$/.test(h))) throw usageError('--hosts', 'must list HOST:PORT,…', list);
  const security = securityFrom(a);
  const file = optionalString(a, 'scenario');
  const scenario = file === undefined ? null : parseScenario(JSON.parse(readFileSync(file, 'utf8')) as unknown, file);
  const interval = optionalString(a, 'interval');
  const duration = optionalString(a, 'duration');
  const policy = { ...(scenario?.manager ?? DEFAULT_MANAGER_POLICY), ...(a.consolidate === true ? { consolidate: true } : {}) };
  // Every flag checked before anything is armed.
  const intervalMs = interval !== undefined ? parseInteger(interval, '--interval', 50) : scenario?.intervalMs ?? 1000;
  const durationMs = duration === undefined ? null : parseInteger(duration, '--duration', 1);
  const downtimeLimitMs = parseInteger(requireString(a, 'downtime-limit'), '--downtime-limit', 1);
  const dashboardAt = optionalString(a, 'dashboard');
  const dashboardAddress = dashboardAt === undefined ? null : parseAddress(dashboardAt, '--dashboard');
  const manager = new LiveManager({
    hosts, security, policy, useGray: a.blackbox !== true, linkBytesPerSec: 1.25e9, intervalMs, downtimeLimitMs, originMs: Date.now(),
    log: a.quiet === true ? () => undefined : (line) => console.error(`memshift manager: ${line}`),
  });
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  let timer: NodeJS.Timeout | null = null;
  let dashboard: DashboardServer | null = null;
  let report;
  try {
    dashboard = dashboardAddress === null ? null : await DashboardServer.start(dashboardAddress, () => ({
      title: 'memshift manager', subtitle: `managing ${hosts.join(', ')}`, manager: manager.snapshot(),
    }));
    if (dashboard !== null) console.error(`memshift manager: dashboard on ${dashboard.url}`);
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    if (durationMs !== null) timer = setTimeout(() => stop.abort(), durationMs);
    report = await manager.run(stop.signal);
  } finally {
    if (timer !== null) clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await dashboard?.close();
  }
  writeReportFile(a, report);
  if (a.quiet !== true) {
    console.error(`memshift manager: ${report.intervals} intervals; ${report.hotspots.length} hotspots (${report.hotspots.filter((h) => h.resolvedAtMs !== null).length} resolved), ${report.migrations.length} migrations (${report.migrations.filter((m) => m.error !== null).length} failed), ${report.reallocations.length} reallocations; ${report.pingPong} moved back; CPU ${report.managerCpuMs.toFixed(0)} ms, scrape ${report.scrapeMs.toFixed(1)} ms and plan ${report.planMs.toFixed(1)} ms per interval (medians)`);
  }
  return report.migrations.some((m) => m.error !== null) ? 1 : 0;
}
