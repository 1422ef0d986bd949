// The dirtying curve (migration/dirtying.ts): pages dirtied t ms after a sync, sampled in the passes;
// asked for a time inside the longest pass it interpolates, past it it goes on at that pass's rate over
// its second half; a throttle stretches time by the vCPU's share.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DirtyingCurve, SAMPLE_SPACING_MS } from '../../src/migration/dirtying.js';

/** A hot set of 4000 pages written at 200 pages/ms: saturated after 20 ms, sampled every 2 ms over 100 ms. */
function hotSetPass(c: DirtyingCurve, throttle = 0): void {
  c.passStarting(throttle);
  for (let t = 2; t < 100; t += 2) c.sample(t, Math.min(4000, 200 * t));
  c.passEnded(100, 4000);
}

test('no answer before a pass has ended', () => {
  const c = new DirtyingCurve();
  assert.is(c.pagesIn(10, 0), null);
  c.passStarting(0);
  c.sample(5, 100);
  assert.is(c.pagesIn(10, 0), null);
});

test('inside the pass: the samples, interpolated (a saturating hot set, not its average rate)', () => {
  const c = new DirtyingCurve();
  hotSetPass(c);
  assert.is(c.pagesIn(0, 0), 0);
  assert.is(c.pagesIn(10, 0), 2000, 'at a sample');
  assert.is(c.pagesIn(5, 0), 1000, 'between samples');
  assert.is(c.pagesIn(60, 0), 4000, 'saturated');
  // The rate over the whole pass (4000 pages / 100 ms = 40 pages/ms) would say 400 pages in 10 ms.
});

test('past the pass: its last point plus its rate over its second half', () => {
  const c = new DirtyingCurve();
  c.passStarting(0);
  for (let t = 10; t < 100; t += 10) c.sample(t, 30 * t);
  c.passEnded(100, 3000);
  // From t = 50 (1500 pages) to 100 (3000): 30 pages/ms.
  assert.is(c.pagesIn(150, 0), 4500);
  const saturated = new DirtyingCurve();
  hotSetPass(saturated);
  assert.is(saturated.pagesIn(500, 0), 4000, 'a saturated working set stays saturated');
});

test('a throttle stretches time by the vCPU share the curve was not measured at', () => {
  const c = new DirtyingCurve();
  hotSetPass(c);
  // At 50 % the vCPU runs half the time: 10 ms of wall time are 5 ms of the curve's.
  assert.is(c.pagesIn(10, 50), 1000);
  const measuredThrottled = new DirtyingCurve();
  hotSetPass(measuredThrottled, 50);
  assert.is(measuredThrottled.pagesIn(5, 0), 2000, 'unthrottled, the same pages come twice as fast');
});

test('the longest pass answers; samples closer than the spacing, or going back, are dropped', () => {
  const c = new DirtyingCurve();
  hotSetPass(c);
  c.passStarting(0);
  c.sample(1, 500);
  c.passEnded(3, 900);
  assert.is(c.pagesIn(10, 0), 2000, 'a 3 ms pass does not replace a 100 ms one');
  const d = new DirtyingCurve();
  d.passStarting(0);
  d.sample(4, 400);
  d.sample(4 + SAMPLE_SPACING_MS / 2, 10_000);
  d.sample(6, 300);
  d.passEnded(8, 800);
  // Kept: (0, 0), (4, 400), (6, 400: the count that went back, held), (8, 800); not the 10 000.
  assert.is(d.pagesIn(5, 0), 400, 'the sample too close was dropped, the one going back held');
  assert.is(d.pagesIn(7, 0), 600);
});

test.run();
