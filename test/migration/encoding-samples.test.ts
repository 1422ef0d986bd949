// What the source measures before pass 1 to judge LZ4 and XBZRLE by (source/lz4-sample.ts,
// source/xbzrle-sample.ts): a spread of the guest's non-zero pages, timed through each encoding; the
// guest's memory is read, never written.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { resolveGuestConfig, type FillKind } from '../../src/sim/guest-config.js';
import { ramSlabs, replay } from '../../src/sim/simulated-guest.js';
import { sessionDigest } from '../../src/memory/slab.js';
import { sampleGuestPages } from '../../src/migration/source/guest-sample.js';
import { LZ4_SAMPLE_PAGES, sampleLz4 } from '../../src/migration/source/lz4-sample.js';
import { XBZRLE_SAMPLE_PAGES, sampleXbzrle } from '../../src/migration/source/xbzrle-sample.js';

const MiB = 2 ** 20;

function guest(fill: FillKind) {
  return replay(resolveGuestConfig({ memoryBytes: 16 * MiB, seed: 3, fill, workload: 'idle' }), 0);
}

test('sampleGuestPages: evenly spread copies, zero pages left out', () => {
  const random = ramSlabs(guest('random'));
  const pages = sampleGuestPages(random, 8);
  assert.is(pages.length, 8);
  const u8 = new Uint8Array(random[0].memory.buffer);
  // Page (i + ½) × 4096 / 8 of the 4096: 256, 768, …; each a copy, not a view.
  const at = random[0].layout.ram + 256 * 4096;
  assert.equal(pages[0], u8.slice(at, at + 4096));
  assert.is.not(pages[0].buffer, u8.buffer);
  assert.is(sampleGuestPages(ramSlabs(guest('zero')), 8).length, 0);
});

test('sampleXbzrle: every sampled page becomes a small delta; the guest is untouched', () => {
  const memory = guest('random');
  const slabs = ramSlabs(memory);
  const before = sessionDigest(memory);
  const s = sampleXbzrle(slabs);
  assert.is(s.pages, XBZRLE_SAMPLE_PAGES);
  // One word in 32 changed: 4 changed bytes in every 128, with their run lengths a few % of the page.
  assert.ok(s.ratio > 0.01 && s.ratio < 0.2, `ratio ${s.ratio}`);
  assert.ok(s.bytesPerSecond > 0 && Number.isFinite(s.bytesPerSecond), `rate ${s.bytesPerSecond}`);
  assert.is(sessionDigest(memory), before, 'guest memory unchanged');
  assert.equal(sampleXbzrle(ramSlabs(guest('zero'))), { bytesPerSecond: 0, ratio: 1, pages: 0 });
});

test('sampleLz4: random pages do not compress, a mixed fill\'s do', () => {
  const random = sampleLz4(ramSlabs(guest('random')), 1);
  assert.is(random.pages, LZ4_SAMPLE_PAGES);
  assert.ok(random.ratio >= 0.99, `random ratio ${random.ratio}`);
  const mixed = sampleLz4(ramSlabs(guest('mixed')), 4);
  assert.ok(mixed.ratio < 0.8, `mixed ratio ${mixed.ratio}`);
  assert.ok(mixed.bytesPerSecond > 0);
  assert.equal(sampleLz4(ramSlabs(guest('zero')), 2), { bytesPerSecond: 0, ratio: 1, pages: 0 });
});

test.run();
