// The manager's measuring primitives: Sandpiper's volume and over() (resources.ts), and the usage
// profile with its nearest-rank percentiles and AR(1) predictor (profile.ts).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RESOURCES, over, utilisation, volume, type Vector } from '../../src/manager/resources.js';
import { UsageProfile, ar1 } from '../../src/manager/profile.js';

const v = (cpu: number, net: number, mem: number): Vector => ({ cpu, net, mem });
const close = (actual: number, expected: number, what: string, eps = 1e-9): void =>
  assert.ok(Math.abs(actual - expected) <= eps * Math.max(1, Math.abs(expected)), `${what}: ${actual} ≠ ${expected}`);

// ---- volume -------------------------------------------------------------------------------------

test('volume: exactly 1 with no load', () => {
  assert.is(volume(v(0, 0, 0)), 1);
});

test('volume: 1/((1−cpu)(1−net)(1−mem)) on a hand-computed load', () => {
  close(volume(v(0.5, 0.5, 0.5)), 8, 'volume(0.5, 0.5, 0.5)');
  close(volume(v(0.5, 0, 0)), 2, 'volume(0.5, 0, 0)');
  close(volume(v(0.2, 0.5, 0.75)), 1 / (0.8 * 0.5 * 0.25), 'volume(0.2, 0.5, 0.75)');
});

test('volume: strictly increasing in each resource separately, below saturation', () => {
  const base = v(0.3, 0.2, 0.4);
  for (const r of RESOURCES) {
    let prev = -Infinity;
    for (let x = 0; x <= 0.98; x += 0.07) {
      const vol = volume({ ...base, [r]: x });
      assert.ok(vol > prev, `volume not increasing in ${r} at ${x}: ${vol} ≤ ${prev}`);
      prev = vol;
    }
  }
});

test('volume: non-decreasing in each resource all the way past 1', () => {
  for (const r of RESOURCES) {
    let prev = -Infinity;
    for (let x = 0; x <= 3; x += 0.01) {
      const vol = volume({ ...v(0.1, 0.1, 0.1), [r]: x });
      assert.ok(vol >= prev, `volume decreased in ${r} at ${x}`);
      prev = vol;
    }
  }
});

test('volume: saturates, finite, at utilisation ≥ 1 (counted as 99 %)', () => {
  for (const x of [0.99, 1, 1.5, 10, 1e9]) {
    const vol = volume(v(x, 0, 0));
    assert.ok(Number.isFinite(vol), `volume(${x}, 0, 0) = ${vol}`);
    close(vol, 100, `volume(${x}, 0, 0)`);
  }
  close(volume(v(1, 1, 1)), 1e6, 'volume(1, 1, 1)', 1e-6);
  assert.ok(Number.isFinite(volume(v(Infinity, 2, 5))), 'infinite utilisation still gives a finite volume');
  // Saturated is the largest a single resource can make it.
  assert.ok(volume(v(0.98, 0, 0)) < volume(v(1, 0, 0)));
});

test('volume: negative utilisation counts as zero', () => {
  assert.is(volume(v(-0.5, -1, 0)), 1);
});

test('utilisation: demand over capacity per resource', () => {
  assert.equal(utilisation(v(8, 50, 30), v(32, 100, 120)), v(0.25, 0.5, 0.25));
});

// ---- over ---------------------------------------------------------------------------------------

test('over: names exactly the resources strictly above their thresholds, in RESOURCES order', () => {
  const t = v(0.75, 0.75, 0.85);
  assert.equal(over(v(0, 0, 0), t), []);
  assert.equal(over(v(0.76, 0.1, 0.1), t), ['cpu']);
  assert.equal(over(v(0.1, 0.8, 0.1), t), ['net']);
  assert.equal(over(v(0.1, 0.1, 0.86), t), ['mem']);
  assert.equal(over(v(0.9, 0.1, 0.9), t), ['cpu', 'mem']);
  assert.equal(over(v(0.9, 0.9, 0.9), t), ['cpu', 'net', 'mem']);
  // At the threshold is not over it; each resource has its own threshold.
  assert.equal(over(v(0.75, 0.75, 0.85), t), []);
  assert.equal(over(v(0.8, 0.8, 0.8), t), ['cpu', 'net']);
});

// ---- UsageProfile -------------------------------------------------------------------------------

test('UsageProfile: a window of fewer than 2 samples, or not an integer, is refused', () => {
  for (const w of [0, 1, -3, 2.5, NaN]) assert.throws(() => new UsageProfile(w), /window/, `window ${w}`);
  assert.not.throws(() => new UsageProfile(2));
});

test('UsageProfile: zeros before any sample', () => {
  const p = new UsageProfile(4);
  assert.is(p.length, 0);
  assert.equal(p.last, v(0, 0, 0));
  assert.equal(p.percentile(95), v(0, 0, 0));
  assert.equal(p.predict(), v(0, 0, 0));
});

