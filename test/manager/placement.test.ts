// planHotspots (placement.ts) on small hand-built clusters: what moves (highest volume-to-size ratio
// first), where (least-loaded host that stays under every threshold, not one the guest just left), how
// much (demand × headroom), how (live / hybrid / post-copy), and when it stops (host under, or budget).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chooseMode, planHotspots, vsr, DEFAULT_PLAN_OPTIONS, type GuestState, type HostState, type Plan, type PlanOptions } from '../../src/manager/placement.js';
import type { Hotspot } from '../../src/manager/hotspot.js';
import { add, over, utilisation, volume, type Vector } from '../../src/manager/resources.js';
import { seeded } from '../_support/seeded.js';

const v = (cpu: number, net: number, mem: number): Vector => ({ cpu, net, mem });
const CAP = v(10, 100, 100);
const T = v(0.75, 0.75, 0.85);

const host = (name: string, capacity: Vector = CAP): HostState => ({ name, capacity });
const guest = (name: string, on: string, demand: Vector, memoryBytes = 8, dirtyRate = 0): GuestState => ({ name, host: on, demand, memoryBytes, dirtyRate });
const hot = (name: string): Hotspot => ({ host: name, resources: ['cpu'], hotIntervals: 3, utilisation: v(0.9, 0, 0), predicted: v(0.9, 0, 0) });
const opts = (o: Partial<PlanOptions> = {}): PlanOptions => ({
  threshold: T, linkBytesPerSec: 1000, maxMigrations: 64, headroom: 1.1, recentMoves: new Map(), interval: 0, cooldownIntervals: 30, ...o,
});
const moves = (p: Plan): string[] => p.migrations.map((m) => `${m.guest}:${m.from}->${m.to}`);

/** Each host's load after the plan's moves, applied in order. */
function loadsAfter(hosts: readonly HostState[], guests: readonly GuestState[], plan: Plan): Map<string, Vector> {
  const where = new Map(guests.map((g) => [g.name, g.host]));
  for (const m of plan.migrations) {
    assert.is(where.get(m.guest), m.from, `${m.guest} planned to leave ${m.from} but is on ${where.get(m.guest)}`);
    where.set(m.guest, m.to);
  }
  const load = new Map<string, Vector>(hosts.map((h) => [h.name, v(0, 0, 0)]));
  for (const g of guests) load.set(where.get(g.name)!, add(load.get(where.get(g.name)!)!, g.demand));
  return load;
}

// ---- chooseMode ---------------------------------------------------------------------------------

test('chooseMode: live below 30 % of the link, hybrid below 90 %, post-copy from 90 %', () => {
  const link = 1000;
  assert.is(chooseMode(0, link), 'live');
  assert.is(chooseMode(299.99, link), 'live');
  assert.is(chooseMode(300, link), 'hybrid');
  assert.is(chooseMode(600, link), 'hybrid');
  assert.is(chooseMode(899.99, link), 'hybrid');
  assert.is(chooseMode(900, link), 'postcopy');
  assert.is(chooseMode(5000, link), 'postcopy');
  assert.is(chooseMode(0.29 * 1.25e9, 1.25e9), 'live');
  assert.is(chooseMode(0.31 * 1.25e9, 1.25e9), 'hybrid');
  assert.is(chooseMode(0.91 * 1.25e9, 1.25e9), 'postcopy');
});

test('the plan’s mode follows each guest’s dirty rate against the link', () => {
  // Three hot hosts (cpu 0.8), each with one guest that goes first (5 cores, highest VSR), three empty hosts.
  const hosts = ['H1', 'H2', 'H3', 'E1', 'E2', 'E3'].map((n) => host(n));
  const guests = [
    guest('slow', 'H1', v(5, 0, 0), 1, 100), guest('mid', 'H2', v(5, 0, 0), 1, 500), guest('fast', 'H3', v(5, 0, 0), 1, 950),
    ...['H1', 'H2', 'H3'].map((h) => guest(`bg-${h}`, h, v(3, 0, 0), 64, 0)),
  ];
  const plan = planHotspots([hot('H1'), hot('H2'), hot('H3')], hosts, guests, opts({ linkBytesPerSec: 1000 }));
  assert.equal(plan.migrations.map((m) => m.guest), ['slow', 'mid', 'fast']);
  const mode = new Map(plan.migrations.map((m) => [m.guest, m.mode]));
  assert.equal(Object.fromEntries(mode), { slow: 'live', mid: 'hybrid', fast: 'postcopy' });
});

