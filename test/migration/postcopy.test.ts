// Post-copy pieces that can be proven without a network: the first-writer-wins apply (no double or
// stale write), missing-page marking, and the push planner's pivot.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { kernelsOf, type Slab } from '../../src/memory/slab.js';
import { scratchSlot } from '../../src/memory/slab-layout.js';
import { viewsOf } from '../../src/wasm/views.js';
import { BatchApplier } from '../../src/pipeline/apply.js';
import { PushPlanner } from '../../src/pipeline/push-planner.js';
import { encodeBatchFrame } from '../../src/protocol/page-batch.js';
import { PageEncoding } from '../../src/protocol/constants.js';
import { absentPagesFrames, clearMissingPages, clearSnapshots, markUnsent, unsentPagesFrames } from '../../src/migration/missing-pages.js';
import { decodeMissingPages } from '../../src/protocol/control.js';

const PAGE = 4096;

function guest(pages: number, maxSlabBytes = 1 << 20): GuestMemory {
  return GuestMemory.allocate([{ id: 0, name: 'ram', kind: 'ram', pageSize: PAGE, pageCount: pages }], { maxSlabBytes, arenaBytes: 17 << 20 });
}

function hashOf(m: GuestMemory, content: Uint8Array): bigint {
  const s = m.slabsOf(0)[0];
  const at = scratchSlot(s.layout, 15).page;
  viewsOf(s.memory).u8.set(content, at);
  return kernelsOf(s).hashPage(at, PAGE);
}

function rawPage(m: GuestMemory, page: number, fill: number): Uint8Array {
  const content = new Uint8Array(PAGE).fill(fill);
  return encodeBatchFrame(0, 1, [{ page, encoding: PageEncoding.RAW, size: PAGE, hash: hashOf(m, content), payload: content }]);
}

/** Marks every page present and claimed except `missing` (what MISSING_PAGES does on the destination). */
function markAllBut(m: GuestMemory, missing: number[]): void {
  for (const s of m.slabsOf(0)) {
    const k = kernelsOf(s);
    k.bitmapFill(s.layout.present, s.pageCount);
    k.bitmapFill(s.layout.claim, s.pageCount);
  }
  for (const p of missing) {
    const { slab, local } = m.locate(0, p);
    const k = kernelsOf(slab);
    k.bitmapClear(slab.layout.present, slab.pageCount, local);
    k.bitmapClear(slab.layout.claim, slab.pageCount, local);
  }
}

function apply(a: BatchApplier, frame: Uint8Array): void {
  const dv = new DataView(frame.buffer, frame.byteOffset);
  a.apply(frame, 16, dv.getUint32(0, true), dv.getUint32(8, true));
}

function present(m: GuestMemory, page: number): boolean {
  const { slab, local } = m.locate(0, page);
  return kernelsOf(slab).bitmapTest(slab.layout.present, slab.pageCount, local);
}

test('a pushed copy that arrives after the guest wrote the page does not overwrite it', () => {
  const m = guest(512);
  markAllBut(m, [5]);
  const main = new BatchApplier(m, 0, 0, true);
  const frame = rawPage(m, 5, 0xaa);
  apply(main, frame);
  assert.ok(present(m, 5));
  assert.is(m.pageView(0, 5)[100], 0xaa);
  m.pageView(0, 5)[100] = 0x42; // the resumed guest writes the page
  apply(main, frame); // the same page again, from the other channel
  assert.is(m.pageView(0, 5)[100], 0x42, 'the guest write survives');
  assert.is(main.totals.pages, 1);
  assert.is(main.totals.duplicates, 1);
});

test('of a bulk copy and an urgent copy of one page, exactly one is written', () => {
  const m = guest(512);
  markAllBut(m, [7, 300]);
  const bulk = new BatchApplier(m, 0, 0, true, 'arena');
  const urgent = new BatchApplier(m, 0, 1, true, 'scratch');
  apply(urgent, rawPage(m, 300, 0x11));
  apply(bulk, rawPage(m, 300, 0x11));
  apply(bulk, rawPage(m, 7, 0x22));
  apply(urgent, rawPage(m, 7, 0x22));
  assert.is(bulk.totals.pages + urgent.totals.pages, 2, 'two pages written');
  assert.is(bulk.totals.duplicates + urgent.totals.duplicates, 2, 'two copies dropped');
  assert.is(m.pageView(0, 300)[0], 0x11);
  assert.is(m.pageView(0, 7)[0], 0x22);
});

