// consolidate and firstFitDecreasing (consolidation.ts): empty the least-loaded hosts whose guests all
// fit elsewhere (best fit, under every threshold), count the hosts left, compare with FFD, and the
// watts under the linear power model.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { consolidate, firstFitDecreasing, DEFAULT_POWER, type ConsolidationPlan } from '../../src/manager/consolidation.js';
import type { GuestState, HostState } from '../../src/manager/placement.js';
import { add, over, utilisation, type Vector } from '../../src/manager/resources.js';
import { seeded } from '../_support/seeded.js';

const v = (cpu: number, net: number, mem: number): Vector => ({ cpu, net, mem });
const CAP = v(10, 100, 100);
const T = v(0.75, 0.75, 0.85);
const host = (name: string, capacity: Vector = CAP): HostState => ({ name, capacity });
const guest = (name: string, on: string, demand: Vector): GuestState => ({ name, host: on, demand, memoryBytes: 8, dirtyRate: 0 });
const cpu = (name: string, on: string, c: number): GuestState => guest(name, on, v(c, 0, 0));
const close = (a: number, b: number, what: string): void => assert.ok(Math.abs(a - b) < 1e-9, `${what}: ${a} ≠ ${b}`);

/** Where every guest is after the plan's moves, applied in order, and each host's load. */
function after(hosts: readonly HostState[], guests: readonly GuestState[], plan: ConsolidationPlan): { where: Map<string, string>; load: Map<string, Vector> } {
  const where = new Map(guests.map((g) => [g.name, g.host]));
  for (const m of plan.moves) {
    assert.is(where.get(m.guest), m.from, `${m.guest} moved from ${m.from} but was on ${where.get(m.guest)}`);
    where.set(m.guest, m.to);
  }
  const load = new Map<string, Vector>(hosts.map((h) => [h.name, v(0, 0, 0)]));
  for (const g of guests) load.set(where.get(g.name)!, add(load.get(where.get(g.name)!)!, g.demand));
  return { where, load };
}

/** The linear power model, recomputed independently. */
function wattsOf(hosts: readonly HostState[], load: Map<string, Vector>, occupied: Set<string>, idle = DEFAULT_POWER.idleWatts, peak = DEFAULT_POWER.peakWatts): number {
  let w = 0;
  for (const h of hosts) if (occupied.has(h.name)) w += idle + (peak - idle) * Math.min(1, load.get(h.name)!.cpu / h.capacity.cpu);
  return w;
}

// A: 5 cores (a1 3, a2 2); B: 4 cores (b1 2, b2 2); C: half a core. C empties onto A (best fit: the
// most loaded host it fits on); B cannot (b1 would fit on A, b2 then fits nowhere), nor can A.
const ABC_HOSTS = [host('A'), host('B'), host('C')];
const ABC_GUESTS = [cpu('a1', 'A', 3), cpu('a2', 'A', 2), cpu('b1', 'B', 2), cpu('b2', 'B', 2), cpu('c1', 'C', 0.5)];

test('frees an obviously underloaded host whose guest fits elsewhere, best fit', () => {
  const plan = consolidate(ABC_HOSTS, ABC_GUESTS, T);
  assert.equal(plan.moves, [{ guest: 'c1', from: 'C', to: 'A' }]);
  assert.equal(plan.freed, ['C']);
  assert.is(plan.hostsInUse, 2);
});

test('never frees a host whose guests cannot all fit, and then moves none of them', () => {
  const plan = consolidate(ABC_HOSTS, ABC_GUESTS, T);
  assert.not.ok(plan.freed.includes('B'));
  assert.equal(plan.moves.filter((m) => m.from === 'B'), [], 'b1 alone would have fitted on A: it must not move');
  assert.equal(plan.moves.filter((m) => m.from === 'A'), []);
  const { where } = after(ABC_HOSTS, ABC_GUESTS, plan);
  assert.is(where.get('b1'), 'B');
  assert.is(where.get('b2'), 'B');
});

test('nothing to free: two busy hosts stay as they are', () => {
  const hosts = [host('A'), host('B')];
  const guests = [cpu('a', 'A', 6), cpu('b', 'B', 6)];
  const plan = consolidate(hosts, guests, T);
  assert.equal(plan.moves, []);
  assert.equal(plan.freed, []);
  assert.is(plan.hostsInUse, 2);
  assert.is(plan.wattsAfter, plan.wattsBefore);
});

test('best fit: the guest goes to the most loaded host that keeps it under', () => {
  const hosts = [host('S'), host('M1'), host('M2'), host('Full')];
  const guests = [cpu('s', 'S', 0.5), cpu('m1', 'M1', 3), cpu('m2', 'M2', 6), cpu('full', 'Full', 7.2)];
  const plan = consolidate(hosts, guests, T);
  // Full (7.2) is the most loaded, but 7.7 would be over 7.5: M2 (6 → 6.5) is the tightest fit.
  assert.equal(plan.moves[0], { guest: 's', from: 'S', to: 'M2' });
  assert.ok(plan.freed.includes('S'));
});

