// Consolidation (green ICT): pack the guests onto as few hosts as the thresholds allow, from where they
// are now, and name the hosts that can power off. The manager empties hosts one at a time, least
// loaded first: a host is freed only if every one of its guests fits elsewhere (best fit: the most
// loaded host that still keeps every resource under its threshold, which packs tightest), else nothing
// of it moves. First-fit-decreasing from scratch (every guest placed anew, largest volume first) is the
// offline yardstick the plan is compared with: it ignores what moving costs.
//
// Power model (stated, not measured): a host draws idleWatts switched on and idle, peakWatts at full
// CPU, linear between; a host switched off draws nothing.

import { ZERO, add, over, utilisation, volume, volumeOf, type Vector } from './resources.js';
import { hostLoads, type GuestState, type HostState } from './placement.js';

export interface PowerModel {
  idleWatts: number;
  peakWatts: number;
}

export const DEFAULT_POWER: PowerModel = { idleWatts: 100, peakWatts: 250 };

export interface ConsolidationPlan {
  moves: { guest: string; from: string; to: string }[];
  /** Hosts left with no guest (those that had none to start with included): they can power off. */
  freed: string[];
  hostsInUse: number;
  /** Hosts first-fit-decreasing needs for the same guests and thresholds (null: it cannot fit them all). */
  ffdHosts: number | null;
  wattsBefore: number;
  wattsAfter: number;
}

/** `banned(guest, host)`: the guest may not go to that host (a live manager's cooldown: no move back to a host it just left). */
export function consolidate(hosts: readonly HostState[], guests: readonly GuestState[], threshold: Vector, power: PowerModel = DEFAULT_POWER, banned?: (guest: string, host: string) => boolean): ConsolidationPlan {
  const { load, on } = hostLoads(hosts, guests);
  const wattsBefore = watts(hosts, load, on, power);
  const moves: ConsolidationPlan['moves'] = [];
  const freed = new Set<string>();
  for (const h of hosts) if (on.get(h.name)!.length === 0) freed.add(h.name);
  const byLoad = hosts.filter((h) => !freed.has(h.name)).sort((a, b) => volume(utilisation(load.get(a.name)!, a.capacity)) - volume(utilisation(load.get(b.name)!, b.capacity)));
  for (const h of byLoad) {
    // Tentative: every guest of h must fit elsewhere, or none moves. `trial` holds the loads of the
    // hosts this round placed guests on (a copy of every load per host emptied was most of the time).
    const trial = new Map<string, Vector>();
    const loadOf = (name: string): Vector => trial.get(name) ?? load.get(name)!;
    const placed: { g: GuestState; to: string }[] = [];
    const guestsOf = [...on.get(h.name)!].sort((a, b) => volume(utilisation(b.demand, h.capacity)) - volume(utilisation(a.demand, h.capacity)));
    for (const g of guestsOf) {
      let best: string | null = null;
      let bestVolume = -1;
      for (const t of hosts) {
        if (t.name === h.name || freed.has(t.name) || banned?.(g.name, t.name) === true) continue;
        // Inline (no vectors allocated): this loop runs hosts × guests times.
        const l = loadOf(t.name);
        const c = t.capacity;
        if ((l.cpu + g.demand.cpu) / c.cpu > threshold.cpu || (l.net + g.demand.net) / c.net > threshold.net || (l.mem + g.demand.mem) / c.mem > threshold.mem) continue;
        const v = volumeOf(l.cpu / c.cpu, l.net / c.net, l.mem / c.mem);
        if (v > bestVolume) {
          bestVolume = v;
          best = t.name;
        }
      }
      if (best === null) break;
      trial.set(best, add(loadOf(best), g.demand));
      placed.push({ g, to: best });
    }
    if (placed.length !== guestsOf.length) continue;
    for (const { g, to } of placed) {
      moves.push({ guest: g.name, from: h.name, to });
      on.get(to)!.push(g);
    }
    on.set(h.name, []);
    trial.set(h.name, ZERO);
    for (const [k, v] of trial) load.set(k, v);
    freed.add(h.name);
  }
  return {
    moves, freed: [...freed].sort(), hostsInUse: hosts.length - freed.size,
    ffdHosts: firstFitDecreasing(hosts, guests, threshold), wattsBefore, wattsAfter: watts(hosts, load, on, power),
  };
}

/** Hosts first-fit-decreasing uses for `guests` (largest volume first, hosts largest first); null when some guest fits nowhere. */
export function firstFitDecreasing(hosts: readonly HostState[], guests: readonly GuestState[], threshold: Vector): number | null {
  const bins = [...hosts].sort((a, b) => b.capacity.cpu - a.capacity.cpu || b.capacity.mem - a.capacity.mem)
    .map((h) => ({ capacity: h.capacity, load: ZERO, used: false }));
  const ref = hosts[0]?.capacity ?? { cpu: 1, net: 1, mem: 1 };
  const order = [...guests].sort((a, b) => volume(utilisation(b.demand, ref)) - volume(utilisation(a.demand, ref)));
  for (const g of order) {
    const bin = bins.find((b) => over(utilisation(add(b.load, g.demand), b.capacity), threshold).length === 0);
    if (bin === undefined) return null;
    bin.load = add(bin.load, g.demand);
    bin.used = true;
  }
  return bins.filter((b) => b.used).length;
}

function watts(hosts: readonly HostState[], load: ReadonlyMap<string, Vector>, on: ReadonlyMap<string, GuestState[]>, power: PowerModel): number {
  let w = 0;
  for (const h of hosts) {
    if (on.get(h.name)!.length === 0) continue;
    const cpu = Math.min(1, load.get(h.name)!.cpu / h.capacity.cpu);
    w += power.idleWatts + (power.peakWatts - power.idleWatts) * cpu;
  }
  return w;
}
