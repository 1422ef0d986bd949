// `memshift cluster run NAME|FILE`: plays a scenario on real host processes on 127.0.0.1 with the
// manager off, on, and (when guests run the gray-box daemon) black-box only, and reports what the
// manager changed: hotspots detected and resolved, the migrations it made, SLA violation-seconds, the
// hosts left empty. `memshift cluster list` names the shipped scenarios; `memshift cluster show NAME`
// prints one in the file format, to copy and edit.

import { readFileSync } from 'node:fs';
import { RUN_KINDS, runCluster, type ClusterReport, type RunKind } from '../cluster/cluster-run.js';
import { parseScenario, scaleTime, type Scenario } from '../cluster/scenario.js';
import { SCENARIO_NAMES, shippedScenario, shippedScenarioJson } from '../cluster/scenarios.js';
import { parseAddress } from '../index.js';
import { DashboardServer } from '../cluster/dashboard.js';
import type { LiveManager } from '../cluster/live-manager.js';
import { checkOutputPaths, optionalString, parseCommand, parseInteger, usageError, writeReportFile, type Flags } from './args.js';

export const clusterFlags: Flags = {
  runs: { type: 'string', value: RUN_KINDS.join(','), help: 'which runs: manager off, on (gray-box where offered), blackbox (default: off,on, and blackbox when a guest is gray-box)' },
  'time-scale': { type: 'string', value: 'K', help: 'multiply every time of the scenario (interval, traces, duration) by K, e.g. 0.5 to run it twice as fast' },
  'downtime-limit': { type: 'string', value: 'MS', help: 'the manager\'s migrations switch over at this expected downtime', default: '50' },
  report: { type: 'string', value: 'FILE', help: 'write the JSON report here' },
  dashboard: { type: 'string', value: 'HOST:PORT', help: 'serve the manager\'s dashboard here while the scenario runs (port 0: any free port)' },
  quiet: { type: 'boolean', help: 'no decision log, summary only' },
  help: { type: 'boolean', help: 'show this help' },
};

function loadScenario(what: string): Scenario {
  const shipped = shippedScenario(what);
  if (shipped !== undefined) return shipped;
  let text: string;
  try {
    text = readFileSync(what, 'utf8');
  } catch {
    throw usageError('SCENARIO', `must be a shipped scenario (${SCENARIO_NAMES.join(', ')}) or a readable file`, what);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw usageError('SCENARIO', `is not JSON: ${(err as Error).message}`, what);
  }
  return parseScenario(json, what);
}

export async function runClusterCommand(argv: readonly string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === 'list') {
    for (const n of SCENARIO_NAMES) console.log(`${n.padEnd(20)} ${shippedScenario(n)!.description}`);
    return 0;
  }
  if (verb === 'show') {
    const json = rest[0] === undefined ? undefined : shippedScenarioJson(rest[0]);
    if (json === undefined) throw usageError('show', `needs a shipped scenario: ${SCENARIO_NAMES.join(', ')}`, rest[0]);
    console.log(JSON.stringify(json, null, 2));
    return 0;
  }
  if (verb !== 'run') {
    console.error('usage: memshift cluster run NAME|FILE [flags] | memshift cluster list | memshift cluster show NAME');
    return verb === '--help' || verb === 'help' ? 0 : 2;
  }
  // The scenario comes first: `cluster run NAME|FILE [flags]` (a flag's value is never taken for it).
  const what = rest[0] !== undefined && !rest[0].startsWith('--') ? rest[0] : undefined;
  const a = parseCommand(what === undefined ? rest : rest.slice(1), 'cluster run', 'Play a scenario on host processes on 127.0.0.1, with the manager off and on, and report what it changed.', clusterFlags);
  if (a === null) return 0;
  if (what === undefined) throw usageError('SCENARIO', `is required first: cluster run NAME|FILE [flags], NAME one of ${SCENARIO_NAMES.join(', ')}`);
  checkOutputPaths(a, ['report']);
  let scenario = loadScenario(what);
  const k = optionalString(a, 'time-scale');
  if (k !== undefined) {
    const f = Number(k);
    if (!(f > 0 && f <= 10)) throw usageError('--time-scale', 'must be a number above 0, at most 10', k);
    scenario = scaleTime(scenario, f);
  }
  const graybox = scenario.guests.some((g) => g.graybox);
  const runsText = optionalString(a, 'runs');
  const runs = runsText === undefined ? (graybox ? ['off', 'on', 'blackbox'] : ['off', 'on']) as RunKind[] : runsText.split(',').map((r) => {
    if (!(RUN_KINDS as readonly string[]).includes(r)) throw usageError('--runs', `must list of ${RUN_KINDS.join(', ')}`, runsText);
    return r as RunKind;
  });
  const downtime = parseInteger(optionalString(a, 'downtime-limit')!, '--downtime-limit', 1);
  let current: { kind: RunKind; manager: LiveManager | null } | null = null;
  const dashboardAt = optionalString(a, 'dashboard');
  const dashboard = dashboardAt === undefined ? null : await DashboardServer.start(parseAddress(dashboardAt, '--dashboard'), () => ({
    title: `memshift cluster run ${scenario.name}`,
    subtitle: current === null ? 'starting the hosts' : `manager ${current.kind}${current.manager === null ? ' (no manager: the yardstick run)' : ''}; ${scenario.description}`,
    manager: current?.manager?.snapshot() ?? null,
  }));
  if (dashboard !== null) console.error(`dashboard on ${dashboard.url}`);
  let report: ClusterReport;
  try {
    report = await runCluster({
      scenario, runs, downtimeLimitMs: downtime, log: a.quiet === true ? undefined : (line) => console.error(line),
      watch: (kind, manager) => { current = { kind, manager }; },
    });
  } finally {
    await dashboard?.close();
  }
  writeReportFile(a, report);
  console.error(formatClusterReport(report));
  return report.runs.some((r) => r.lost.length > 0) ? 1 : 0;
}