// ---- what moves ---------------------------------------------------------------------------------

test('the guest of highest volume-to-size ratio moves first (smaller memory, same load)', () => {
  // H at cpu 0.85. "big" and "small" load it equally, but small copies 8× fewer bytes; bg is light.
  const hosts = [host('H'), host('E')];
  for (const order of [['big', 'small', 'bg'], ['small', 'bg', 'big'], ['bg', 'big', 'small']]) {
    const all: Record<string, GuestState> = {
      big: guest('big', 'H', v(4, 1, 1), 16), small: guest('small', 'H', v(4, 1, 1), 2), bg: guest('bg', 'H', v(0.5, 0, 1), 8),
    };
    const plan = planHotspots([hot('H')], hosts, order.map((n) => all[n]), opts());
    assert.equal(moves(plan), ['small:H->E'], `guest order ${order}`);
    const expectedVsr = volume(utilisation(v(4, 1, 1), CAP)) / 2;
    assert.ok(Math.abs(plan.migrations[0].vsr - expectedVsr) < 1e-12, `vsr ${plan.migrations[0].vsr} ≠ ${expectedVsr}`);
    assert.is(plan.migrations[0].vsr, vsr(all.small, CAP));
  }
});

test('the guest of highest volume-to-size ratio moves first (same memory, more load)', () => {
  const hosts = [host('H'), host('E')];
  const guests = [guest('a', 'H', v(3, 0, 0), 4), guest('b', 'H', v(5, 0, 0), 4), guest('c', 'H', v(1, 0, 0), 4)];
  const plan = planHotspots([hot('H')], hosts, guests, opts());
  assert.equal(moves(plan), ['b:H->E']);
});

test('guests leave in decreasing VSR until the host is under, then stop', () => {
  // H at cpu 1.2; VSRs differ only by memory: m1 (1 B) > m2 (2 B) > m4 (4 B) > m8 (8 B).
  const hosts = [host('H'), host('E', v(100, 1000, 1000))];
  const guests = [guest('m8', 'H', v(3, 0, 0), 8), guest('m2', 'H', v(3, 0, 0), 2), guest('m4', 'H', v(3, 0, 0), 4), guest('m1', 'H', v(3, 0, 0), 1)];
  const plan = planHotspots([hot('H')], hosts, guests, opts());
  // 12 → 9 (0.9) → 6 (0.6): two moves.
  assert.equal(plan.migrations.map((m) => m.guest), ['m1', 'm2']);
  assert.equal(plan.unresolved, []);
  const vsrs = plan.migrations.map((m) => m.vsr);
  assert.ok(vsrs[0] > vsrs[1]);
});

test('stops as soon as the hot host is under every threshold; later choices see earlier moves', () => {
  // H at cpu 1.04 with four equal guests: 10.4 → 7.8 (0.78, still over) → 5.2 (0.52): two moves.
  const hosts = [host('H'), host('D1'), host('D2')];
  const guests = ['g1', 'g2', 'g3', 'g4'].map((n) => guest(n, 'H', v(2.6, 0, 0)));
  const plan = planHotspots([hot('H')], hosts, guests, opts());
  assert.is(plan.migrations.length, 2);
  assert.equal(plan.unresolved, []);
  // D1 and D2 are equally idle; the second guest goes to D2 because D1 has just taken the first.
  assert.equal(plan.migrations.map((m) => m.to), ['D1', 'D2']);
  const after = loadsAfter(hosts, guests, plan);
  assert.equal(over(utilisation(after.get('H')!, CAP), T), []);
});

test('a hotspot already under every threshold (by planning demand) moves nothing and is not unresolved', () => {
  const hosts = [host('H'), host('E')];
  const plan = planHotspots([hot('H')], hosts, [guest('g', 'H', v(5, 0, 0))], opts());
  assert.equal(plan, { migrations: [], unresolved: [] });
});

