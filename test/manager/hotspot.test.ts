// HotspotDetector (hotspot.ts): a resource is hot in an interval when over its threshold; a hotspot in it
// when hot in at least k of the last n intervals (counted per resource), hot now and predicted over too.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_HOTSPOT_POLICY, HotspotDetector, type HotspotPolicy } from '../../src/manager/hotspot.js';
import type { Vector } from '../../src/manager/resources.js';

const v = (cpu: number, net: number, mem: number): Vector => ({ cpu, net, mem });
const POLICY: HotspotPolicy = { threshold: v(0.75, 0.75, 0.85), k: 3, n: 5 };
const COOL = v(0.3, 0.3, 0.3);
const HOT_CPU = v(0.9, 0.3, 0.3);
const PRED_HOT_CPU = v(0.9, 0.3, 0.3);
const PRED_COOL = v(0.5, 0.5, 0.5);

test('the default policy is Sandpiper’s 3 of 5', () => {
  assert.is(DEFAULT_HOTSPOT_POLICY.k, 3);
  assert.is(DEFAULT_HOTSPOT_POLICY.n, 5);
  assert.not.throws(() => new HotspotDetector());
});

test('a single spike, even predicted to stay, is not a hotspot', () => {
  const d = new HotspotDetector(POLICY);
  assert.is(d.observe('h', COOL, COOL), null);
  assert.is(d.observe('h', COOL, COOL), null);
  assert.is(d.observe('h', HOT_CPU, PRED_HOT_CPU), null);
  assert.is(d.observe('h', COOL, PRED_COOL), null);
  assert.is(d.observe('h', COOL, PRED_COOL), null);
});

test('intervals are counted per resource: a sustained network load does not make one CPU spike a CPU hotspot', () => {
  const d = new HotspotDetector(POLICY);
  const netHot = v(0.3, 0.9, 0.3);
  assert.is(d.observe('h', netHot, v(0.3, 0.5, 0.3)), null);
  assert.is(d.observe('h', netHot, v(0.3, 0.5, 0.3)), null);
  assert.is(d.observe('h', v(0.9, 0.9, 0.3), v(0.9, 0.5, 0.3)), null, 'cpu hot once; net 3 of 3 but predicted under');
  const spot = d.observe('h', v(0.9, 0.9, 0.3), v(0.9, 0.9, 0.3));
  assert.ok(spot !== null);
  assert.equal(spot!.resources, ['net'], 'net is sustained (4 of 4); cpu only 2 of 4');
  assert.is(spot!.hotIntervals, 4);
});

test('k and n must be whole numbers', () => {
  assert.throws(() => new HotspotDetector({ ...POLICY, k: 2.5 }), /whole numbers/);
  assert.throws(() => new HotspotDetector({ ...POLICY, n: 5.5 }), /whole numbers/);
});

test('hot in k of the last n and predicted over → a hotspot naming exactly the resources over now and predicted over', () => {
  const d = new HotspotDetector(POLICY);
  const now = v(0.9, 0.8, 0.9); // all three over
  const predicted = v(0.8, 0.5, 0.95); // cpu and mem predicted over, net not
  assert.is(d.observe('h', now, predicted), null);
  assert.is(d.observe('h', COOL, COOL), null); // not hot: 1 of 2
  assert.is(d.observe('h', now, predicted), null); // 2 of 3
  const spot = d.observe('h', now, predicted); // 3 of 4
  assert.ok(spot !== null, 'expected a hotspot at 3 of 4');
  assert.equal(spot!.resources, ['cpu', 'mem']);
  assert.is(spot!.host, 'h');
  assert.is(spot!.hotIntervals, 3);
  assert.equal(spot!.utilisation, now);
  assert.equal(spot!.predicted, predicted);
});

test('a resource predicted over but not over now is not named', () => {
  const d = new HotspotDetector(POLICY);
  for (let i = 0; i < 2; i++) d.observe('h', HOT_CPU, PRED_HOT_CPU);
  const spot = d.observe('h', HOT_CPU, v(0.9, 0.9, 0.9));
  assert.ok(spot !== null);
  assert.equal(spot!.resources, ['cpu']);
});

test('sustained but predicted under the threshold → no hotspot', () => {
  const d = new HotspotDetector(POLICY);
  for (let i = 0; i < 5; i++) assert.is(d.observe('h', HOT_CPU, PRED_COOL), null, `interval ${i}`);
  // At the threshold is not over it.
  assert.is(d.observe('h', HOT_CPU, v(0.75, 0, 0)), null);
  // Predicted over in another resource than the one over now: still none.
  assert.is(d.observe('h', HOT_CPU, v(0.5, 0.9, 0.9)), null);
  // And once predicted over, it is one.
  assert.ok(d.observe('h', HOT_CPU, PRED_HOT_CPU) !== null);
});

