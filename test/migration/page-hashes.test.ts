// Resuming a pass after a lost link, without a network: the destination's hash table travels as
// PAGE_HASHES, and the source marks exactly the pages whose hashes differ from what it recorded, and
// drops their XBZRLE cache slots (only theirs).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { kernelsOf, type Slab } from '../../src/memory/slab.js';
import { markDiverged, pageHashFrames } from '../../src/migration/page-hashes.js';
import { decodePageHashes, MAX_HASHES_PER_FRAME } from '../../src/protocol/control.js';
import { viewsOf } from '../../src/wasm/views.js';

const PAGE = 4096;

function guest(pages: number, cacheBytes = 0): GuestMemory {
  return GuestMemory.allocate([{ id: 3, name: 'ram', kind: 'ram', pageSize: PAGE, pageCount: pages }], { maxSlabBytes: 256 * PAGE, arenaBytes: 17 << 20, cacheBytes });
}

function hashes(m: GuestMemory, page: number): { table: BigUint64Array; local: number; slab: Slab } {
  const { slab, local } = m.locate(3, page);
  return { table: new BigUint64Array(slab.memory.buffer, slab.layout.hashes, slab.pageCount), local, slab };
}

function snapshotPages(m: GuestMemory, pages: number): number[] {
  const out: number[] = [];
  for (let p = 0; p < pages; p++) {
    const { slab, local } = m.locate(3, p);
    if (kernelsOf(slab).bitmapTest(slab.layout.snapshot, slab.pageCount, local)) out.push(p);
  }
  return out;
}

test('the pages whose hashes differ, and only those, join the snapshot; pages already marked stay marked', () => {
  const src = guest(1000);
  const dst = guest(1000);
  // Both sides agree on every page but for what the lost link carried.
  for (let p = 0; p < 1000; p++) {
    const h = BigInt(p) * 0x9e3779b97f4a7c15n & 0xffffffffffffffffn;
    const s = hashes(src, p);
    const d = hashes(dst, p);
    s.table[s.local] = h;
    d.table[d.local] = h;
  }
  const lost = [7, 255, 256, 511, 999];
  for (const p of lost) {
    const s = hashes(src, p);
    s.table[s.local] ^= 1n;
  }
  // Page 300 had not gone yet: it is in the snapshot already and hashes agree.
  const pending = hashes(src, 300);
  kernelsOf(pending.slab).bitmapSet(pending.slab.layout.snapshot, pending.slab.pageCount, pending.local);
  const frames = pageHashFrames(dst.region(3), dst.slabsOf(3));
  assert.is(frames.length, 4, 'one frame per slab here (each under the per-frame cap)');
  let diverged = 0;
  for (const f of frames) diverged += markDiverged(src.region(3), src.slabsOf(3), decodePageHashes(f, 16, f.length - 16));
  assert.is(diverged, lost.length);
  assert.equal(snapshotPages(src, 1000), [...lost.slice(0, 4), 300, 999].sort((a, b) => a - b));
});

test('a page that diverged loses its own XBZRLE cache slot, not another page sharing the slot index', () => {
  const src = guest(512, 64 * PAGE);
  const slab = src.slabsOf(3)[0];
  const L = slab.layout;
  assert.ok(L.cacheSlots > 0);
  const { u32 } = viewsOf(slab.memory);
  const tagOf = (local: number): number => (L.cacheTags >>> 2) + (local % L.cacheSlots);
  // Page 5 owns its slot; page 6's slot belongs to page 6 + cacheSlots.
  u32[tagOf(5)] = 5 + 1;
  u32[tagOf(6)] = 6 + L.cacheSlots + 1;
  const theirs = new BigUint64Array(2);
  theirs[0] = 0xdeadn;
  theirs[1] = 0xbeefn;
  const n = markDiverged(src.region(3), src.slabsOf(3), { regionId: 3, firstPage: 5, hashes: theirs });
  assert.is(n, 2);
  assert.is(u32[tagOf(5)], 0, 'page 5 will go raw: the destination never got the version its cache holds');
  assert.is(u32[tagOf(6)], 6 + L.cacheSlots + 1, 'the other page keeps its slot');
});

test('PAGE_HASHES naming pages past the region is refused; a frame holds at most MAX_HASHES_PER_FRAME', () => {
  const src = guest(1000);
  assert.throws(() => markDiverged(src.region(3), src.slabsOf(3), { regionId: 3, firstPage: 999, hashes: new BigUint64Array(2) }), (e: Error & { code?: string }) => e.code === 'MS_ERR_BATCH_PAGE_RANGE');
  const big = guest(MAX_HASHES_PER_FRAME + 100);
  const frames = pageHashFrames(big.region(3), big.slabsOf(3));
  for (const f of frames) assert.ok(decodePageHashes(f, 16, f.length - 16).hashes.length <= MAX_HASHES_PER_FRAME);
  const covered = frames.reduce((n, f) => n + decodePageHashes(f, 16, f.length - 16).hashes.length, 0);
  assert.is(covered, MAX_HASHES_PER_FRAME + 100);
});

test.run();
