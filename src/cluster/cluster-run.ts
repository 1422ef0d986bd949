// `memshift cluster run`: one scenario, played on real processes on 127.0.0.1. Each run starts one
// `memshift host` process per host (its guests, its nucleus, its /metrics), sets the scenario's clock
// going, and runs the manager in this process: not at all ("off", the yardstick), with gray-box where
// guests offer it ("on"), or black-box only ("blackbox"). Guests really migrate between the host
// processes, over TLS 1.3 with a pre-shared key made for the run. At the end each run reads every
// host's ledger: SLA violation-seconds per guest, where every guest runs, which hosts are empty.

import { spawn, type ChildProcess } from 'node:child_process';
import { CLI_ENTRY, listeningAddress, stopChild } from '../cli/spawned.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatPskFile, generatePsk, type Security } from '../index.js';
import { HostClient } from './host-client.js';
import { LiveManager, type ManagerRunReport } from './live-manager.js';
import type { Scenario } from './scenario.js';

export const RUN_KINDS = ['off', 'on', 'blackbox'] as const;
export type RunKind = (typeof RUN_KINDS)[number];

export interface RunRecord {
  kind: RunKind;
  /** SLA violation-seconds of all guests together, and per guest (departed hosts' ledgers included). */
  slaViolationSeconds: number;
  perGuest: Record<string, number>;
  /** Where each guest runs at the end; guests of the scenario running nowhere (must be none). */
  placement: Record<string, string>;
  lost: string[];
  hostsInUse: number;
  emptyHosts: string[];
  /** CPU seconds the hosts' nuclei spent measuring and sharing, all hosts together (the monitoring's cost on the hosts). */
  nucleusSeconds: number;
  manager: ManagerRunReport | null;
}

export interface ClusterReport {
  scenario: string;
  description: string;
  durationMs: number;
  intervalMs: number;
  runs: RunRecord[];
  summary: {
    /** Violation-seconds with the manager over without it (null without both runs). */
    violationRatio: number | null;
    /** The same for black-box only over gray-box. */
    blackboxOverGray: number | null;
    /** Onset → resolved, per hotspot of the managed run (ms; null: not resolved). */
    resolveMs: (number | null)[];
    migrations: number;
    failedMigrations: number;
    pingPong: number;
  };
}

export interface ClusterRunOptions {
  scenario: Scenario;
  runs: readonly RunKind[];
  downtimeLimitMs?: number;
  log?: (line: string) => void;
  /** Told of each run as it starts, with its manager (null when off): the dashboard follows it. */
  watch?: (kind: RunKind, manager: LiveManager | null) => void;
}


