// When LZ4 pays (migration/compression.ts): on when the measured link is slower than what LZ4 moves
// (the encoders' rate, or the link over the compressed share, whichever is less) by LZ4_GAIN; off
// otherwise, and off until the link has been measured. When XBZRLE deltas pay: the same rule with one
// thread's delta rate, on until the link is measured, and never on again once off. What a pass of
// deltas (or of LZ4) says about the link.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Compression, LZ4_GAIN, XBZRLE_GAIN, decideCompression, decideXbzrle, type Lz4Sample, type XbzrleSample } from '../../src/migration/compression.js';

const MB = 1e6;
const TEXT: Lz4Sample = { bytesPerSecond: 300 * MB, ratio: 0.3, pages: 48 };

test('none and lz4 are what they say, whatever the figures', () => {
  assert.is(decideCompression('none', TEXT, 10 * MB).lz4, false);
  assert.is(decideCompression('lz4', null, 0).lz4, true);
  assert.is(decideCompression('lz4', { ...TEXT, ratio: 1 }, 5000 * MB).lz4, true);
});

test('auto stays off until it has a sample and a link rate', () => {
  assert.equal(decideCompression('auto', null, 10 * MB), { lz4: false, reason: 'no sample of the guest to judge LZ4 by' });
  assert.equal(decideCompression('auto', { ...TEXT, pages: 0 }, 10 * MB).lz4, false);
  assert.equal(decideCompression('auto', TEXT, 0), { lz4: false, reason: 'link not measured yet' });
});

test('auto: a 100 Mbit/s link and text-like pages: on, and the reason gives the figures', () => {
  const d = decideCompression('auto', TEXT, 12.5 * MB);
  assert.is(d.lz4, true);
  // min(300, 12.5 / 0.3 = 41.7) MB/s of pages against 12.5 raw.
  assert.match(d.reason, /^LZ4 on: link 13 MB\/s, LZ4 300 MB\/s at 30 % of the bytes: pages would move at 42 MB\/s compressed against 13 MB\/s raw$/);
});

test('auto: a link faster than the compressor, or pages that do not compress, keep it off', () => {
  assert.is(decideCompression('auto', TEXT, 1500 * MB).lz4, false, 'loopback: the compressor would be the limit');
  assert.is(decideCompression('auto', { ...TEXT, ratio: 1 }, 12.5 * MB).lz4, false, 'random pages: nothing saved');
  assert.is(decideCompression('auto', { ...TEXT, bytesPerSecond: 10 * MB }, 12.5 * MB).lz4, false, 'a compressor slower than the link');
});

test('auto switches at LZ4_GAIN: just below it off, at it on', () => {
  // ratio 0.5 and a fast compressor: LZ4 moves 2× the link, so the gain is 2 whatever the link.
  const half: Lz4Sample = { bytesPerSecond: 1e12, ratio: 0.5, pages: 10 };
  assert.is(decideCompression('auto', half, 100 * MB).lz4, true);
  // The compressor as the limit: it moves exactly LZ4_GAIN × the link, then a hair less.
  const at: Lz4Sample = { bytesPerSecond: LZ4_GAIN * 100 * MB, ratio: 0.1, pages: 10 };
  assert.is(decideCompression('auto', at, 100 * MB).lz4, true);
  assert.is(decideCompression('auto', { ...at, bytesPerSecond: at.bytesPerSecond * 0.99 }, 100 * MB).lz4, false);
});

test('one thread compressing and sending in turn: the times add, so LZ4 pays only well below the compressor', () => {
  const serial: Lz4Sample = { ...TEXT, serial: true };
  // 12.5 MB/s: 1 / (1/300 + 0.3/12.5) = 36.6 MB/s of pages against 12.5 raw: on.
  const slow = decideCompression('auto', serial, 12.5 * MB);
  assert.is(slow.lz4, true);
  assert.match(slow.reason, /LZ4 300 MB\/s on the sending thread at 30 % of the bytes: pages would move at 37 MB\/s/);
  // 200 MB/s: encoder threads would move min(300, 667) = 300 (on); one thread 1 / (1/300 + 0.3/200) = 207 (off).
  assert.is(decideCompression('auto', TEXT, 200 * MB).lz4, true);
  assert.is(decideCompression('auto', serial, 200 * MB).lz4, false);
});

