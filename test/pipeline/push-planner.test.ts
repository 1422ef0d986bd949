// The push planner on its own: windows grow ×4 from minPages to maxPages, a fault pivots the windows
// at most once per MIN_WINDOWS_PER_PIVOT windows, and a sweep without faults covers every page.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MIN_WINDOWS_PER_PIVOT, PushPlanner } from '../../src/pipeline/push-planner.js';

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
  const pivots: number[] = [];
  for (let i = 0; i < 4 * MIN_WINDOWS_PER_PIVOT; i++) {
    const fault = 100_000 * (i + 1);
    p.onFault(fault);
    const w = p.nextWindow();
    if (w.from === fault + 1) {
      pivots.push(i);
      assert.is(w.pages, 16, 'a new pivot starts with the smallest window');
    }
  }
  assert.equal(pivots, [0, 4, 8, 12]);
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