test('memory counts too: a guest that would put a host over its memory threshold does not go there', () => {
  // B is the least loaded by far, but its 10 of memory would take A to 0.9 > 0.85.
  const hosts = [host('A'), host('B')];
  const guests = [guest('a', 'A', v(1, 0, 80)), guest('b', 'B', v(0.1, 0, 10))];
  const plan = consolidate(hosts, guests, T);
  assert.equal(plan.moves, []);
  assert.equal(plan.freed, []);
  // With a looser memory threshold it goes.
  const loose = consolidate(hosts, guests, v(0.75, 0.75, 0.95));
  assert.equal(loose.moves, [{ guest: 'b', from: 'B', to: 'A' }]);
  assert.equal(loose.freed, ['B']);
});

test('a host with no guests is reported freed from the start, and is never a destination', () => {
  const hosts = [host('A'), host('Empty'), host('B')];
  const guests = [cpu('a', 'A', 6), cpu('b', 'B', 1)];
  const plan = consolidate(hosts, guests, T);
  assert.ok(plan.freed.includes('Empty'));
  assert.ok(plan.moves.every((m) => m.to !== 'Empty'));
  // b (1) fits on A (7 → 0.7): B is freed too.
  assert.equal(plan.freed, ['B', 'Empty']);
  assert.is(plan.hostsInUse, 1);
});

test('hostsInUse + freed = hosts; freed hosts hold no guest; every host in use holds one', () => {
  const plan = consolidate(ABC_HOSTS, ABC_GUESTS, T);
  assert.is(plan.hostsInUse + plan.freed.length, ABC_HOSTS.length);
  const { where } = after(ABC_HOSTS, ABC_GUESTS, plan);
  const occupied = new Set(where.values());
  for (const f of plan.freed) assert.not.ok(occupied.has(f), `${f} freed but holds a guest`);
  assert.is(occupied.size, plan.hostsInUse);
});

test('watts: hand-computed before and after; freeing a host saves its idle watts', () => {
  const plan = consolidate(ABC_HOSTS, ABC_GUESTS, T);
  // Before: A 100 + 150·0.5, B 100 + 150·0.4, C 100 + 150·0.05. After: A 100 + 150·0.55, B as before.
  close(plan.wattsBefore, 175 + 160 + 107.5, 'wattsBefore');
  close(plan.wattsAfter, 182.5 + 160, 'wattsAfter');
  assert.ok(plan.wattsAfter < plan.wattsBefore);
  // Linear in CPU and the cores do not change: the saving is exactly the idle watts of the freed host.
  close(plan.wattsBefore - plan.wattsAfter, DEFAULT_POWER.idleWatts, 'saving');
});

test('watts: a custom power model, and CPU over capacity draws peak watts (no more)', () => {
  const hosts = [host('A'), host('B')];
  const guests = [cpu('a', 'A', 12), cpu('b', 'B', 2)];
  const plan = consolidate(hosts, guests, T, { idleWatts: 50, peakWatts: 150 });
  assert.equal(plan.moves, []);
  close(plan.wattsBefore, 150 + (50 + 100 * 0.2), 'wattsBefore');
  close(plan.wattsAfter, plan.wattsBefore, 'wattsAfter');
});

test('ffdHosts is first-fit-decreasing on the same guests and thresholds', () => {
  const plan = consolidate(ABC_HOSTS, ABC_GUESTS, T);
  // 3, 2, 2 → bin 1 (7); 2 → bin 2; 0.5 → bin 1 (7.5, at the threshold): 2 bins.
  assert.is(plan.ffdHosts, 2);
  assert.is(plan.ffdHosts, firstFitDecreasing(ABC_HOSTS, ABC_GUESTS, T));
});

// ---- firstFitDecreasing -------------------------------------------------------------------------

test('firstFitDecreasing on a hand-checked instance', () => {
  const hosts = [host('h1'), host('h2'), host('h3'), host('h4')];
  const guests = [cpu('x3a', 'h1', 3), cpu('x2', 'h1', 2), cpu('x5', 'h2', 5), cpu('x3b', 'h3', 3), cpu('x4', 'h4', 4)];
  // Threshold 0.75 (7.5 cores): 5 → b1; 4 → b2; 3 → b2 (7); 3 → b3; 2 → b1 (7): 3 bins.
  assert.is(firstFitDecreasing(hosts, guests, T), 3);
  // Threshold 1 (10 cores): 5, 4 → b1 (9); 3, 3 → b2 (6); 2 → b2 (8): 2 bins.
  assert.is(firstFitDecreasing(hosts, guests, v(1, 1, 1)), 2);
  // One bin when everything fits on one host.
  assert.is(firstFitDecreasing(hosts, [cpu('a', 'h1', 1), cpu('b', 'h2', 1)], T), 1);
  assert.is(firstFitDecreasing(hosts, [], T), 0);
});

