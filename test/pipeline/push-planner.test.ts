// The push planner on its own: windows grow ×4 from minPages to maxPages, a fault pivots the windows
// at most once per MIN_WINDOWS_PER_PIVOT windows, and a sweep without faults covers every page.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MIN_WINDOWS_PER_PIVOT, PushPlanner, SCATTERED_PIVOTS } from '../../src/pipeline/push-planner.js';

test('windows grow ×4 from minPages up to maxPages, and nextWindow reports the size it may hold', () => {
  const p = new PushPlanner(1_000_000, 8, 2048);
  const sizes = Array.from({ length: 7 }, () => {
    const w = p.nextWindow();
    assert.is(w.to - w.from, w.pages, `window [${w.from}, ${w.to}) is as long as its pages`);
    return w.pages;
  });
  assert.equal(sizes, [8, 32, 128, 512, 2048, 2048, 2048]);
});

test('a fault after every window moves the pivot only once per MIN_WINDOWS_PER_PIVOT windows', () => {
  const p = new PushPlanner(10_000_000, 16, 1024);
  const pivots: Array<[number, number]> = [];
  for (let i = 0; i < 4 * MIN_WINDOWS_PER_PIVOT; i++) {
    const fault = 100_000 * (i + 1);
    p.onFault(fault);
    const w = p.nextWindow();
    if (w.from === fault + 1) pivots.push([i, w.pages]);
  }
  // Each fault lands far from the last pivot: after SCATTERED_PIVOTS of those, pivots start large.
  assert.is(SCATTERED_PIVOTS, 2);
  assert.equal(pivots, [[0, 16], [4, 16], [8, 1024], [12, 1024]]);
});

test('a fault near the previous pivot (within a window of what was pushed around it) starts small again', () => {
  const p = new PushPlanner(10_000_000, 16, 1024);
  const pivotAt = (fault: number): number => {
    p.onFault(fault);
    const w = p.nextWindow();
    assert.is(w.from, fault + 1, `pivot moved to ${fault}`);
    for (let i = 1; i < MIN_WINDOWS_PER_PIVOT; i++) p.nextWindow();
    return w.pages;
  };
  assert.equal([pivotAt(1_000_000), pivotAt(3_000_000), pivotAt(5_000_000)], [16, 16, 1024], 'scattered');
  // Around 5 000 000 four windows of 1024 pushed [4 997 952, 5 002 049); one window beyond is near.
  assert.is(pivotAt(5_002_500), 16, 'near: locality again');
  // Around 5 002 500: [5 001 412, 5 002 773) with windows now 1024 long.
  assert.is(pivotAt(5_003_000), 16, 'still near');
});

test('without faults the sweep covers every page once per round and then wraps', () => {
  const pageCount = 5000;
  const p = new PushPlanner(pageCount, 16, 1024);
  const seen = new Uint8Array(pageCount);
  let w = p.nextWindow();
  assert.is(w.from, 0);
  let windows = 0;
  while (w.to < pageCount) {
    for (let i = w.from; i < w.to; i++) seen[i]++;
    const next = p.nextWindow();
    assert.is(next.from, w.to, 'windows are contiguous');
    w = next;
    windows++;
  }
  for (let i = w.from; i < w.to; i++) seen[i]++;
  assert.ok(seen.every((n) => n === 1), 'every page in exactly one window of the round');
  assert.is(p.nextWindow().from, 0, 'the next round starts at page 0');
  assert.ok(windows < 20);
});

test('a pivot near the end of the region grows in the direction that still has pages', () => {
  const p = new PushPlanner(100, 16, 1024);
  p.onFault(98);
  assert.equal(p.next(), { from: 99, to: 100 });
  assert.equal(p.next(), { from: 34, to: 98 });
  assert.equal(p.next(), { from: 0, to: 34 });
  assert.equal(p.next(), { from: 0, to: 100 }, 'then it sweeps again from the start');
});

test.run();