const DELTAS: XbzrleSample = { bytesPerSecond: 1000 * MB, ratio: 0.05, pages: 256 };

test('xbzrle on and off are what they say; auto is on until it has a sample and a link rate', () => {
  assert.equal(decideXbzrle('off', DELTAS, 10 * MB), { xbzrle: false, xbzrleReason: 'XBZRLE off (--xbzrle off)' });
  assert.is(decideXbzrle('on', DELTAS, 5000 * MB).xbzrle, true);
  assert.equal(decideXbzrle('auto', null, 10 * MB), { xbzrle: true, xbzrleReason: 'XBZRLE on: no sample of the guest to judge deltas by' });
  assert.is(decideXbzrle('auto', { ...DELTAS, pages: 0 }, 5000 * MB).xbzrle, true);
  assert.equal(decideXbzrle('auto', DELTAS, 0), { xbzrle: true, xbzrleReason: 'XBZRLE on: link not measured yet' });
});

test('xbzrle auto: on over a 1 Gbit/s link, off on loopback, and the reason gives the figures', () => {
  const slow = decideXbzrle('auto', DELTAS, 125 * MB);
  assert.is(slow.xbzrle, true);
  assert.match(slow.xbzrleReason, /^XBZRLE on: link 125 MB\/s, deltas 1000 MB\/s on one thread \(the destination decodes on one\) at 5 % of the bytes: pages sent before would move at 1000 MB\/s as deltas against 125 MB\/s raw$/);
  assert.is(decideXbzrle('auto', DELTAS, 1500 * MB).xbzrle, false, 'the delta path, not the link, would be the limit');
  assert.is(decideXbzrle('auto', { ...DELTAS, ratio: 0.9 }, 125 * MB).xbzrle, false, 'deltas that barely save anything');
});

test('xbzrle auto: the delta thread runs on the cores the raw pages left idle', () => {
  // Loopback with a hot-set guest: 1.7 GB/s raw with 0.3 of the host's cores idle; the sample's 3.7 GB/s
  // gets 0.3 of a core (1.1 GB/s), below raw: off. With a core and more idle, on (3.7 ≥ 1.25 × 1.7).
  const sample: XbzrleSample = { bytesPerSecond: 3700 * MB, ratio: 0.05, pages: 256 };
  const busy = decideXbzrle('auto', sample, 1700 * MB, undefined, 0.3);
  assert.is(busy.xbzrle, false);
  assert.match(busy.xbzrleReason, /^XBZRLE off: link 1700 MB\/s with 0\.3 cores idle, deltas 3700 MB\/s on one thread .*: pages sent before would move at 1110 MB\/s as deltas against 1700 MB\/s raw$/);
  assert.is(decideXbzrle('auto', sample, 1700 * MB, undefined, 1.5).xbzrle, true, 'one thread uses one core at most');
  assert.is(decideXbzrle('auto', sample, 1700 * MB).xbzrle, true, 'idle cores not known: the sample as it is');
  // A 34 MB/s capped link with one core idle: deltas move min(3700, 34 / 0.05) = 680 MB/s.
  assert.is(decideXbzrle('auto', sample, 34 * MB, undefined, 1).xbzrle, true);
});

/** A host clock the test moves: `idle` of `cores` cores idle over each `ms` it advances. */
function hostClock(cores: number): { read: () => { idleMs: number; totalMs: number; cores: number }; advance: (ms: number, idle: number) => void } {
  const t = { idleMs: 0, totalMs: 0, cores };
  return { read: () => ({ ...t }), advance: (ms, idle) => { t.totalMs += ms * cores; t.idleMs += ms * idle; } };
}