test('a hot host over on memory sheds memory, not only CPU', () => {
  const hosts = [host('H'), host('E')];
  const guests = [guest('fat', 'H', v(0.5, 0, 50), 50), guest('cpu', 'H', v(2, 0, 5), 5), guest('x', 'H', v(0.5, 0, 40), 40)];
  const spot: Hotspot = { host: 'H', resources: ['mem'], hotIntervals: 3, utilisation: v(0.3, 0, 0.95), predicted: v(0.3, 0, 0.95) };
  const plan = planHotspots([spot], hosts, guests, opts());
  const after = loadsAfter(hosts, guests, plan);
  assert.equal(over(utilisation(after.get('H')!, CAP), T), []);
  assert.equal(plan.unresolved, []);
  assert.match(plan.migrations[0].reason, /mem 95 % > 85 %/);
});

// ---- where it goes ------------------------------------------------------------------------------

test('the destination is the least-loaded (lowest volume) host the guest fits on', () => {
  const hosts = [host('H'), host('A'), host('B'), host('C')];
  const guests = [
    guest('g', 'H', v(3, 0, 0), 1), guest('bg', 'H', v(5, 0, 0), 64),
    guest('a', 'A', v(5, 0, 0)), guest('b', 'B', v(1, 10, 0)), guest('c', 'C', v(2, 0, 0)),
  ];
  // Volumes: A 2, B 1/(0.9·0.9) ≈ 1.23, C 1.25. B is the least loaded.
  const plan = planHotspots([hot('H')], hosts, guests, opts());
  assert.equal(moves(plan), ['g:H->B']);
  assert.match(plan.migrations[0].reason, /B is the least loaded host it fits on/);
});

test('never a host the guest would push over a threshold, even when it is the least loaded', () => {
  // S is empty (volume 1) but has 2 cores, so g's 2 cores would put it at 1.0;
  // Z is next (mem 0.5 → volume 2) but g's 40 of memory would put it at 0.9 > 0.85;
  // W (cpu 0.52 → volume 2.08) keeps everything under (cpu 0.72, mem 0.4): g goes there.
  const hosts = [host('H'), host('S', v(2, 100, 100)), host('Z'), host('W')];
  const guests = [guest('g', 'H', v(2, 0, 40), 1), guest('bg', 'H', v(6, 0, 0), 64), guest('z', 'Z', v(0, 0, 50)), guest('w', 'W', v(5.2, 0, 0))];
  const plan = planHotspots([hot('H')], hosts, guests, opts());
  assert.equal(moves(plan), ['g:H->W']);
  const after = loadsAfter(hosts, guests, plan);
  for (const h of hosts) if (h.name !== 'H') assert.equal(over(utilisation(after.get(h.name)!, h.capacity), T), [], h.name);
});

test('a guest at exactly the threshold fits (only strictly above is over)', () => {
  const hosts = [host('H'), host('E')];
  const guests = [guest('g', 'H', v(7.5, 0, 0), 1), guest('bg', 'H', v(1, 0, 0), 64)];
  const plan = planHotspots([hot('H')], hosts, guests, opts());
  assert.equal(moves(plan), ['g:H->E']);
});

test('when nothing fits anywhere, the host is unresolved with a reason naming what is still over', () => {
  // Every guest is 6 cores; the only other host already has 4 (0.4 + 0.6 = 1.0 > 0.75).
  const hosts = [host('H'), host('F')];
  const guests = [guest('g1', 'H', v(6, 0, 0)), guest('g2', 'H', v(6, 0, 0)), guest('f', 'F', v(4, 0, 0))];
  const plan = planHotspots([hot('H')], hosts, guests, opts());
  assert.equal(plan.migrations, []);
  assert.is(plan.unresolved.length, 1);
  assert.is(plan.unresolved[0].host, 'H');
  assert.match(plan.unresolved[0].why, /no host fits/);
  assert.match(plan.unresolved[0].why, /cpu/);
  assert.not.match(plan.unresolved[0].why, /budget/);
});

