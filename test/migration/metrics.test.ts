// metrics: the bandwidth window convergence decides on. The claim is "bytes over the newest whole
// samples spanning ≥ 100 ms", so a short iteration cannot swing the estimate; checked on hand-made
// sequences and against a reference that keeps every sample.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BANDWIDTH_WINDOW_MS, BandwidthMeter, addCounts, emptyCounts } from '../../src/migration/metrics.js';
import { seeded } from '../_support/seeded.js';

function meterOf(samples: [bytes: number, ms: number][]): BandwidthMeter {
  const m = new BandwidthMeter();
  for (const [bytes, ms] of samples) m.add(bytes, ms);
  return m;
}

/** The definition, over the full list: newest samples until they span ≥ the window (or all). */
function referenceRate(samples: [number, number][]): number {
  let bytes = 0;
  let ms = 0;
  for (let i = samples.length - 1; i >= 0 && ms < BANDWIDTH_WINDOW_MS; i--) {
    if (samples[i][1] <= 0) continue;
    bytes += samples[i][0];
    ms += samples[i][1];
  }
  return ms > 0 ? (bytes * 1000) / ms : 0;
}

const near = (got: number, want: number, what: string): void =>
  assert.ok(Math.abs(got - want) <= Math.abs(want) * 1e-12, `${what}: expected ${want}, got ${got}`);

test('the window is 100 ms', () => {
  assert.is(BANDWIDTH_WINDOW_MS, 100);
});

test('rate is 0 before any sample', () => {
  assert.is(new BandwidthMeter().rate(), 0);
});

test('one sample shorter than the window is used alone (all there is)', () => {
  assert.is(meterOf([[1_000_000, 10]]).rate(), 100_000_000);
});

test('a newest sample spanning the whole window excludes every older one', () => {
  // 10 MB in 100 ms = 100 MB/s; the older 1 GB/s sample is outside the window.
  assert.is(meterOf([[100_000_000, 100], [10_000_000, 100]]).rate(), 100_000_000);
});

test('samples are taken whole until they span ≥ 100 ms, and not one more', () => {
  // Newest two span 120 ms (12 MB → 100 MB/s); the 1 B / 1 s sample before them is left out.
  assert.is(meterOf([[1, 1000], [6_000_000, 60], [6_000_000, 60]]).rate(), 100_000_000);
  // Three 40 ms samples are needed to reach 120 ms; the 4th (older, 0 bytes) is not included.
  assert.is(meterOf([[0, 40], [4_000_000, 40], [4_000_000, 40], [4_000_000, 40]]).rate(), 100_000_000);
});

test('a window reaching exactly 100 ms stops there', () => {
  // 60 + 40 = 100 ms: the 0-byte sample before them would halve the rate if it were included.
  assert.is(meterOf([[0, 100], [6_000_000, 60], [4_000_000, 40]]).rate(), 100_000_000);
});

test('a single 5 ms sample does not dominate after older samples', () => {
  // 100 ms at 100 MB/s, then a 5 ms pass on a quiet guest sending one page (0.8 MB/s on its own).
  const m = meterOf([[10_000_000, 100], [4096, 5]]);
  near(m.rate(), (10_004_096 * 1000) / 105, 'windowed rate');
  assert.ok(m.rate() > 95_000_000, `5 ms sample swung the rate to ${m.rate()}`);
  // And a 5 ms burst of 10 MB (2 GB/s on its own) lifts it only to ~190 MB/s, not 2 GB/s.
  const burst = meterOf([[10_000_000, 100], [10_000_000, 5]]);
  near(burst.rate(), (20_000_000 * 1000) / 105, 'burst rate');
});

test('non-positive durations are ignored', () => {
  const m = meterOf([[1_000_000, 10], [5_000_000_000, 0], [5_000_000_000, -3]]);
  assert.is(m.rate(), 100_000_000);
  assert.is(meterOf([[1_000_000, 0]]).rate(), 0);
  assert.is(meterOf([[1_000_000, -1]]).rate(), 0);
});

test('a long run of 1 ms samples is rated over exactly the newest 100', () => {
  const samples: [number, number][] = Array.from({ length: 1000 }, (_, i) => [i, 1]);
  // Newest 100 carry bytes 900..999: sum 94_950 in 100 ms.
  assert.is(meterOf(samples).rate(), 949_500);
});

test('matches the keep-everything reference on 200 seeded random sequences', () => {
  for (let seed = 1; seed <= 200; seed++) {
    const rng = seeded(seed);
    const m = new BandwidthMeter();
    const all: [number, number][] = [];
    const n = 1 + rng.below(60);
    for (let i = 0; i < n; i++) {
      // Durations from -2 to 77 ms (some ignored), bytes up to 10 MB.
      const sample: [number, number] = [rng.below(10_000_000), rng.below(80) - 2];
      m.add(sample[0], sample[1]);
      all.push(sample);
      near(m.rate(), referenceRate(all), `seed ${seed} after ${i + 1} samples`);
    }
  }
});

test('addCounts sums each encoding and leaves its arguments alone', () => {
  const a = { zero: 1, raw: 2, xbzrle: 3, lz4: 4 };
  const b = { zero: 10, raw: 20, xbzrle: 30, lz4: 40 };
  assert.equal(addCounts(a, b), { zero: 11, raw: 22, xbzrle: 33, lz4: 44 });
  assert.equal(a, { zero: 1, raw: 2, xbzrle: 3, lz4: 4 });
  assert.equal(addCounts(emptyCounts(), b), b);
});

test('emptyCounts returns a fresh object each time', () => {
  const a = emptyCounts();
  a.raw = 5;
  assert.equal(emptyCounts(), { zero: 0, raw: 0, xbzrle: 0, lz4: 0 });
});

test.run();
