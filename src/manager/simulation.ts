// The manager's own code run against a simulated cluster (`memshift manager --simulate`): seeded hosts
// and guests, demand traces sampled per interval, the same profiles, hotspot detector, planner and
// consolidation as on real hosts. Each planned move is a migration whose time, bytes and downtime come
// from the engine's measured model (migration-cost.ts) over its share of the hosts' links: the guest
// loads its source until the migration ends, and its destination (as a stand-in the planner never
// moves) from the start. What it measures is the manager: how fast it plans for a cluster of this
// size, how good the plans are (hotspots resolved, hosts freed against first-fit-decreasing), and what
// the migrations cost. No clock enters the plans; timing is measured around them only.
//
//   day:   every guest's demand follows its trace; at interval `surgeAt` a share of hosts' guests surge
//          (CPU ×3, rising); each interval: profiles ← samples, detector ← host load, planner ← hotspots
//   night: every demand falls to `nightShare` of its day value; consolidation packs the cluster

import { consolidate, type ConsolidationPlan } from './consolidation.js';
import { DEFAULT_HOTSPOT_POLICY, HotspotDetector, type Hotspot } from './hotspot.js';
import { DEFAULT_PLAN_OPTIONS, chooseMode, planHotspots, type GuestState, type HostState, type PlannedMigration } from './placement.js';
import { UsageProfile } from './profile.js';
import { ZERO, add, over, scale, utilisation, type Vector } from './resources.js';
import { ENGINE_MODEL, migrationCost, type MigrationCost } from './migration-cost.js';

export interface SimulationOptions {
  hosts: number;
  guests: number;
  seed: number;
  /** Intervals of the day to simulate. */
  intervals: number;
  /** The interval at which the surge begins, and the share of hosts whose guests surge. */
  surgeAt: number;
  surgeShare: number;
  /** Demand at night, as a share of the day's. */
  nightShare: number;
  /** Seconds of one detection interval (how long a migration takes in intervals). */
  intervalSeconds: number;
}

export const DEFAULT_SIMULATION: SimulationOptions = { hosts: 1000, guests: 10_000, seed: 1, intervals: 12, surgeAt: 4, surgeShare: 0.05, nightShare: 0.3, intervalSeconds: 10 };

export interface SimulationReport {
  hosts: number;
  guests: number;
  hotspots: number;
  migrations: number;
  /** Hot hosts still over a threshold at the end of the day. */
  unresolved: number;
  /** Guests moved more than once, and moved back to a host they had left. */
  movedTwice: number;
  pingPong: number;
  /** Intervals from a host's first overloaded interval to the end of the one whose moves brought it under. */
  resolveIntervals: { p50: number; max: number; hosts: number };
  /** Milliseconds the detector and planner took per interval: median and worst. */
  planMs: { p50: number; max: number };
  /** Planned migrations per second of planning time, over the day. */
  decisionsPerSecond: number;
  /** The day's migrations as the engine's model costs them: time and downtime (p50, max), bytes in all. */
  migrationCost: { seconds: { p50: number; max: number }; downtimeMs: { p50: number; max: number }; bytes: number };
  consolidation: Omit<ConsolidationPlan, 'moves' | 'freed'> & { moves: number; freed: number; consolidateMs: number };
  /** A few decisions, with their reasons. */
  sample: PlannedMigration[];
}