test('firstFitDecreasing: memory forces bins CPU alone would not', () => {
  const hosts = [host('h1'), host('h2'), host('h3')];
  const guests = [guest('a', 'h1', v(1, 0, 50)), guest('b', 'h1', v(1, 0, 50)), guest('c', 'h2', v(1, 0, 30))];
  // 50 + 50 = 100 > 85; 50 + 30 = 80 fits: 2 bins.
  assert.is(firstFitDecreasing(hosts, guests, T), 2);
});

test('firstFitDecreasing fills the largest hosts first', () => {
  const hosts = [host('small', v(10, 100, 100)), host('big', v(20, 100, 100))];
  const guests = [cpu('a', 'small', 5), cpu('b', 'small', 5)];
  // big first: 5 → 0.25, 5 → 0.5: one host (small first would need two).
  assert.is(firstFitDecreasing(hosts, guests, T), 1);
});

test('firstFitDecreasing is null when a guest fits nowhere; consolidate reports it', () => {
  const hosts = [host('h1'), host('h2')];
  const guests = [cpu('huge', 'h1', 8), cpu('small', 'h2', 1)];
  assert.is(firstFitDecreasing(hosts, guests, T), null);
  assert.is(consolidate(hosts, guests, T).ffdHosts, null);
  // Fits nowhere because of one resource only.
  assert.is(firstFitDecreasing(hosts, [guest('net', 'h1', v(0, 80, 0))], T), null);
});

// ---- seeded clusters ----------------------------------------------------------------------------

function randomCluster(seed: number, n: number, perHost: number): { hosts: HostState[]; guests: GuestState[] } {
  const r = seeded(seed);
  const f = (): number => r.u32() / 2 ** 32;
  const hosts = Array.from({ length: n }, (_, i) => host(`h${i}`));
  const load = new Map<string, Vector>(hosts.map((h) => [h.name, v(0, 0, 0)]));
  const guests: GuestState[] = [];
  for (let i = 0; i < n * perHost; i++) {
    // Light guests (a night's load), placed at random where they keep the host under 60 %.
    const d = v(0.05 + f() * 0.8, f() * 6, 1 + f() * 8);
    for (let tries = 0; tries < 100; tries++) {
      const h = hosts[r.below(n)];
      const u = utilisation(add(load.get(h.name)!, d), h.capacity);
      if (u.cpu <= 0.6 && u.net <= 0.6 && u.mem <= 0.6) {
        load.set(h.name, add(load.get(h.name)!, d));
        guests.push(guest(`g${i}`, h.name, d));
        break;
      }
    }
  }
  return { hosts, guests };
}

test('seeded clusters: never a host over a threshold, accounting and watts consistent, deterministic', () => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const { hosts, guests } = randomCluster(seed, 20, 4);
    const plan = consolidate(hosts, guests, T);
    assert.equal(consolidate(hosts, guests, T), plan, `seed ${seed}: not deterministic`);
    const { where, load } = after(hosts, guests, plan);
    for (const h of hosts) assert.equal(over(utilisation(load.get(h.name)!, h.capacity), T), [], `seed ${seed}: ${h.name} over`);
    const occupied = new Set(where.values());
    assert.is(plan.hostsInUse + plan.freed.length, hosts.length, `seed ${seed}`);
    assert.is(occupied.size, plan.hostsInUse, `seed ${seed}`);
    for (const f of plan.freed) assert.not.ok(occupied.has(f), `seed ${seed}: ${f} freed but occupied`);
    assert.ok(plan.freed.length > 0, `seed ${seed}: a lightly loaded cluster should free something`);
    assert.ok(plan.wattsAfter < plan.wattsBefore, `seed ${seed}: watts ${plan.wattsAfter} ≥ ${plan.wattsBefore}`);
    const before = wattsOf(hosts, (() => { const l = new Map<string, Vector>(hosts.map((h) => [h.name, v(0, 0, 0)])); for (const g of guests) l.set(g.host, add(l.get(g.host)!, g.demand)); return l; })(), new Set(guests.map((g) => g.host)));
    close(plan.wattsBefore, before, `seed ${seed}: wattsBefore`);
    close(plan.wattsAfter, wattsOf(hosts, load, occupied), `seed ${seed}: wattsAfter`);
    const ffd = firstFitDecreasing(hosts, guests, T);
    assert.is(plan.ffdHosts, ffd);
    assert.ok(ffd !== null && ffd >= 1 && ffd <= hosts.length);
  }
});

test.run();