export async function runCluster(o: ClusterRunOptions): Promise<ClusterReport> {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-cluster-'));
  try {
    const psk = generatePsk('memshift-cluster');
    const pskFile = join(dir, 'cluster.psk');
    writeFileSync(pskFile, formatPskFile(psk.psk.identity, psk.psk.key), { mode: 0o600 });
    const scenarioFile = join(dir, 'scenario.json');
    writeFileSync(scenarioFile, JSON.stringify(o.scenario));
    const runs: RunRecord[] = [];
    for (const kind of o.runs) {
      o.log?.(`— run "${kind}" of ${o.scenario.name} (${(o.scenario.durationMs / 1000).toFixed(1)} s) —`);
      runs.push(await oneRun(o, kind, scenarioFile, pskFile, psk));
    }
    const by = (k: RunKind): RunRecord | undefined => runs.find((r) => r.kind === k);
    const ratio = (a: RunRecord | undefined, b: RunRecord | undefined): number | null =>
      a === undefined || b === undefined ? null : b.slaViolationSeconds === 0 ? (a.slaViolationSeconds === 0 ? 1 : Infinity) : a.slaViolationSeconds / b.slaViolationSeconds;
    const managed = by('on') ?? by('blackbox');
    const migrations = managed?.manager?.migrations ?? [];
    return {
      scenario: o.scenario.name, description: o.scenario.description, durationMs: o.scenario.durationMs, intervalMs: o.scenario.intervalMs, runs,
      summary: {
        violationRatio: ratio(managed, by('off')),
        blackboxOverGray: ratio(by('blackbox'), by('on')),
        resolveMs: managed?.manager?.hotspots.map((h) => (h.resolvedAtMs === null ? null : h.resolvedAtMs - h.onsetAtMs)) ?? [],
        migrations: migrations.filter((m) => m.error === null).length,
        failedMigrations: migrations.filter((m) => m.error !== null).length,
        pingPong: managed?.manager?.pingPong ?? 0,
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function oneRun(o: ClusterRunOptions, kind: RunKind, scenarioFile: string, pskFile: string, security: Security): Promise<RunRecord> {
  const s = o.scenario;
  // The scenario's clock starts 2 s after the hosts are spawned (they start their guests meanwhile);
  // the ledgers count from then to its end.
  const epochMs = Date.now() + 2000;
  const hosts: { name: string; child: ChildProcess; address: string }[] = [];
  try {
    await Promise.all(s.hosts.map(async (h) => {
      const child = spawn(process.execPath, [CLI_ENTRY, 'host', '--listen', '127.0.0.1:0', '--name', h.name, '--scenario', scenarioFile, '--epoch', String(epochMs), '--until', String(epochMs + s.durationMs), '--psk-file', pskFile, '--quiet', '--lifeline'], { stdio: ['pipe', 'pipe', 'pipe'] });
      const entry = { name: h.name, child, address: '' };
      hosts.push(entry);
      entry.address = await listeningAddress(child, `host ${h.name}`);
    }));
    const clients = new Map(hosts.map((h) => [h.name, new HostClient(h.address, security)]));
    if (Date.now() > epochMs) o.log?.(`the hosts took ${Date.now() - epochMs + 2000} ms to start their guests: the scenario's clock started before they all ran`);
    await sleepUntil(epochMs);
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), Math.max(0, epochMs + s.durationMs - Date.now()));
    let manager: ManagerRunReport | null = null;
    try {
      if (kind === 'off') {
        o.watch?.(kind, null);
        await new Promise((r) => stop.signal.addEventListener('abort', r, { once: true }));
      } else {
        const live = new LiveManager({
          hosts: hosts.map((h) => h.address), security, policy: s.manager, intervalMs: s.intervalMs, useGray: kind === 'on',
          linkBytesPerSec: 1.25e9, downtimeLimitMs: o.downtimeLimitMs ?? 50, originMs: epochMs, log: (line) => o.log?.(line),
        });
        o.watch?.(kind, live);
        manager = await live.run(stop.signal);
      }
    } finally {
      clearTimeout(timer);
    }
    const lists = await Promise.all([...clients.values()].map((c) => c.guests()));
    const nucleusSeconds = (await Promise.all([...clients.values()].map((c) => c.metrics())))
      .flat().filter((x) => x.name === 'memshift_host_nucleus_seconds_total').reduce((sum, x) => sum + x.value, 0);
    const perGuest: Record<string, number> = {};
    const placement: Record<string, string> = {};
    const credit = (g: { name: string; slaViolationSeconds: number }): void => {
      perGuest[g.name] = (perGuest[g.name] ?? 0) + g.slaViolationSeconds;
    };
    for (const l of lists) {
      for (const g of l.guests) {
        credit(g);
        if (g.running) placement[g.name] = l.host;
      }
      for (const g of l.departed) credit(g);
    }
    const lost = s.guests.map((g) => g.name).filter((n) => placement[n] === undefined);
    const emptyHosts = s.hosts.map((h) => h.name).filter((h) => !Object.values(placement).includes(h));
    const total = Object.values(perGuest).reduce((a, b) => a + b, 0);
    o.log?.(`run "${kind}": ${total.toFixed(1)} SLA violation-seconds; ${manager?.migrations.length ?? 0} migrations; hosts in use ${s.hosts.length - emptyHosts.length}${lost.length > 0 ? `; LOST ${lost.join(', ')}` : ''}`);
    return { kind, slaViolationSeconds: total, perGuest, placement, lost, hostsInUse: s.hosts.length - emptyHosts.length, emptyHosts, nucleusSeconds, manager };
  } finally {
    await Promise.all(hosts.map((h) => stopChild(h.child)));
  }
}

function sleepUntil(epochMs: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, epochMs - Date.now())));
}