test('xbzrle auto: a pass 1 measured with the host busy keeps deltas off; deltas are expected only once the link is measured', () => {
  const host = hostClock(2);
  const c = new Compression('none', null, { mode: 'auto', sample: { bytesPerSecond: 3700 * MB, ratio: 0.05, pages: 256 } }, Infinity, host.read);
  c.passStarting(false);
  assert.is(c.deltasExpected(), false, 'the link is not measured yet: the caches are not touched for deltas that may not come');
  // Windows are measured with compression off too: a 1.7 GB/s stretch after the warm-up, 0.3 cores idle.
  let at = { ms: 0, wire: 0, pages: 0 };
  for (let i = 0; i < 30; i++) {
    host.advance(10, 0.3);
    at = { ms: at.ms + 10, wire: at.wire + 17 * MB, pages: at.pages + 17 * MB };
    c.sent({ wireBytes: 17 * MB, pageBytes: 17 * MB, lz4: false }, at.ms);
  }
  assert.is(c.deltasExpected(), false, 'a busy host: deltas would not pay');
  c.passEnded(at.wire, at.pages, at.ms);
  assert.is(c.passStarting(true), false);
  assert.match(c.xbzrleReason, /^XBZRLE off: link 1700 MB\/s with 0\.3 cores idle/);

  const idle = hostClock(2);
  const d = new Compression('none', null, { mode: 'auto', sample: { bytesPerSecond: 3700 * MB, ratio: 0.05, pages: 256 } }, Infinity, idle.read);
  d.passStarting(false);
  for (let ms = 10; ms <= 300; ms += 10) {
    idle.advance(10, 1.2);
    d.sent({ wireBytes: 0.34 * MB, pageBytes: 0.34 * MB, lz4: false }, ms);
    // Before the warm-up's stretch has ended and one more has been measured, the link is unknown.
    if (ms < 300) assert.is(d.deltasExpected(), false, `at ${ms} ms`);
  }
  assert.is(d.deltasExpected(), true, 'a 34 MB/s link with cores idle: deltas pay');
  assert.is(d.passStarting(true), true);
  assert.match(d.xbzrleReason, /^XBZRLE on: link 34 MB\/s with 1\.2 cores idle/);
});

test('xbzrle auto switches at XBZRLE_GAIN', () => {
  const at: XbzrleSample = { bytesPerSecond: XBZRLE_GAIN * 400 * MB, ratio: 0.01, pages: 10 };
  assert.is(decideXbzrle('auto', at, 400 * MB).xbzrle, true);
  assert.is(decideXbzrle('auto', { ...at, bytesPerSecond: at.bytesPerSecond * 0.99 }, 400 * MB).xbzrle, false);
});

/** A Compression under auto for both, with a pass 1 of 1 GB in 500 ms (a 2 GB/s link) behind it. */
function afterFastFirstPass(deltas: XbzrleSample = DELTAS): Compression {
  const c = new Compression('auto', TEXT, { mode: 'auto', sample: deltas });
  assert.is(c.passStarting(false), false, 'pass 1 sends no deltas');
  c.passEnded(1e9, 1e9, 500);
  return c;
}

test('a pass of deltas does not measure the link: its few wire bytes per second never switch LZ4 on', () => {
  // Deltas fast enough to stay on over a 2 GB/s link, so that pass 2 sends them.
  const c = afterFastFirstPass({ ...DELTAS, bytesPerSecond: 5000 * MB });
  assert.is(c.passStarting(true), true, 'pass 2 sends deltas');
  // Half a second of deltas at 20 MB/s on the wire: mid-pass and at its end.
  c.sent({ wireBytes: 10 * MB, pageBytes: 200 * MB, lz4: false }, 500);
  c.passEnded(10 * MB, 200 * MB, 500);
  assert.is(c.lz4, false, 'LZ4 stays off');
  c.passStarting(true);
  assert.is(c.lz4, false, 'and stays off at the next pass start');
  assert.match(c.reason, /link 2000 MB\/s/);
});

test('xbzrle auto: off once pass 1 measured a link faster than deltas, and never on again', () => {
  const c = afterFastFirstPass();
  assert.is(c.passStarting(true), false);
  assert.is(c.xbzrle, false);
  assert.match(c.xbzrleReason, /^XBZRLE off: link 2000 MB\/s/);
  // The link then measures slow (a raw pass at 50 MB/s): LZ4 may come on, deltas do not.
  c.passEnded(50 * MB, 50 * MB, 1000);
  assert.is(c.passStarting(true), false);
  assert.is(c.lz4, true, 'LZ4 follows the link both ways');
  assert.is(c.xbzrle, false, 'a cache left behind by raw pages cannot carry deltas');
});