test('a page that was never missing is never written by a late copy', () => {
  const m = guest(256);
  m.pageView(0, 9).fill(0x77);
  markAllBut(m, []);
  const a = new BatchApplier(m, 0, 0, true);
  apply(a, rawPage(m, 9, 0x01));
  assert.is(m.pageView(0, 9)[0], 0x77);
  assert.is(a.totals.duplicates, 1);
});

test('MISSING_PAGES frames carry exactly the snapshot bits, across slabs', () => {
  const m = guest(1000, 256 * PAGE);
  const slabs: readonly Slab[] = m.slabsOf(0);
  const pages = [0, 63, 64, 255, 256, 700, 999];
  for (const p of pages) {
    const { slab, local } = m.locate(0, p);
    kernelsOf(slab).bitmapSet(slab.layout.snapshot, slab.pageCount, local);
  }
  const { frames, pages: missing } = unsentPagesFrames(m.region(0), slabs);
  assert.is(missing, pages.length);
  assert.is(frames.length, 1);
  const f = frames[0];
  const body = decodeMissingPages(f, 16, f.length - 16);
  const found: number[] = [];
  for (let p = 0; p < body.pageCount; p++) if ((body.bitmap[p >> 3] >> (p & 7)) & 1) found.push(body.firstPage + p);
  assert.equal(found, pages);
});

test('a switchover\'s MISSING_PAGES clears exactly the named pages in present and claim, across slabs and scratch-sized pieces', () => {
  // 4 slabs of 80 000 pages: a frame's 1250 words per slab are more than the 1024 the scratch holds at once.
  const src = guest(300_000, 80_000 * PAGE);
  const dest = guest(300_000, 80_000 * PAGE);
  const named = [0, 63, 64, 64_500, 65_599, 65_600, 79_999, 80_000, 150_001, 239_999, 240_000, 299_999];
  for (const p of named) {
    const { slab, local } = src.locate(0, p);
    kernelsOf(slab).bitmapSet(slab.layout.snapshot, slab.pageCount, local);
  }
  markAllBut(dest, []);
  const { frames } = unsentPagesFrames(src.region(0), src.slabsOf(0));
  let cleared = 0;
  for (const f of frames) cleared += clearMissingPages(dest.region(0), dest.slabsOf(0), decodeMissingPages(f, 16, f.length - 16));
  assert.is(cleared, named.length);
  for (const map of ['present', 'claim'] as const) {
    const clear: number[] = [];
    for (let p = 0; p < 300_000; p++) {
      const { slab, local } = dest.locate(0, p);
      if (!kernelsOf(slab).bitmapTest(slab.layout[map], slab.pageCount, local)) clear.push(p);
    }
    assert.equal(clear, named, map);
  }
  const bits = new Uint8Array(8);
  bits[7] = 0x80; // page 63 of a 40-page frame
  assert.throws(() => clearMissingPages(dest.region(0), dest.slabsOf(0), { regionId: 0, firstPage: 0, pageCount: 40, bitmap: bits }), (e: Error & { code?: string }) => e.code === 'MS_ERR_FRAME_MALFORMED');
  assert.throws(() => clearMissingPages(dest.region(0), dest.slabsOf(0), { regionId: 0, firstPage: 299_968, pageCount: 64, bitmap: new Uint8Array(8).fill(1) }), (e: Error & { code?: string }) => e.code === 'MS_ERR_BATCH_PAGE_RANGE');
  // Shapes only a caller could build (the decoder refuses them too): never written through.
  const malformed = (e: Error & { code?: string }) => e.code === 'MS_ERR_FRAME_MALFORMED';
  assert.throws(() => clearMissingPages(dest.region(0), dest.slabsOf(0), { regionId: 0, firstPage: 32, pageCount: 64, bitmap: new Uint8Array(8).fill(1) }), malformed);
  assert.throws(() => clearMissingPages(dest.region(0), dest.slabsOf(0), { regionId: 0, firstPage: 0, pageCount: 64, bitmap: new Uint8Array(16) }), malformed);
  const { slab, local } = dest.locate(0, 299_968);
  assert.ok(kernelsOf(slab).bitmapTest(slab.layout.present, slab.pageCount, local), 'a refused frame clears nothing');
  assert.ok(kernelsOf(dest.slabsOf(0)[0]).bitmapTest(dest.slabsOf(0)[0].layout.present, 80_000, 32), 'nor a misaligned one');
});