test('a guest that fits nowhere is skipped; the next one that fits moves instead', () => {
  const hosts = [host('H'), host('F')];
  // big (highest VSR: 1 byte) fits nowhere (F would be at 0.9); small fits.
  const guests = [guest('big', 'H', v(7, 0, 0), 1), guest('small', 'H', v(2, 0, 0), 64), guest('f', 'F', v(2, 0, 0))];
  const plan = planHotspots([hot('H')], hosts, guests, opts());
  assert.equal(moves(plan), ['small:H->F']);
  assert.equal(plan.unresolved, []);
});

// ---- budget -------------------------------------------------------------------------------------

test('maxMigrations caps the plan; the hot host is then unresolved, with the budget as reason', () => {
  const hosts = [host('H'), host('D1'), host('D2')];
  const guests = ['g1', 'g2', 'g3', 'g4'].map((n) => guest(n, 'H', v(2.6, 0, 0)));
  const one = planHotspots([hot('H')], hosts, guests, opts({ maxMigrations: 1 }));
  assert.is(one.migrations.length, 1);
  assert.is(one.unresolved.length, 1);
  assert.is(one.unresolved[0].host, 'H');
  assert.match(one.unresolved[0].why, /network budget/);
  const none = planHotspots([hot('H')], hosts, guests, opts({ maxMigrations: 0 }));
  assert.equal(none.migrations, []);
  assert.equal(none.unresolved.map((u) => u.host), ['H']);
  assert.match(none.unresolved[0].why, /budget/);
  // Exactly enough budget: resolved, nothing unresolved.
  const two = planHotspots([hot('H')], hosts, guests, opts({ maxMigrations: 2 }));
  assert.is(two.migrations.length, 2);
  assert.equal(two.unresolved, []);
});

test('the budget is shared across hotspots, the most loaded first', () => {
  // H2 (cpu 1.04) is more loaded than H1 (cpu 0.8), though listed second: it gets the budget.
  const hosts = [host('H1'), host('H2'), host('D1'), host('D2'), host('D3')];
  const guests = [
    guest('a1', 'H1', v(4, 0, 0)), guest('a2', 'H1', v(4, 0, 0)),
    ...['b1', 'b2', 'b3', 'b4'].map((n) => guest(n, 'H2', v(2.6, 0, 0))),
  ];
  const plan = planHotspots([hot('H1'), hot('H2')], hosts, guests, opts({ maxMigrations: 2 }));
  assert.equal(plan.migrations.map((m) => m.from), ['H2', 'H2']);
  assert.equal(plan.unresolved.map((u) => u.host), ['H1']);
  assert.match(plan.unresolved[0].why, /budget/);
  const enough = planHotspots([hot('H1'), hot('H2')], hosts, guests, opts({ maxMigrations: 3 }));
  assert.equal(enough.migrations.map((m) => m.from), ['H2', 'H2', 'H1']);
  assert.equal(enough.unresolved, []);
});

// ---- cooldown -----------------------------------------------------------------------------------

test('cooldown: a guest never goes back to the host it left within cooldownIntervals, but may after', () => {
  // P is the least loaded (empty); Q has 1 core. g left P at interval 5.
  const hosts = [host('H'), host('P'), host('Q')];
  const guests = [guest('g', 'H', v(3, 0, 0), 1), guest('bg', 'H', v(5, 0, 0), 64), guest('q', 'Q', v(1, 0, 0))];
  const recentMoves = new Map([['g', [{ from: 'P', interval: 5 }]]]);
  const at = (interval: number): Plan => planHotspots([hot('H')], hosts, guests, opts({ recentMoves, interval, cooldownIntervals: 30 }));
  for (const t of [5, 6, 20, 34]) {
    const p = at(t);
    assert.equal(moves(p), ['g:H->Q'], `interval ${t}`);
    assert.match(p.migrations[0].reason, new RegExp(`not P, which it left ${t - 5} intervals ago`));
  }
  for (const t of [35, 36, 100]) {
    const p = at(t);
    assert.equal(moves(p), ['g:H->P'], `interval ${t}`);
    assert.not.match(p.migrations[0].reason, /not P/);
  }
  // Without a record, P.
  assert.equal(moves(planHotspots([hot('H')], hosts, guests, opts({ interval: 10 }))), ['g:H->P']);
});