test('xbzrle auto: on over a slow link, off at a later pass start once the link measured fast', () => {
  const c = new Compression('none', null, { mode: 'auto', sample: DELTAS });
  c.passStarting(false);
  c.passEnded(100 * MB, 100 * MB, 1000);
  assert.is(c.passStarting(true), true, '100 MB/s: deltas pay');
  c.passEnded(50 * MB, 1000 * MB, 100);
  assert.is(c.passStarting(true), true, 'a delta pass only raises the estimate to its own wire rate (500 MB/s)');
  c.passEnded(4000 * MB, 4000 * MB, 1000);
  assert.is(c.passStarting(true), false, 'a link measured at 4 GB/s: off');
});

test('xbzrle auto: a pass resending more pages than the cache has slots goes raw, and deltas stay off', () => {
  const c = new Compression('none', null, { mode: 'auto', sample: DELTAS });
  c.passStarting(false);
  c.passEnded(100 * MB, 100 * MB, 1000);
  assert.is(c.passStarting(true, { pages: 16_384, cacheSlots: 16_384 }), true, 'as many pages as slots: deltas pay over 100 MB/s');
  assert.is(c.passStarting(true, { pages: 48_953, cacheSlots: 16_384 }), false);
  assert.is(c.xbzrleReason, 'XBZRLE off: 48953 pages to resend and the cache holds 16384: most would miss');
  assert.is(c.passStarting(true, { pages: 100, cacheSlots: 16_384 }), false, 'the cache was left behind: never on again');
  const forced = new Compression('none', null, { mode: 'on', sample: DELTAS });
  assert.is(forced.passStarting(true, { pages: 48_953, cacheSlots: 16_384 }), true, '--xbzrle on is what it says');
});

type Stretch = readonly [ms: number, wireMBs: number, pageMBs: number, kind: 'raw' | 'lz4'];

/** Feeds a pass batch by batch (one each 10 ms): each stretch sends that long at those rates, its batches of that kind. */
function feed(c: Compression, stretches: readonly Stretch[], at = { ms: 0, wire: 0, pages: 0 }): typeof at {
  for (const [ms, wire, pages, kind] of stretches) {
    for (let t = 0; t < ms; t += 10) {
      const batch = { wireBytes: (wire * MB) / 100, pageBytes: (pages * MB) / 100, lz4: kind === 'lz4' };
      at = { ms: at.ms + 10, wire: at.wire + batch.wireBytes, pages: at.pages + batch.pageBytes };
      c.sent(batch, at.ms);
    }
  }
  return at;
}

test('LZ4 turned on by its prediction goes off within the pass when it moves pages slower than raw did', () => {
  const c = new Compression('auto', TEXT, { mode: 'off', sample: null });
  c.passStarting(false);
  // The first stretch is not measured, however slow (the pipeline fills); the second measures a 50 MB/s
  // link, against which the sample predicts min(300, 50 / 0.3) = 167 MB/s of pages: on.
  let at = feed(c, [[150, 10, 10, 'raw'], [150, 50, 50, 'raw']]);
  assert.is(c.lz4, true);
  assert.match(c.reason, /^LZ4 on: link 50 MB\/s, LZ4 300 MB\/s at 30 % of the bytes: pages would move at 167 MB\/s/);
  // Batches encoded raw before the switch still go out, then LZ4's move pages at 40 MB/s (a
  // destination decoding on a busy core). Their first stretch is a warm-up (the socket's buffers still
  // drain raw batches): not judged.
  at = feed(c, [[100, 200, 200, 'raw'], [150, 12, 40, 'lz4']], at);
  assert.is(c.lz4, true, 'the warm-up after a switch is not measured');
  // The stretch after it: below 1.25 × 50, off.
  at = feed(c, [[150, 12, 40, 'lz4']], at);
  assert.is(c.lz4, false);
  assert.match(c.reason, /^LZ4 off: link 50 MB\/s, LZ4 300 MB\/s at 30 % of the bytes, measured moving pages at 40 MB\/s: pages would move at 40 MB\/s compressed against 50 MB\/s raw$/);
  // Raw measures 200 MB/s once LZ4's last batches are out: off it stays, and at the next pass start.
  at = feed(c, [[100, 12, 40, 'lz4'], [300, 200, 200, 'raw']], at);
  assert.is(c.lz4, false);
  c.passEnded(at.wire, at.pages, at.ms);
  c.passStarting(false);
  assert.is(c.lz4, false);
  assert.match(c.reason, /link 200 MB\/s/);
});