test('UsageProfile: the window keeps only the newest samples', () => {
  const p = new UsageProfile(3);
  for (let i = 1; i <= 7; i++) p.add(v(i, 10 * i, 100 * i));
  assert.is(p.length, 3);
  assert.equal(p.last, v(7, 70, 700));
  // The oldest sample kept is the 5th: samples 1..4 have fallen out.
  assert.equal(p.percentile(0), v(5, 50, 500));
  assert.equal(p.percentile(100), v(7, 70, 700));
  // A big old spike falls out of the window too.
  const q = new UsageProfile(2);
  q.add(v(1000, 0, 0));
  q.add(v(1, 0, 0));
  q.add(v(2, 0, 0));
  assert.is(q.percentile(100).cpu, 2);
});

test('UsageProfile: nearest-rank percentiles on known data, each resource separately', () => {
  const p = new UsageProfile(10);
  // Added out of order: the percentile sorts.
  for (const x of [7, 3, 10, 1, 5, 9, 2, 8, 4, 6]) p.add(v(x, 11 - x, x * 2));
  assert.is(p.percentile(0).cpu, 1);
  assert.is(p.percentile(10).cpu, 1);
  assert.is(p.percentile(11).cpu, 2);
  assert.is(p.percentile(50).cpu, 5);
  assert.is(p.percentile(51).cpu, 6);
  assert.is(p.percentile(90).cpu, 9);
  assert.is(p.percentile(95).cpu, 10);
  assert.is(p.percentile(100).cpu, 10);
  assert.equal(p.percentile(50), v(5, 5, 10));
  // Nearest rank on 4 samples: p25 → 1st, p26 → 2nd, p75 → 3rd, p76 → 4th.
  const q = new UsageProfile(8);
  for (const x of [40, 10, 30, 20]) q.add(v(x, 0, 0));
  assert.is(q.percentile(25).cpu, 10);
  assert.is(q.percentile(26).cpu, 20);
  assert.is(q.percentile(75).cpu, 30);
  assert.is(q.percentile(76).cpu, 40);
});

test('UsageProfile: predict is ar1 of each resource over the window', () => {
  const p = new UsageProfile(6);
  const cpu = [1, 2, 3, 4, 5, 6, 7, 8];
  const net = [5, 5, 5, 5, 5, 5, 5, 5];
  const mem = [1, 3, 1, 3, 1, 3, 1, 3];
  for (let i = 0; i < 8; i++) p.add(v(cpu[i], net[i], mem[i]));
  assert.equal(p.predict(), v(ar1(cpu.slice(-6)), ar1(net.slice(-6)), ar1(mem.slice(-6))));
  assert.is(p.predict().net, 5);
});

// ---- ar1 ----------------------------------------------------------------------------------------

test('ar1: empty → 0; fewer than 3 samples → the last value', () => {
  assert.is(ar1([]), 0);
  assert.is(ar1([4]), 4);
  assert.is(ar1([1, 9]), 9);
  assert.is(ar1([9, 1]), 1);
});

test('ar1: a constant series predicts the constant', () => {
  for (const c of [0, 3, 1e9]) assert.is(ar1([c, c, c, c, c]), c);
  assert.is(ar1([2.5, 2.5, 2.5]), 2.5);
});

test('ar1: a rising series predicts beyond the mean, on the side of the last value (hand-computed φ)', () => {
  const xs = [1, 2, 3, 4, 5, 6, 7, 8];
  // mean 4.5; Σd² = 42; Σ d_i d_{i−1} = 26.25; φ = 0.625; 4.5 + 0.625 × 3.5 = 6.6875.
  close(ar1(xs), 6.6875, 'ar1(1..8)');
  assert.ok(ar1(xs) > 4.5 && ar1(xs) < 8);
});

test('ar1: a falling series predicts below the mean, on the side of the last value', () => {
  const xs = [8, 7, 6, 5, 4, 3, 2, 1];
  close(ar1(xs), 4.5 - 0.625 * 3.5, 'ar1(8..1)');
  assert.ok(ar1(xs) < 4.5 && ar1(xs) > 1);
});

test('ar1: a step that stays up predicts above the mean', () => {
  const xs = [1, 1, 1, 1, 10, 10, 10, 10];
  const mean = 5.5;
  const p = ar1(xs);
  assert.ok(p > mean && p <= 10, `ar1 of a step = ${p}`);
});

test('ar1: an alternating series (negative autocorrelation, φ clamped to 0) predicts the mean', () => {
  assert.is(ar1([1, 3, 1, 3, 1, 3]), 2);
  assert.is(ar1([3, 1, 3, 1, 3, 1]), 2);
  close(ar1([0, 10, 0, 10, 0]), 4, 'ar1(0,10,0,10,0)');
});

test('ar1: never negative', () => {
  assert.is(ar1([-5, -5, -5]), 0);
  assert.is(ar1([-1, -2, -3, -4, -5]), 0);
  assert.is(ar1([3, 2, 1, 0, -1, -2]), 0);
  for (const xs of [[10, 5, 0], [100, 50, 10, 0, 0], [0, 0, 0], [5, 0, 5, 0, 0]]) {
    assert.ok(ar1(xs) >= 0, `ar1(${xs}) = ${ar1(xs)}`);
  }
});

test.run();
