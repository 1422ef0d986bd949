// RateLimiter (src/transport/rate-limit.ts): the token arithmetic, driven by a fake clock so that every
// claim is exact. The bucket starts full with BURST_MS worth of bytes; a take within the tokens goes
// at once (null); a take beyond them waits exactly the debt at bytesPerSecond; idle time refills the
// bucket only up to the burst; concurrent takes queue behind each other's debt. Over any sequence of
// takes with the clock advanced by each wait, the elapsed time is (taken − burst) / rate: the cap holds.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BURST_MS, RateLimiter, systemClock, type Clock } from '../../src/transport/rate-limit.js';
import { seeded } from '../_support/seeded.js';

/** A clock that moves only when told: `sleep` records the wait and, with `autoAdvance`, moves time by it. */
class FakeClock implements Clock {
  t = 1000;
  readonly sleeps: number[] = [];
  constructor(private readonly autoAdvance: boolean) {}
  now(): number {
    return this.t;
  }
  sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    if (this.autoAdvance) this.t += ms;
    return Promise.resolve();
  }
}

const RATE = 1_000_000; // bytes per second: 1000 bytes per ms
const BURST = (RATE * BURST_MS) / 1000;

test('a full bucket holds BURST_MS worth of bytes: taking exactly that goes at once', () => {
  const clock = new FakeClock(false);
  const limiter = new RateLimiter(RATE, clock);
  assert.is(limiter.take(BURST), null);
  assert.equal(clock.sleeps, []);
});

test('one byte past the burst waits exactly one byte time', () => {
  const clock = new FakeClock(false);
  const limiter = new RateLimiter(RATE, clock);
  assert.is(limiter.take(BURST), null);
  assert.instance(limiter.take(1), Promise);
  assert.equal(clock.sleeps, [1000 / RATE]);
});

test('a take larger than the burst is allowed and waits out its whole debt', () => {
  const clock = new FakeClock(false);
  const limiter = new RateLimiter(RATE, clock);
  assert.instance(limiter.take(BURST + 100_000), Promise);
  assert.equal(clock.sleeps, [100], '100 000 bytes past the burst at 1 MB/s is 100 ms');
});

test('take(0) on a full bucket goes at once and takes nothing', () => {
  const clock = new FakeClock(false);
  const limiter = new RateLimiter(RATE, clock);
  assert.is(limiter.take(0), null);
  assert.is(limiter.take(BURST), null, 'the whole burst is still there');
  assert.equal(clock.sleeps, []);
});

test('take(0) while in debt waits for the debt to be paid', () => {
  const clock = new FakeClock(false);
  const limiter = new RateLimiter(RATE, clock);
  void limiter.take(BURST + 5000);
  clock.t += 2; // 2000 bytes of the 5000 repaid
  void limiter.take(0);
  assert.equal(clock.sleeps, [5, 3]);
});

test('tokens accrue with elapsed time at bytesPerSecond', () => {
  const clock = new FakeClock(false);
  const limiter = new RateLimiter(RATE, clock);
  assert.is(limiter.take(BURST), null);
  clock.t += 7; // 7000 bytes accrue
  assert.is(limiter.take(7000), null);
  assert.instance(limiter.take(1), Promise);
  assert.equal(clock.sleeps, [0.001]);
});

test('idle time refills the bucket only up to the burst, never beyond', () => {
  const clock = new FakeClock(false);
  const limiter = new RateLimiter(RATE, clock);
  clock.t += 3_600_000; // an hour idle
  assert.instance(limiter.take(BURST + RATE), Promise);
  assert.equal(clock.sleeps, [1000], 'a second of bytes past the burst still waits a second');
});

test('concurrent takes queue behind each other: the second waits for both debts', () => {
  const clock = new FakeClock(false);
  const limiter = new RateLimiter(RATE, clock);
  assert.is(limiter.take(BURST), null);
  void limiter.take(4000);
  void limiter.take(6000);
  assert.equal(clock.sleeps, [4, 10]);
});

test('over any sequence of takes the elapsed time is (taken − burst) / rate: the average never exceeds the cap', () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const rng = seeded(seed);
    const rate = 1024 * (1 + rng.below(100_000));
    const clock = new FakeClock(true);
    const limiter = new RateLimiter(rate, clock);
    const t0 = clock.t;
    let taken = 0;
    for (let i = 0; i < 500; i++) {
      const n = rng.below(4) === 0 ? 0 : 1 + rng.below(rate / 10);
      taken += n;
      void limiter.take(n);
    }
    const burst = (rate * BURST_MS) / 1000;
    const expectedMs = (Math.max(0, taken - burst) * 1000) / rate;
    const elapsed = clock.t - t0;
    assert.ok(Math.abs(elapsed - expectedMs) <= 1e-6 * Math.max(1, expectedMs), `seed ${seed}: ${elapsed} ms elapsed, expected ${expectedMs} ms for ${taken} bytes at ${rate} B/s`);
  }
});

test('the burst scales with the rate', () => {
  for (const rate of [1024, 50 * 2 ** 20, 3 * 10 ** 9]) {
    const clock = new FakeClock(false);
    const limiter = new RateLimiter(rate, clock);
    const burst = (rate * BURST_MS) / 1000;
    assert.is(limiter.take(burst), null, `${rate} B/s: the burst goes at once`);
    assert.instance(limiter.take(rate / 1000), Promise, `${rate} B/s: a millisecond more waits`);
    assert.ok(Math.abs(clock.sleeps[0] - 1) < 1e-9, `${rate} B/s: waits ${clock.sleeps[0]} ms`);
  }
});

test('the default clock is the system clock and its waits resolve', async () => {
  const limiter = new RateLimiter(1024);
  assert.is(limiter.take((1024 * BURST_MS) / 1000), null);
  const wait = limiter.take(1);
  assert.instance(wait, Promise);
  assert.is(await wait, undefined);
  assert.ok(systemClock.now() > 0);
});

test.run();
