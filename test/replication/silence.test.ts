// The replication watchdogs' silence (replication/silence.ts): over the limit is judged on a tick that
// came on time; a late tick (this thread was busy, the peer's frames still unread) waits for the next,
// unless the silence is three times the limit.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SilenceClock } from '../../src/replication/silence.js';

/** A clock heard from at 0, with a tick at 0. */
function clock(): SilenceClock {
  const c = new SilenceClock(50, 300);
  c.heard(0);
  assert.is(c.overLimit(0), null);
  return c;
}

test('ticks on time: silence is judged once it passes the limit, and hearing resets it', () => {
  const c = clock();
  for (let t = 50; t <= 300; t += 50) assert.is(c.overLimit(t), null, `at ${t} ms`);
  assert.is(c.overLimit(350), 350);
  c.heard(360);
  assert.is(c.overLimit(400), null);
});

test('a tick that comes late does not judge: what the peer sent may wait unread behind it', () => {
  const c = clock();
  assert.is(c.overLimit(50), null);
  // This thread was busy from 50 to 400 ms: the tick then is late.
  assert.is(c.overLimit(400), null);
  // The reads ran before the next tick: the peer was heard.
  c.heard(401);
  assert.is(c.overLimit(450), null);
  // Had it not been: the next tick, on time, judges.
  const d = clock();
  d.overLimit(50);
  d.overLimit(400);
  assert.is(d.overLimit(450), 450);
});

test('a thread late tick after tick is judged once the silence is three times the limit', () => {
  const c = clock();
  assert.is(c.overLimit(500), null);
  assert.is(c.overLimit(800), null);
  assert.is(c.overLimit(1000), 1000);
});

test.run();