test('cooldown covers every host the guest left within it, not only the last: no A → B → C → A', () => {
  const hosts = [host('H'), host('A'), host('B'), host('C')];
  const guests = [guest('g', 'H', v(3, 0, 0), 1), guest('bg', 'H', v(5, 0, 0), 64), guest('b', 'B', v(1, 0, 0)), guest('c', 'C', v(2, 0, 0))];
  // g went A → B at 0, B → H at 1; A is the least loaded, but g left it 2 intervals ago.
  const recentMoves = new Map([['g', [{ from: 'A', interval: 0 }, { from: 'B', interval: 1 }]]]);
  const plan = planHotspots([hot('H')], hosts, guests, opts({ recentMoves, interval: 2, cooldownIntervals: 30 }));
  assert.equal(moves(plan), ['g:H->C']);
  assert.match(plan.migrations[0].reason, /not A, which it left 2 intervals ago; not B, which it left 1 intervals ago/);
});

test('cooldown applies to that guest and that host only', () => {
  const hosts = [host('H'), host('P'), host('Q')];
  const guests = [guest('g', 'H', v(3, 0, 0), 1), guest('bg', 'H', v(5, 0, 0), 64), guest('q', 'Q', v(1, 0, 0))];
  // Another guest left P; g left some other host: g may still go to P.
  const recentMoves = new Map([['other', [{ from: 'P', interval: 9 }]], ['g', [{ from: 'X', interval: 9 }]]]);
  assert.equal(moves(planHotspots([hot('H')], hosts, guests, opts({ recentMoves, interval: 10 }))), ['g:H->P']);
});

test('cooldown: when the only fitting host is the one it left, the guest stays (and another may move)', () => {
  const hosts = [host('H'), host('P')];
  const guests = [guest('g', 'H', v(3, 0, 0), 1), guest('h2', 'H', v(5, 0, 0), 64)];
  const recentMoves = new Map([['g', [{ from: 'P', interval: 9 }]]]);
  const plan = planHotspots([hot('H')], hosts, guests, opts({ recentMoves, interval: 10 }));
  assert.equal(moves(plan), ['h2:H->P']);
  assert.ok(plan.migrations.every((m) => !(m.guest === 'g' && m.to === 'P')));
});

// ---- allocation, errors, determinism ------------------------------------------------------------

test('allocation is demand × headroom', () => {
  const hosts = [host('H'), host('E')];
  const d = v(4, 30, 20);
  const guests = [guest('g', 'H', d, 1), guest('bg', 'H', v(4, 0, 0), 64)];
  for (const headroom of [1, 1.1, 1.25, 2]) {
    const plan = planHotspots([hot('H')], hosts, guests, opts({ headroom }));
    assert.is(plan.migrations[0].guest, 'g');
    assert.equal(plan.migrations[0].allocation, { cpu: d.cpu * headroom, net: d.net * headroom, mem: d.mem * headroom });
  }
});

test('a guest on an unknown host throws', () => {
  assert.throws(() => planHotspots([], [host('H')], [guest('g', 'nowhere', v(1, 0, 0))], opts()), /unknown host/);
});

test('a hotspot on an unknown host throws', () => {
  const hosts = [host('H'), host('E')];
  const guests = [guest('g', 'H', v(9, 0, 0))];
  assert.throws(() => planHotspots([hot('ghost')], hosts, guests, opts()), /unknown host ghost/);
  assert.throws(() => planHotspots([hot('H'), hot('ghost')], hosts, guests, opts()), /unknown host ghost/, 'named, with another hotspot alongside');
});