export function formatClusterReport(r: ClusterReport): string {
  const lines = [`cluster ${r.scenario}: ${(r.durationMs / 1000).toFixed(1)} s at a ${r.intervalMs} ms interval`];
  for (const run of r.runs) {
    const m = run.manager;
    lines.push(`  manager ${run.kind.padEnd(8)} SLA violation-seconds ${run.slaViolationSeconds.toFixed(1).padStart(6)}; hosts in use ${run.hostsInUse} (empty: ${run.emptyHosts.join(', ') || 'none'})${m === null ? '' : `; ${m.hotspots.length} hotspots, ${m.migrations.length} migrations, ${m.reallocations.length} reallocations; manager CPU ${m.managerCpuMs.toFixed(0)} ms, nuclei ${(run.nucleusSeconds * 1000).toFixed(0)} ms`}${run.lost.length > 0 ? `; LOST: ${run.lost.join(', ')}` : ''}`);
    for (const h of m?.hotspots ?? []) {
      lines.push(`    ${h.guest === null ? `hotspot ${h.host}` : `SLA breach of ${h.guest} on ${h.host}`} (${h.resources.join(', ')}, ${h.trigger}): onset ${(h.onsetAtMs / 1000).toFixed(1)} s, detected ${(h.detectedAtMs / 1000).toFixed(1)} s (${((h.detectedAtMs - h.onsetAtMs) / 1000).toFixed(1)} s later), ${h.resolvedAtMs === null ? 'not resolved' : `resolved ${((h.resolvedAtMs - h.onsetAtMs) / 1000).toFixed(1)} s after onset`}; moved ${h.migrations.join(', ') || 'nothing'}`);
    }
    for (const x of m?.migrations ?? []) {
      lines.push(`    ${x.kind === 'consolidation' ? 'consolidate' : x.kind === 'sla' ? 'move (SLA)' : 'move'} ${x.guest} ${x.from} → ${x.to} (${x.mode}) at ${(x.plannedAtMs / 1000).toFixed(1)} s: ${x.error !== null ? `failed: ${x.error}` : `${x.summary!.totalMs.toFixed(0)} ms, downtime ${x.summary!.downtimeMs?.toFixed(1) ?? '?'} ms`}`);
    }
  }
  const s = r.summary;
  if (s.violationRatio !== null) lines.push(`  violation-seconds with the manager / without: ${(s.violationRatio * 100).toFixed(0)} %`);
  if (s.blackboxOverGray !== null) lines.push(`  black-box only / gray-box: ${s.blackboxOverGray === Infinity ? '∞' : `${(s.blackboxOverGray * 100).toFixed(0)} %`}`);
  lines.push(`  ${s.migrations} migrations, ${s.failedMigrations} failed, ${s.pingPong} moved back`);
  return lines.join('\n');
}
