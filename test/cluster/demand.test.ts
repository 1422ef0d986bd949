// A guest's demand traces (cluster/demand.ts): valueAt reads a constant or [ms, value] points, linear
// between points, the first value before them and the last after them; demandAt adds seeded jitter of at
// most ±noise, the same for the same seed and tenth of a second, and never goes below 0; lastChangeMs is
// the last point's time over all three resources.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { demandAt, lastChangeMs, valueAt, type DemandTraces, type Trace } from '../../src/cluster/demand.js';

const close = (actual: number, expected: number, what: string, eps = 1e-9): void =>
  assert.ok(Math.abs(actual - expected) <= eps * Math.max(1, Math.abs(expected)), `${what}: ${actual} ≠ ${expected}`);

const RAMP: Trace = [[1000, 2], [3000, 6], [5000, 4]];

// ---- valueAt ------------------------------------------------------------------------------------

test('valueAt: a constant is the same at every time', () => {
  for (const t of [-5, 0, 1234.5, 1e9]) assert.is(valueAt(3.5, t), 3.5);
});

test('valueAt: before (and at) the first point, the first value', () => {
  assert.is(valueAt(RAMP, -100), 2);
  assert.is(valueAt(RAMP, 0), 2);
  assert.is(valueAt(RAMP, 1000), 2);
});

test('valueAt: linear between neighbouring points', () => {
  close(valueAt(RAMP, 2000), 4, 'halfway up 2 → 6'); // 2 + (6−2)·½
  close(valueAt(RAMP, 1500), 3, 'a quarter of the way up'); // 2 + 4·¼
  close(valueAt(RAMP, 3000), 6, 'on the middle point');
  close(valueAt(RAMP, 4500), 4.5, 'three quarters down 6 → 4'); // 6 − 2·¾
});

test('valueAt: after the last point the last value is held', () => {
  assert.is(valueAt(RAMP, 5000), 4);
  assert.is(valueAt(RAMP, 5001), 4);
  assert.is(valueAt(RAMP, 1e9), 4);
});

test('valueAt: a step as two points at the same time — the old value before it, the new one from it on', () => {
  const step: Trace = [[0, 2], [4000, 2], [4000, 7], [6000, 9]];
  assert.is(valueAt(step, 3999), 2);
  assert.is(valueAt(step, 4000), 7, 'at the step time the new value holds');
  close(valueAt(step, 5000), 8, 'then linear 7 → 9 from the step');
  const lastStep: Trace = [[0, 2], [4000, 2], [4000, 7]];
  assert.is(valueAt(lastStep, 3999.9), 2);
  assert.is(valueAt(lastStep, 4000), 7);
  assert.is(valueAt(lastStep, 10_000), 7);
});

test('valueAt: an empty list of points reads 0', () => {
  assert.is(valueAt([], 100), 0);
});

// ---- demandAt -----------------------------------------------------------------------------------

const TRACES = (noise: number): DemandTraces => ({ cpu: RAMP, net: 50e6, mem: [[0, 2 ** 30], [10_000, 3 * 2 ** 30]], noise });

test('demandAt: with noise 0 it is exactly the traces’ values', () => {
  for (const t of [0, 1500, 4500, 7000]) {
    const d = TRACES(0);
    assert.equal(demandAt(d, t, 42), { cpu: valueAt(d.cpu, t), net: valueAt(d.net, t), mem: valueAt(d.mem, t) }, `at ${t} ms`);
  }
});

test('demandAt: the jitter is the same for the same seed and tenth of a second', () => {
  const d: DemandTraces = { cpu: 4, net: 1e6, mem: 1e9, noise: 0.1 };
  // 1200 and 1299 ms are in the same 100 ms slot; with constant traces the values must be identical.
  assert.equal(demandAt(d, 1200, 7), demandAt(d, 1299, 7));
  assert.equal(demandAt(d, 1234, 7), demandAt(d, 1234, 7));
});

test('demandAt: the jitter changes with the seed and from slot to slot', () => {
  const d: DemandTraces = { cpu: 4, net: 1e6, mem: 1e9, noise: 0.1 };
  let seedsDiffer = 0;
  for (let slot = 0; slot < 50; slot++) {
    const a = demandAt(d, slot * 100, 1);
    const b = demandAt(d, slot * 100, 2);
    if (a.cpu !== b.cpu || a.net !== b.net || a.mem !== b.mem) seedsDiffer++;
  }
  assert.is(seedsDiffer, 50, 'two seeds give different jitter in every slot');
  const cpus = new Set(Array.from({ length: 50 }, (_, slot) => demandAt(d, slot * 100, 1).cpu));
  assert.ok(cpus.size > 40, `one seed, 50 slots: only ${cpus.size} distinct values`);
});

test('demandAt: stays within ±noise of the trace value, on both sides of it', () => {
  const noise = 0.05;
  const d: DemandTraces = { cpu: 8, net: 100e6, mem: 4 * 2 ** 30, noise };
  let below = 0;
  let above = 0;
  for (let slot = 0; slot < 2000; slot++) {
    const x = demandAt(d, slot * 100, 12345);
    for (const [got, base] of [[x.cpu, 8], [x.net, 100e6], [x.mem, 4 * 2 ** 30]] as const) {
      assert.ok(got >= base * (1 - noise) && got <= base * (1 + noise), `slot ${slot}: ${got} outside ${base} ± 5 %`);
      if (got < base) below++;
      if (got > base) above++;
    }
  }
  // Centred jitter: over 6000 draws both sides occur, roughly evenly.
  assert.ok(below > 2000 && above > 2000, `below ${below}, above ${above}`);
});

test('demandAt: never negative, even for a negative trace value', () => {
  for (const noise of [0, 0.2]) {
    const d: DemandTraces = { cpu: -1, net: [[0, -5], [1000, 5]], mem: 0, noise };
    for (let t = 0; t <= 1000; t += 100) {
      const x = demandAt(d, t, 3);
      assert.ok(x.cpu >= 0 && x.net >= 0 && x.mem >= 0, `noise ${noise}, ${t} ms: ${JSON.stringify(x)}`);
    }
    assert.is(demandAt(d, 0, 3).cpu, 0);
  }
});

// ---- lastChangeMs -------------------------------------------------------------------------------

test('lastChangeMs: the latest last point over the three traces; constants count as 0', () => {
  assert.is(lastChangeMs({ cpu: 1, net: 2, mem: 3, noise: 0 }), 0);
  assert.is(lastChangeMs({ cpu: RAMP, net: 2, mem: 3, noise: 0 }), 5000);
  assert.is(lastChangeMs({ cpu: RAMP, net: [[0, 1], [8000, 2]], mem: [[100, 1]], noise: 0.1 }), 8000);
  assert.is(lastChangeMs({ cpu: [], net: 1, mem: [[0, 1], [2500, 1]], noise: 0 }), 2500);
});

test.run();