/** A seeded cluster of `n` hosts, some overloaded, and its hotspots (hosts over a threshold by demand). */
function randomCluster(seed: number, n: number, perHost: number): { hosts: HostState[]; guests: GuestState[]; hotspots: Hotspot[] } {
  const r = seeded(seed);
  const f = (): number => r.u32() / 2 ** 32;
  const hosts = Array.from({ length: n }, (_, i) => host(`h${i}`));
  const guests: GuestState[] = [];
  for (let i = 0; i < n * perHost; i++) {
    const on = hosts[r.below(n)].name;
    guests.push(guest(`g${i}`, on, v(0.2 + f() * 2, f() * 12, 1 + f() * 14), 1 + r.below(16), f() * 2000));
  }
  const load = new Map<string, Vector>(hosts.map((h) => [h.name, v(0, 0, 0)]));
  for (const g of guests) load.set(g.host, add(load.get(g.host)!, g.demand));
  const hotspots = hosts.filter((h) => over(utilisation(load.get(h.name)!, h.capacity), T).length > 0)
    .map((h): Hotspot => ({ host: h.name, resources: over(utilisation(load.get(h.name)!, h.capacity), T), hotIntervals: 3, utilisation: utilisation(load.get(h.name)!, h.capacity), predicted: utilisation(load.get(h.name)!, h.capacity) }));
  return { hosts, guests, hotspots };
}

test('deterministic: the same input gives the same plan, and the input is not modified', () => {
  const { hosts, guests, hotspots } = randomCluster(42, 30, 5);
  assert.ok(hotspots.length >= 3, `the fixture should have hotspots, has ${hotspots.length}`);
  const before = JSON.stringify({ hosts, guests, hotspots });
  const recentMoves = new Map([[guests[0].name, [{ from: 'h3', interval: 1 }]]]);
  const a = planHotspots(hotspots, hosts, guests, opts({ recentMoves, interval: 2, maxMigrations: 20 }));
  const b = planHotspots(hotspots, hosts, guests, opts({ recentMoves, interval: 2, maxMigrations: 20 }));
  assert.equal(a, b);
  assert.ok(a.migrations.length > 0);
  assert.is(JSON.stringify({ hosts, guests, hotspots }), before);
});

test('seeded clusters: every invariant of a plan holds', () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    const { hosts, guests, hotspots } = randomCluster(seed, 24, 5);
    const maxMigrations = 12;
    const plan = planHotspots(hotspots, hosts, guests, opts({ maxMigrations }));
    assert.ok(plan.migrations.length <= maxMigrations, `seed ${seed}: ${plan.migrations.length} migrations`);
    const hotNames = new Set(hotspots.map((h) => h.host));
    const after = loadsAfter(hosts, guests, plan);
    const moved = new Set<string>();
    for (const m of plan.migrations) {
      assert.ok(hotNames.has(m.from), `seed ${seed}: ${m.guest} left ${m.from}, which is not a hotspot`);
      assert.ok(m.from !== m.to, `seed ${seed}: ${m.guest} moved to where it was`);
      assert.not.ok(moved.has(m.guest), `seed ${seed}: ${m.guest} moved twice in one plan`);
      moved.add(m.guest);
      assert.not.ok(hotNames.has(m.to) && over(utilisation(after.get(m.to)!, CAP), T).length > 0, `seed ${seed}: ${m.to} received ${m.guest} and is over`);
    }
    // A host that received a guest is under every threshold at the end of the plan.
    for (const to of new Set(plan.migrations.map((m) => m.to))) {
      assert.equal(over(utilisation(after.get(to)!, CAP), T), [], `seed ${seed}: destination ${to} over after the plan`);
    }
    // Every hotspot is either under every threshold after the plan or reported unresolved, not both.
    const unresolved = new Set(plan.unresolved.map((u) => u.host));
    for (const h of hotspots) {
      const still = over(utilisation(after.get(h.host)!, CAP), T).length > 0;
      assert.is(unresolved.has(h.host), still, `seed ${seed}: ${h.host} still over ${still}, unresolved ${unresolved.has(h.host)}`);
    }
    // The budget reason only when the budget is spent.
    for (const u of plan.unresolved) {
      if (/budget/.test(u.why)) assert.is(plan.migrations.length, maxMigrations, `seed ${seed}`);
    }
  }
});

test('DEFAULT_PLAN_OPTIONS are the documented ones', () => {
  assert.equal(DEFAULT_PLAN_OPTIONS.threshold, v(0.75, 0.75, 0.85));
  assert.is(DEFAULT_PLAN_OPTIONS.cooldownIntervals, 30);
  assert.is(DEFAULT_PLAN_OPTIONS.headroom, 1.1);
});

test.run();
