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

test('xbzrle auto switches at XBZRLE_GAIN', () => {
  const at: XbzrleSample = { bytesPerSecond: XBZRLE_GAIN * 400 * MB, ratio: 0.01, pages: 10 };
  assert.is(decideXbzrle('auto', at, 400 * MB).xbzrle, true);
  assert.is(decideXbzrle('auto', { ...at, bytesPerSecond: at.bytesPerSecond * 0.99 }, 400 * MB).xbzrle, false);
});

/** A Compression under auto for both, with a pass 1 of 1 GB in 500 ms (a 2 GB/s link) behind it. */
function afterFastFirstPass(deltas: XbzrleSample = DELTAS): Compression {
  const c = new Compression('auto', TEXT, { mode: 'auto', sample: deltas });
  assert.is(c.passStarting(false), false, 'pass 1 sends no deltas');
  c.passEnded(1e9, 500);
  return c;
}

test('a pass of deltas does not measure the link: its few wire bytes per second never switch LZ4 on', () => {
  // Deltas fast enough to stay on over a 2 GB/s link, so that pass 2 sends them.
  const c = afterFastFirstPass({ ...DELTAS, bytesPerSecond: 5000 * MB });
  assert.is(c.passStarting(true), true, 'pass 2 sends deltas');
  // Half a second of deltas at 20 MB/s on the wire: mid-pass and at its end.
  c.sent(10 * MB, 500);
  c.passEnded(10 * MB, 500);
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
  c.passEnded(50 * MB, 1000);
  assert.is(c.passStarting(true), false);
  assert.is(c.lz4, true, 'LZ4 follows the link both ways');
  assert.is(c.xbzrle, false, 'a cache left behind by raw pages cannot carry deltas');
});

test('xbzrle auto: on over a slow link, off at a later pass start once the link measured fast', () => {
  const c = new Compression('none', null, { mode: 'auto', sample: DELTAS });
  c.passStarting(false);
  c.passEnded(100 * MB, 1000);
  assert.is(c.passStarting(true), true, '100 MB/s: deltas pay');
  c.passEnded(50 * MB, 100);
  assert.is(c.passStarting(true), true, 'a delta pass only raises the estimate to its own wire rate (500 MB/s)');
  c.passEnded(4000 * MB, 1000);
  assert.is(c.passStarting(true), false, 'a link measured at 4 GB/s: off');
});

test.run();