test('sustained and predicted, but not over in this interval → no hotspot', () => {
  const d = new HotspotDetector(POLICY);
  for (let i = 0; i < 4; i++) d.observe('h', HOT_CPU, PRED_HOT_CPU);
  assert.is(d.observe('h', COOL, PRED_HOT_CPU), null);
});

test('history slides: a hot interval older than the last n no longer counts', () => {
  const d = new HotspotDetector(POLICY);
  assert.is(d.observe('h', HOT_CPU, PRED_HOT_CPU), null); // 1 (falls out later)
  for (let i = 0; i < 4; i++) assert.is(d.observe('h', COOL, PRED_COOL), null);
  // Window now [hot, cool, cool, cool, cool]; the next observation pushes the first hot one out.
  assert.is(d.observe('h', HOT_CPU, PRED_HOT_CPU), null); // window [c, c, c, c, h]: 1
  assert.is(d.observe('h', HOT_CPU, PRED_HOT_CPU), null); // [c, c, c, h, h]: 2 (3 in all, but not in the last 5)
  const spot = d.observe('h', HOT_CPU, PRED_HOT_CPU); // [c, c, h, h, h]: 3
  assert.ok(spot !== null);
  assert.is(spot!.hotIntervals, 3);
});

test('hotIntervals never exceeds n', () => {
  const d = new HotspotDetector(POLICY);
  let last = null;
  for (let i = 0; i < 12; i++) last = d.observe('h', HOT_CPU, PRED_HOT_CPU);
  assert.is(last!.hotIntervals, 5);
});

test('hosts are tracked separately', () => {
  const d = new HotspotDetector(POLICY);
  d.observe('a', HOT_CPU, PRED_HOT_CPU);
  d.observe('a', HOT_CPU, PRED_HOT_CPU);
  assert.is(d.observe('b', HOT_CPU, PRED_HOT_CPU), null);
  assert.ok(d.observe('a', HOT_CPU, PRED_HOT_CPU) !== null);
  assert.is(d.observe('b', HOT_CPU, PRED_HOT_CPU), null);
});

test('reset() clears a host’s history: the next hotspot must be sustained again', () => {
  const d = new HotspotDetector(POLICY);
  d.observe('h', HOT_CPU, PRED_HOT_CPU);
  d.observe('h', HOT_CPU, PRED_HOT_CPU);
  d.observe('other', HOT_CPU, PRED_HOT_CPU);
  d.observe('other', HOT_CPU, PRED_HOT_CPU);
  d.reset('h');
  assert.is(d.observe('h', HOT_CPU, PRED_HOT_CPU), null);
  assert.is(d.observe('h', HOT_CPU, PRED_HOT_CPU), null);
  assert.ok(d.observe('h', HOT_CPU, PRED_HOT_CPU) !== null);
  // Only h was forgotten.
  assert.ok(d.observe('other', HOT_CPU, PRED_HOT_CPU) !== null);
  // Resetting an unknown host is harmless.
  assert.not.throws(() => d.reset('nobody'));
});

test('k = 1 of n = 1: any hot interval predicted over is a hotspot', () => {
  const d = new HotspotDetector({ threshold: POLICY.threshold, k: 1, n: 1 });
  assert.ok(d.observe('h', HOT_CPU, PRED_HOT_CPU) !== null);
  assert.is(d.observe('h', COOL, PRED_HOT_CPU), null);
});

test('k = n: needs every one of the last n intervals', () => {
  const d = new HotspotDetector({ threshold: POLICY.threshold, k: 3, n: 3 });
  d.observe('h', HOT_CPU, PRED_HOT_CPU);
  d.observe('h', COOL, PRED_COOL);
  d.observe('h', HOT_CPU, PRED_HOT_CPU);
  assert.is(d.observe('h', HOT_CPU, PRED_HOT_CPU), null); // [c, h, h]
  assert.ok(d.observe('h', HOT_CPU, PRED_HOT_CPU) !== null); // [h, h, h]
});

test('invalid k / n is refused', () => {
  const t = POLICY.threshold;
  assert.throws(() => new HotspotDetector({ threshold: t, k: 0, n: 5 }), /hotspot rule/);
  assert.throws(() => new HotspotDetector({ threshold: t, k: -1, n: 5 }), /hotspot rule/);
  assert.throws(() => new HotspotDetector({ threshold: t, k: 6, n: 5 }), /hotspot rule/);
  assert.throws(() => new HotspotDetector({ threshold: t, k: 1, n: 0 }), /hotspot rule/);
  assert.throws(() => new HotspotDetector({ threshold: t, k: NaN, n: 5 }), /hotspot rule/);
  assert.not.throws(() => new HotspotDetector({ threshold: t, k: 5, n: 5 }));
});

test.run();
