// simulate (simulation.ts) on a small seeded cluster: 60 hosts, 600 guests, 12 intervals. Plan-level
// figures only (never the timing ones): deterministic for a seed, no ping-pong, every hotspot
// resolved, consolidation no worse than first-fit-decreasing, and hotspots only where there is a surge.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { simulate, type SimulationOptions, type SimulationReport } from '../../src/manager/simulation.js';

const SMALL: SimulationOptions = { hosts: 60, guests: 600, seed: 1, intervals: 12, surgeAt: 4, surgeShare: 0.2, nightShare: 0.3, intervalSeconds: 10 };

/** The fields of a report that the plans determine (no wall-clock figures). */
function planFields(r: SimulationReport): unknown {
  const { consolidateMs: _ms, ...consolidation } = r.consolidation;
  return {
    hosts: r.hosts, guests: r.guests, hotspots: r.hotspots, migrations: r.migrations, unresolved: r.unresolved,
    movedTwice: r.movedTwice, pingPong: r.pingPong, resolveIntervals: r.resolveIntervals, consolidation, sample: r.sample,
  };
}

// Computed once and shared: each run is tens of milliseconds.
const surge = simulate(SMALL);
const calm = simulate({ ...SMALL, surgeShare: 0 });

test('deterministic for a fixed seed in every plan-level field', () => {
  const again = simulate(SMALL);
  assert.equal(planFields(again), planFields(surge));
  assert.is(again.hotspots, surge.hotspots);
  assert.is(again.migrations, surge.migrations);
  assert.is(again.consolidation.hostsInUse, surge.consolidation.hostsInUse);
  assert.is(again.consolidation.freed, surge.consolidation.freed);
});

test('a different seed draws a different cluster', () => {
  const other = simulate({ ...SMALL, seed: 2 });
  assert.not.equal(planFields(other), planFields(surge));
});

test('the report describes the cluster asked for, and a surge gives hotspots that are acted on', () => {
  assert.is(surge.hosts, 60);
  assert.is(surge.guests, 600);
  assert.ok(surge.hotspots > 0, `hotspots ${surge.hotspots}`);
  assert.ok(surge.migrations >= surge.hotspots, `${surge.migrations} migrations for ${surge.hotspots} hotspots`);
  assert.ok(surge.sample.length > 0 && surge.sample.length <= 5);
  for (const m of surge.sample) {
    assert.ok(m.from !== m.to);
    assert.ok(['live', 'hybrid', 'postcopy'].includes(m.mode));
    assert.match(m.reason, /volume-to-size ratio/);
  }
  assert.ok(surge.resolveIntervals.hosts > 0 && surge.resolveIntervals.p50 >= 1 && surge.resolveIntervals.max >= surge.resolveIntervals.p50);
});

test('no guest is moved back to a host it left (pingPong 0), and every hotspot is resolved', () => {
  assert.is(surge.pingPong, 0);
  assert.ok(surge.movedTwice >= surge.pingPong);
  assert.is(surge.unresolved, 0);
});

test('consolidation: hostsInUse ≤ first-fit-decreasing, hostsInUse + freed = hosts, fewer watts', () => {
  for (const r of [surge, calm]) {
    const c = r.consolidation;
    assert.ok(c.ffdHosts !== null, 'FFD fits the night’s guests');
    assert.ok(c.hostsInUse <= c.ffdHosts!, `hostsInUse ${c.hostsInUse} > ffdHosts ${c.ffdHosts}`);
    assert.is(c.hostsInUse + c.freed, r.hosts);
    assert.ok(c.freed > 0, 'a cluster at 30 % of its day load should free hosts');
    assert.ok(c.moves > 0);
    assert.ok(c.wattsAfter < c.wattsBefore, `watts ${c.wattsAfter} ≥ ${c.wattsBefore}`);
    assert.ok(c.hostsInUse >= 1);
  }
});

test('no surge → no hotspot and no migration; a surge → more hotspots', () => {
  assert.is(calm.hotspots, 0);
  assert.is(calm.migrations, 0);
  assert.is(calm.unresolved, 0);
  assert.is(calm.movedTwice, 0);
  assert.equal(calm.sample, []);
  assert.ok(surge.hotspots > calm.hotspots, `surge ${surge.hotspots} ≤ calm ${calm.hotspots}`);
  assert.ok(surge.migrations > calm.migrations);
});

test('a larger surge share gives at least as many hotspots, on the same seed', () => {
  const small = simulate({ ...SMALL, surgeShare: 0.05 });
  assert.ok(small.hotspots > 0, `surgeShare 0.05: ${small.hotspots} hotspots`);
  assert.ok(surge.hotspots > small.hotspots, `surgeShare 0.2: ${surge.hotspots} ≤ surgeShare 0.05: ${small.hotspots}`);
  assert.is(small.pingPong, 0);
  assert.is(small.unresolved, 0);
});

test('a surge that starts after the last interval produces no hotspot', () => {
  const late = simulate({ ...SMALL, surgeAt: 100 });
  assert.is(late.hotspots, 0);
  assert.is(late.migrations, 0);
});

test('every migration is costed by the engine\'s model: some time, some downtime, at least the guests\' bytes', () => {
  const c = surge.migrationCost;
  assert.ok(c.seconds.p50 > 0 && c.seconds.max >= c.seconds.p50);
  assert.ok(c.downtimeMs.p50 > 0 && c.downtimeMs.max >= c.downtimeMs.p50);
  assert.ok(c.bytes >= surge.migrations * 2 ** 30, `${c.bytes} bytes for ${surge.migrations} migrations of guests of 1 GiB or more`);
  assert.equal(calm.migrationCost, { seconds: { p50: 0, max: 0 }, downtimeMs: { p50: 0, max: 0 }, bytes: 0 });
});

test('migrations land when the model says they end: the longer an interval, the fewer intervals the slowest hotspot takes; at 1 s intervals some are not resolved within the day', () => {
  const minute = simulate({ ...SMALL, intervalSeconds: 60 });
  const second = simulate({ ...SMALL, intervalSeconds: 1 });
  // Same cluster, same plans at the start: only when the moves land differs.
  assert.is(minute.hotspots, surge.hotspots);
  assert.ok(minute.resolveIntervals.max < surge.resolveIntervals.max, `60 s: worst ${minute.resolveIntervals.max} intervals; 10 s: ${surge.resolveIntervals.max}`);
  assert.ok(second.resolveIntervals.hosts < surge.resolveIntervals.hosts, `1 s: ${second.resolveIntervals.hosts} hosts resolved; 10 s: ${surge.resolveIntervals.hosts}`);
  assert.ok(second.unresolved > 0);
  assert.is(second.pingPong, 0);
});

test('a cluster that cannot hold its guests is refused', () => {
  assert.throws(() => simulate({ ...SMALL, hosts: 2, guests: 600 }), /cannot hold/);
});

test.run();
