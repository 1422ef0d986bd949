// The engine's migration model (migration-cost.ts): an idle guest goes in one pass and a stop-and-copy
// of nothing; a dirtying guest takes more passes, more bytes and more downtime; the link caps the rate;
// post-copy moves every byte once with the post-copy switch's downtime; hybrid sends one pass more.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ENGINE_MODEL, migrationCost } from '../../src/manager/migration-cost.js';

const GiB = 2 ** 30;
const FAST = 10e9;

test('an idle guest: one pass at the engine\'s rate, then a switch of nothing', () => {
  const c = migrationCost(GiB, 0, 'live', FAST);
  assert.is(c.bytes, GiB);
  assert.is(c.passes, 2);
  assert.is(c.downtimeMs, ENGINE_MODEL.liveSwitchMs);
  assert.ok(Math.abs(c.seconds - ((ENGINE_MODEL.setupMs + ENGINE_MODEL.liveSwitchMs) / 1000 + GiB / ENGINE_MODEL.passBytesPerSec)) < 1e-9);
});

test('a dirtying guest: each pass sends the share ρ of the last, until what is left fits the downtime limit', () => {
  const rate = ENGINE_MODEL.passBytesPerSec;
  const c = migrationCost(GiB, 0.5 * rate, 'live', FAST);
  // 1 + ½ + ¼ + … until GiB·½^n ≤ rate × 0.3 s (528 MB): n = 2, left GiB/4, sent GiB + GiB/2 + GiB/4.
  assert.is(c.passes, 3);
  assert.is(c.bytes, GiB * 1.75);
  assert.ok(Math.abs(c.downtimeMs - (ENGINE_MODEL.liveSwitchMs + (GiB / 4 / rate) * 1000)) < 1e-9);
  assert.ok(c.downtimeMs > migrationCost(GiB, 0, 'live', FAST).downtimeMs);
});

test('a guest dirtying as fast as the link: live stops at the pass cap; post-copy moves each byte once', () => {
  const rate = ENGINE_MODEL.passBytesPerSec;
  const live = migrationCost(GiB, rate, 'live', FAST);
  assert.is(live.passes, ENGINE_MODEL.maxPasses + 1);
  assert.is(live.bytes, GiB * (ENGINE_MODEL.maxPasses + 1));
  const post = migrationCost(GiB, rate, 'postcopy', FAST);
  assert.is(post.bytes, GiB);
  assert.is(post.downtimeMs, ENGINE_MODEL.postcopySwitchMs);
  const hybrid = migrationCost(GiB, 0.5 * rate, 'hybrid', FAST);
  assert.is(hybrid.bytes, GiB * 1.5);
  assert.is(hybrid.passes, 2);
});

test('a slower link share caps the rate: time grows as the share shrinks', () => {
  const full = migrationCost(GiB, 0, 'live', FAST);
  const shared = migrationCost(GiB, 0, 'live', 0.25e9);
  assert.ok(Math.abs(shared.seconds - full.seconds - (GiB / 0.25e9 - GiB / ENGINE_MODEL.passBytesPerSec)) < 1e-9);
});

test.run();