test('LZ4 that delivers on a slow link stays on, and a pass under it raises the link only to its wire rate', () => {
  const c = new Compression('auto', TEXT, { mode: 'off', sample: null });
  c.passStarting(false);
  // A 50 MB/s link; under LZ4 pages move at 150 MB/s (45 MB/s on the wire): on throughout.
  const at = feed(c, [[150, 50, 50, 'raw'], [150, 50, 50, 'raw'], [450, 45, 150, 'lz4']]);
  assert.is(c.lz4, true);
  assert.match(c.reason, /measured moving pages at 150 MB\/s/);
  c.passEnded(at.wire, at.pages, at.ms);
  assert.is(c.passStarting(false), false);
  assert.is(c.lz4, true, 'still on at the next pass start');
  assert.match(c.reason, /^LZ4 on: link 50 MB\/s/);
});

test('a capped link (--max-bandwidth) is never measured above its cap, even when encoding time overlapped its pacing', () => {
  const c = new Compression('auto', TEXT, { mode: 'off', sample: null }, 16 * MB);
  c.passStarting(false);
  // 16 MB in 1000 ms, 550 of them encoding while the limiter held the socket: 35.6 MB/s less that time.
  c.passEnded(16 * MB, 16 * MB, 1000, 550);
  c.passStarting(false);
  assert.is(c.lz4, true, 'TEXT compresses well past 1.25 × 16 MB/s');
  assert.match(c.reason, /link 16 MB\/s/);
  const uncapped = new Compression('auto', TEXT, { mode: 'off', sample: null });
  uncapped.passStarting(false);
  uncapped.passEnded(16 * MB, 16 * MB, 1000, 550);
  uncapped.passStarting(false);
  assert.match(uncapped.reason, /link 36 MB\/s/, 'without a cap the encoding time is left out');
});

test('inline encoding: the link is measured without the time spent encoding, LZ4 with it (compressing is its cost)', () => {
  const c = new Compression('auto', TEXT, { mode: 'off', sample: null });
  c.passStarting(false);
  // Raw: 60 MB in 300 ms, 200 of them encoding: the socket moved it at 600 MB/s (200 by the wall clock,
  // against which LZ4's 300 would be on).
  c.passEnded(60 * MB, 60 * MB, 300, 200);
  c.passStarting(false);
  assert.is(c.lz4, false);
  assert.match(c.reason, /link 600 MB\/s/);
  const d = new Compression('auto', TEXT, { mode: 'off', sample: null });
  d.passStarting(false);
  d.passEnded(20 * MB, 20 * MB, 1000);
  assert.is(d.passStarting(false), false);
  assert.is(d.lz4, true, 'a 20 MB/s link');
  // Under LZ4, 20 MB of pages in 1000 ms, 900 of them compressing: 20 MB/s, not 200.
  d.passEnded(6 * MB, 20 * MB, 1000, 900);
  d.passStarting(false);
  assert.is(d.lz4, false);
  assert.match(d.reason, /measured moving pages at 20 MB\/s/);
});

test('a pass too short for windows is measured whole; one under LZ4 gives the rate LZ4 moved', () => {
  const c = new Compression('auto', TEXT, { mode: 'off', sample: null });
  c.passStarting(false);
  c.passEnded(20 * MB, 20 * MB, 1000);
  assert.is(c.passStarting(false), false);
  assert.is(c.lz4, true, 'a 20 MB/s link: on by the prediction');
  c.passEnded(10 * MB, 20 * MB, 1000);
  c.passStarting(false);
  assert.is(c.lz4, false, 'it moved pages at 20 MB/s, no faster than raw: off');
  assert.match(c.reason, /measured moving pages at 20 MB\/s/);
});

test.run();
