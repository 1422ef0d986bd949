// When LZ4 pays (migration/compression.ts): on when the measured link is slower than what LZ4 moves
// (the encoders' rate, or the link over the compressed share, whichever is less) by LZ4_GAIN; off
// otherwise, and off until the link has been measured.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LZ4_GAIN, decideCompression, type Lz4Sample } from '../../src/migration/compression.js';

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

test.run();