test('recovery: the pages a destination lacks (¬present) become exactly the source\'s pages left to push, across slabs', () => {
  const dest = guest(1000, 256 * PAGE);
  const src = guest(1000, 256 * PAGE);
  const absent = new Set([0, 63, 64, 255, 256, 700, 998, 999]);
  for (let p = 0; p < 1000; p++) {
    if (absent.has(p)) continue;
    const { slab, local } = dest.locate(0, p);
    kernelsOf(slab).bitmapSet(slab.layout.present, slab.pageCount, local);
  }
  const { frames, pages } = absentPagesFrames(dest.region(0), dest.slabsOf(0));
  assert.is(pages, absent.size, 'bits past the last page are not named');
  // The source had pushed some of them already (the copies were lost with the link): it starts over from the frames.
  const first = src.locate(0, 5);
  kernelsOf(first.slab).bitmapSet(first.slab.layout.snapshot, first.slab.pageCount, first.local);
  clearSnapshots(src.slabsOf(0));
  let marked = 0;
  for (const f of frames) marked += markUnsent(src.region(0), src.slabsOf(0), decodeMissingPages(f, 16, f.length - 16));
  assert.is(marked, absent.size);
  const found: number[] = [];
  for (let p = 0; p < 1000; p++) {
    const { slab, local } = src.locate(0, p);
    if (kernelsOf(slab).bitmapTest(slab.layout.snapshot, slab.pageCount, local)) found.push(p);
  }
  assert.equal(found, [...absent]);
});

test('recovery: a MISSING_PAGES that names pages past the region, or bits past its count, is refused', () => {
  const src = guest(1000, 256 * PAGE);
  const region = src.region(0);
  const past = { regionId: 0, firstPage: 960, pageCount: 64, bitmap: new Uint8Array(8) };
  assert.throws(() => markUnsent(region, src.slabsOf(0), past), (e: Error & { code?: string }) => e.code === 'MS_ERR_BATCH_PAGE_RANGE');
  const bits = new Uint8Array(8);
  bits[7] = 0x80; // page 63 of a 40-page frame
  assert.throws(() => markUnsent(region, src.slabsOf(0), { regionId: 0, firstPage: 0, pageCount: 40, bitmap: bits }), (e: Error & { code?: string }) => e.code === 'MS_ERR_FRAME_MALFORMED');
});

test('the push planner pivots to a fault and grows outwards, alternating directions', () => {
  const p = new PushPlanner(100_000, 16, 1024);
  p.onFault(50_000);
  assert.equal(p.next(), { from: 50_001, to: 50_017 });
  assert.equal(p.next(), { from: 49_936, to: 50_000 });
  assert.equal(p.next(), { from: 50_017, to: 50_273 });
  assert.equal(p.next(), { from: 48_912, to: 49_936 });
  p.onFault(100);
  assert.equal(p.next(), { from: 101, to: 117 }, 'a new fault, after enough windows, resets the window to its smallest');
});

test('faults inside the pushed range, or too soon after the last pivot, do not move it', () => {
  const p = new PushPlanner(100_000, 16, 1024);
  p.onFault(50_000);
  p.next();
  p.onFault(70_000); // too soon: one window since the pivot
  assert.equal(p.next(), { from: 49_936, to: 50_000 }, 'still growing around 50 000');
  p.next();
  p.next();
  p.onFault(50_010); // inside what was pushed around the pivot
  assert.equal(p.next(), { from: 50_273, to: 51_297 }, 'still growing from the same pivot');
});

test('the push planner sweeps linearly, wraps, and caps its window', () => {
  const p = new PushPlanner(3000, 16, 1024);
  const windows = Array.from({ length: 9 }, () => p.next());
  assert.equal(windows.slice(0, 3), [{ from: 0, to: 16 }, { from: 16, to: 80 }, { from: 80, to: 336 }]);
  assert.ok(windows.every((w) => w.to - w.from <= 1024));
  assert.ok(windows.some((w) => w.from === 0 && w !== windows[0]), 'it wraps around to the start');
});

test('near the ends the pivot keeps growing in the direction that still has pages', () => {
  const p = new PushPlanner(1000, 16, 1024);
  p.onFault(2);
  assert.equal(p.next(), { from: 3, to: 19 });
  assert.equal(p.next(), { from: 0, to: 2 });
  assert.equal(p.next(), { from: 19, to: 275 });
  assert.equal(p.next(), { from: 275, to: 1000 }, 'only forward is left');
});

test.run();
