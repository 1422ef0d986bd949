// The migration manager's plan for hotspots (Sandpiper): what to move, where, with how much, and how.
//
//   what   the hot host's guests in decreasing volume-to-size ratio (VSR = volume / memory): the most
//          load shed per byte copied
//   where  the least-loaded host (lowest volume) on which every resource stays under its threshold
//          after the move; never back to any host the guest left within `cooldownIntervals` (no ping-pong)
//   much   the allocation after the move: the planning demand (the larger of the profile's p95 and its
//          prediction) with `headroom`
//   how    live while the guest dirties memory well below the link's rate, hybrid near it, post-copy
//          above it (pre-copy would not converge)
//
// Moves are applied to a working copy of the hosts' loads as they are planned, so later choices see
// earlier ones; a hot host is done once it is under every threshold. Pure and deterministic.

import { ZERO, add, over, scale, sub, utilisation, volume, type Vector } from './resources.js';
import type { Hotspot } from './hotspot.js';

export interface HostState {
  name: string;
  capacity: Vector;
}

export interface GuestState {
  name: string;
  host: string;
  /** What the plan reserves for the guest: the larger of its profile's p95 and its prediction. */
  demand: Vector;
  memoryBytes: number;
  /** Bytes per second the guest dirties (chooses the migration mode). */
  dirtyRate: number;
}

export type MigrationModeChoice = 'live' | 'hybrid' | 'postcopy';

export interface PlannedMigration {
  guest: string;
  from: string;
  to: string;
  mode: MigrationModeChoice;
  /** What the destination gives the guest (demand × headroom). */
  allocation: Vector;
  vsr: number;
  /** Why, in words, for the log and the report. */
  reason: string;
}

export interface Plan {
  migrations: PlannedMigration[];
  /** Hot hosts the plan could not bring under their thresholds, and why. */
  unresolved: { host: string; why: string }[];
}

export interface PlanOptions {
  threshold: Vector;
  /** Bytes per second a migration gets from the network budget (chooses the mode). */
  linkBytesPerSec: number;
  /** Most migrations in one plan (the network budget). */
  maxMigrations: number;
  /** Allocation = demand × headroom. */
  headroom: number;
  /** Every host each guest left, and when (interval number): no move back to any of them within cooldownIntervals. */
  recentMoves: ReadonlyMap<string, readonly { from: string; interval: number }[]>;
  interval: number;
  cooldownIntervals: number;
}

export const DEFAULT_PLAN_OPTIONS: Omit<PlanOptions, 'recentMoves' | 'interval'> = {
  threshold: { cpu: 0.75, net: 0.75, mem: 0.85 }, linkBytesPerSec: 1.25e9, maxMigrations: 64, headroom: 1.1, cooldownIntervals: 30,
};

/** Live below 30 % of the link's rate, hybrid below 90 %, post-copy above. */
export function chooseMode(dirtyRate: number, linkBytesPerSec: number): MigrationModeChoice {
  if (dirtyRate < 0.3 * linkBytesPerSec) return 'live';
  return dirtyRate < 0.9 * linkBytesPerSec ? 'hybrid' : 'postcopy';
}

/** Volume-to-size ratio of a guest on a host of `capacity`. */
export function vsr(g: GuestState, capacity: Vector): number {
  return volume(utilisation(g.demand, capacity)) / Math.max(1, g.memoryBytes);
}

/** Each host's load (its guests' demands added up) and its guests. Throws on a guest of an unknown host. */
export function hostLoads(hosts: readonly HostState[], guests: readonly GuestState[]): { load: Map<string, Vector>; on: Map<string, GuestState[]> } {
  const load = new Map<string, Vector>(hosts.map((h) => [h.name, ZERO]));
  const on = new Map<string, GuestState[]>(hosts.map((h) => [h.name, []]));
  for (const g of guests) {
    const l = load.get(g.host);
    if (l === undefined) throw new Error(`guest ${g.name} is on unknown host ${g.host}`);
    load.set(g.host, add(l, g.demand));
    on.get(g.host)!.push(g);
  }
  return { load, on };
}

export function planHotspots(hotspots: readonly Hotspot[], hosts: readonly HostState[], guests: readonly GuestState[], options: PlanOptions): Plan {
  const capacity = new Map(hosts.map((h) => [h.name, h.capacity]));
  const { load, on } = hostLoads(hosts, guests);
  for (const h of hotspots) if (!capacity.has(h.host)) throw new Error(`hotspot on unknown host ${h.host}`);
  const u = (host: string): Vector => utilisation(load.get(host)!, capacity.get(host)!);
  const plan: Plan = { migrations: [], unresolved: [] };
  // The most loaded hotspot first: it gets the best destinations.
  const order = [...hotspots].sort((a, b) => volume(u(b.host)) - volume(u(a.host)));
  for (const hot of order) {
    const from = hot.host;
    const cap = capacity.get(from)!;
    const candidates = [...on.get(from)!].sort((a, b) => vsr(b, cap) - vsr(a, cap));
    for (const g of candidates) {
      if (over(u(from), options.threshold).length === 0) break;
      if (plan.migrations.length >= options.maxMigrations) break;
      const left = (options.recentMoves.get(g.name) ?? []).filter((m) => options.interval - m.interval < options.cooldownIntervals);
      const banned = new Set(left.map((m) => m.from));
      const to = leastLoadedFit(g, hosts, load, from, banned, options.threshold);
      if (to === null) continue;
      const before = u(from);
      load.set(from, sub(load.get(from)!, g.demand));
      load.set(to, add(load.get(to)!, g.demand));
      on.set(from, on.get(from)!.filter((x) => x !== g));
      on.get(to)!.push(g);
      const why = hot.resources.map((r) => `${r} ${(before[r] * 100).toFixed(0)} % > ${(options.threshold[r] * 100).toFixed(0)} % in ${hot.hotIntervals} intervals, predicted ${(hot.predicted[r] * 100).toFixed(0)} %`).join('; ');
      plan.migrations.push({
        guest: g.name, from, to, mode: chooseMode(g.dirtyRate, options.linkBytesPerSec), allocation: scale(g.demand, options.headroom), vsr: vsr(g, cap),
        reason: `${from}: ${why}; ${g.name} has the highest volume-to-size ratio left; ${to} is the least loaded host it fits on${left.length > 0 ? ` (not ${left.map((m) => `${m.from}, which it left ${options.interval - m.interval} intervals ago`).join('; not ')})` : ''}`,
      });
    }
    const still = over(u(from), options.threshold);
    if (still.length > 0) {
      plan.unresolved.push({ host: from, why: plan.migrations.length >= options.maxMigrations ? 'the network budget for this interval is spent' : `no host fits its guests under the thresholds (${still.join(', ')} still over)` });
    }
  }
  return plan;
}

/** The host of lowest volume, other than `from` and those `banned`, on which `g` keeps every resource under its threshold. */
export function leastLoadedFit(g: GuestState, hosts: readonly HostState[], load: ReadonlyMap<string, Vector>, from: string, banned: ReadonlySet<string>, threshold: Vector): string | null {
  let best: string | null = null;
  let bestVolume = Infinity;
  for (const h of hosts) {
    if (h.name === from || banned.has(h.name)) continue;
    const after = utilisation(add(load.get(h.name)!, g.demand), h.capacity);
    if (over(after, threshold).length > 0) continue;
    const v = volume(utilisation(load.get(h.name)!, h.capacity));
    if (v < bestVolume) {
      bestVolume = v;
      best = h.name;
    }
  }
  return best;
}