/** mulberry32: small, seeded, good enough to draw a cluster. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const GIB = 2 ** 30;
const HOST_CAPACITY: Vector = { cpu: 32, net: 1.25e9, mem: 256 * GIB };

interface SimGuest {
  state: GuestState;
  base: Vector;
  surge: boolean;
  profile: UsageProfile;
}

export function simulate(options: SimulationOptions = DEFAULT_SIMULATION): SimulationReport {
  const random = rng(options.seed);
  const hosts: HostState[] = Array.from({ length: options.hosts }, (_, i) => ({ name: `host${i}`, capacity: HOST_CAPACITY }));
  const threshold = DEFAULT_PLAN_OPTIONS.threshold;
  // Guests: 1–16 GiB, a few cores at most, some traffic; placed first-fit in a random host order under
  // 60 % of every resource, as a cluster that starts healthy.
  const load = new Map<string, Vector>(hosts.map((h) => [h.name, ZERO]));
  const guests: SimGuest[] = [];
  for (let i = 0; i < options.guests; i++) {
    const memoryBytes = [1, 2, 4, 8, 16][Math.floor(random() * 5)] * GIB;
    const base: Vector = { cpu: 0.2 + random() * 2.2, net: random() * 40e6, mem: memoryBytes * (0.5 + random() * 0.4) };
    let placed: string | null = null;
    for (let tries = 0; tries < options.hosts && placed === null; tries++) {
      const h = hosts[Math.floor(random() * options.hosts)];
      const after = utilisation(add(load.get(h.name)!, base), h.capacity);
      if (after.cpu <= 0.6 && after.net <= 0.6 && after.mem <= 0.6) placed = h.name;
    }
    if (placed === null) throw new Error(`a simulated cluster of ${options.hosts} hosts cannot hold ${options.guests} guests`);
    load.set(placed, add(load.get(placed)!, base));
    guests.push({ state: { name: `guest${i}`, host: placed, demand: base, memoryBytes, dirtyRate: random() * 400e6 }, base, surge: false, profile: new UsageProfile(8) });
  }
  /** Each host's sum of `pick` over the guests on it now. */
  const perHost = (pick: (g: SimGuest) => Vector): Map<string, Vector> => {
    const sums = new Map<string, Vector>(hosts.map((h) => [h.name, ZERO]));
    for (const g of guests) sums.set(g.state.host, add(sums.get(g.state.host)!, pick(g)));
    return sums;
  };
  const surging = new Set(hosts.filter(() => random() < options.surgeShare).map((h) => h.name));
  for (const g of guests) g.surge = surging.has(g.state.host);

  const detector = new HotspotDetector(DEFAULT_HOTSPOT_POLICY);
  const recentMoves = new Map<string, { from: string; interval: number }[]>();
  const moved = new Map<string, string[]>();
  const planMs: number[] = [];
  let migrations = 0;
  let hotspots = 0;
  const sample: PlannedMigration[] = [];
  let lastHot: Hotspot[] = [];
  /** Migrations under way: the move, its cost, and the interval from whose samples on the guest is on its destination. */
  const inFlight = new Map<string, { move: PlannedMigration; cost: MigrationCost; landsAt: number }>();
  const costs: MigrationCost[] = [];
  /** A migration lands: the guest is on its destination, the move counts for the cooldown and the paths. */
  const land = (g: SimGuest, m: PlannedMigration, t: number): void => {
    g.state = { ...g.state, host: m.to };
    recentMoves.set(m.guest, [...(recentMoves.get(m.guest) ?? []), { from: m.from, interval: t }]);
    moved.set(m.guest, [...(moved.get(m.guest) ?? [m.from]), m.to]);
    detector.reset(m.from);
    inFlight.delete(m.guest);
  };
  /** Per host: the interval it first went over a threshold, and the first one after which it was under again. */
  const onset = new Map<string, number>();
  const resolvedAt = new Map<string, number>();
  for (let t = 0; t < options.intervals; t++) {
    const byName = new Map(guests.map((g) => [g.state.name, g]));
    for (const f of [...inFlight.values()]) if (f.landsAt <= t) land(byName.get(f.move.guest)!, f.move, t);
    // Samples: ±10 % noise; a surging guest's CPU climbs to three times its base over three intervals.
    for (const g of guests) {
      const ramp = g.surge && t >= options.surgeAt ? Math.min(3, 1 + (t - options.surgeAt + 1) * (2 / 3)) : 1;
      const noise = (): number => 0.9 + random() * 0.2;
      g.profile.add({ cpu: g.base.cpu * ramp * noise(), net: g.base.net * noise(), mem: g.base.mem });
    }
    const start = performance.now();
    const byHost = new Map<string, { now: Vector; next: Vector }>(hosts.map((h) => [h.name, { now: ZERO, next: ZERO }]));
    const states: GuestState[] = [];
    for (const g of guests) {
      const predicted = g.profile.predict();
      const p95 = g.profile.percentile(95);
      g.state = { ...g.state, demand: { cpu: Math.max(p95.cpu, predicted.cpu), net: Math.max(p95.net, predicted.net), mem: Math.max(p95.mem, predicted.mem) } };
      states.push(g.state);
      const h = byHost.get(g.state.host)!;
      h.now = add(h.now, g.profile.last);
      h.next = add(h.next, predicted);
    }
    const hot: Hotspot[] = [];
    for (const h of hosts) {
      const l = byHost.get(h.name)!;
      const spot = detector.observe(h.name, utilisation(l.now, h.capacity), utilisation(l.next, h.capacity));
      if (spot !== null) hot.push(spot);
    }
    // A guest on its way loads its destination already, as a stand-in that is never moved.
    const standIns = [...inFlight.values()].map(({ move }) => ({ ...byName.get(move.guest)!.state, name: `${move.guest} (arriving)`, host: move.to }));
    // Hosts whose guests are moving are not judged again until the moves land.
    const busy = new Set([...inFlight.values()].map(({ move }) => move.from));
    const plan = planHotspots(hot.filter((h) => !busy.has(h.host)), hosts, [...states, ...standIns], { ...DEFAULT_PLAN_OPTIONS, recentMoves, interval: t });
    planMs.push(performance.now() - start);
    hotspots += hot.filter((h) => !lastHot.some((x) => x.host === h.host)).length;
    lastHot = hot;
    const started = plan.migrations.filter((m) => byName.has(m.guest) && !inFlight.has(m.guest));
    // Each migration's share of the links: its hosts' network capacity over the migrations each carries.
    const links = new Map<string, number>();
    for (const m of [...started, ...[...inFlight.values()].map((f) => f.move)]) for (const h of [m.from, m.to]) links.set(h, (links.get(h) ?? 0) + 1);
    for (const m of started) {
      const g = byName.get(m.guest)!;
      // The mode for the link share it gets, not the whole link the plan assumed.
      const share = HOST_CAPACITY.net / Math.max(links.get(m.from)!, links.get(m.to)!);
      const cost = migrationCost(g.state.memoryBytes, g.state.dirtyRate, chooseMode(g.state.dirtyRate, Math.min(share, ENGINE_MODEL.passBytesPerSec)), share);
      costs.push(cost);
      // Started at the end of interval t; the samples of interval t + k come k intervals later.
      const landsAt = t + Math.max(1, Math.ceil(cost.seconds / options.intervalSeconds));
      if (landsAt === t + 1) land(g, m, t);
      else inFlight.set(m.guest, { move: m, cost, landsAt });
      if (sample.length < 5) sample.push(m);
    }
    migrations += started.length;
    // After this interval's moves: which hosts are over a threshold now (their guests' last samples).
    const after = perHost((g) => g.profile.last);
    for (const h of hosts) {
      const hotNow = over(utilisation(byHost.get(h.name)!.now, h.capacity), threshold).length > 0;
      if (hotNow && !onset.has(h.name)) onset.set(h.name, t);
      if (onset.has(h.name) && !resolvedAt.has(h.name) && over(utilisation(after.get(h.name)!, h.capacity), threshold).length === 0) resolvedAt.set(h.name, t);
    }
  }
  // Still hot at the end of the day: a resource over its threshold now (the last samples, after the
  // moves) and predicted to stay over, as the detector judges.
  const now = perHost((g) => g.profile.last);
  const next = perHost((g) => g.profile.predict());
  const unresolved = hosts.filter((h) => {
    const predicted = utilisation(next.get(h.name)!, h.capacity);
    return over(utilisation(now.get(h.name)!, h.capacity), threshold).some((r) => predicted[r] > threshold[r]);
  }).length;
  const paths = [...moved.values()];
  const pingPong = paths.filter((p) => p.slice(2).some((h, i) => p.slice(0, i + 1).includes(h))).length;

  // Night: every demand falls; consolidation packs what is left.
  const night = guests.map((g) => ({ ...g.state, demand: { ...scale(g.state.demand, options.nightShare), mem: g.state.demand.mem } }));
  const c0 = performance.now();
  const c = consolidate(hosts, night, threshold);
  const consolidateMs = performance.now() - c0;
  const totalPlanMs = planMs.reduce((a, b) => a + b, 0);
  const sorted = [...planMs].sort((a, b) => a - b);
  return {
    hosts: options.hosts, guests: options.guests, hotspots, migrations, unresolved,
    movedTwice: paths.filter((p) => p.length > 2).length, pingPong,
    resolveIntervals: (() => {
      const spans = [...resolvedAt].map(([h, t]) => t - onset.get(h)! + 1).sort((a, b) => a - b);
      return { p50: spans[Math.floor(spans.length / 2)] ?? 0, max: spans[spans.length - 1] ?? 0, hosts: spans.length };
    })(),
    planMs: { p50: sorted[Math.floor(sorted.length / 2)], max: sorted[sorted.length - 1] },
    decisionsPerSecond: totalPlanMs > 0 ? (migrations * 1000) / totalPlanMs : 0,
    migrationCost: {
      seconds: spread(costs.map((c) => c.seconds)),
      downtimeMs: spread(costs.map((c) => c.downtimeMs)),
      bytes: costs.reduce((s, c) => s + c.bytes, 0),
    },
    consolidation: { hostsInUse: c.hostsInUse, ffdHosts: c.ffdHosts, wattsBefore: c.wattsBefore, wattsAfter: c.wattsAfter, moves: c.moves.length, freed: c.freed.length, consolidateMs },
    sample,
  };
}

/** Median and maximum (zeros when empty). */
function spread(xs: readonly number[]): { p50: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: s[Math.floor(s.length / 2)] ?? 0, max: s[s.length - 1] ?? 0 };
}
