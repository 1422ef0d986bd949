// guest-memory: what an integrator does with guest memory without the simulated guest. A page it
// marks dirty is sent by the next sync, and only that page; marks are bounds-checked by region and
// page; an image of several regions is their pages concatenated in the order asked; options are
// checked up front and the error names the option.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DirtyTracker } from '../../src/memory/dirty-tracker.js';
import { GuestMemory, MIN_SLAB_BYTES, MAX_SLAB_BYTES } from '../../src/memory/guest-memory.js';
import type { MemorySource } from '../../src/memory/types.js';
import { bitmapPages, expectCode, withTempDir } from '../_support/guest-helpers.js';

const INVALID = 'MS_ERR_INVALID_ARGUMENT';

/** Two regions of 1000 and 300 pages over 1 MiB slabs (region 0 spans four slabs). */
function twoRegions(): GuestMemory {
  return GuestMemory.allocate([
    { id: 0, name: 'ram', kind: 'ram', pageSize: 4096, pageCount: 1000 },
    { id: 7, name: 'disk', kind: 'disk', pageSize: 4096, pageCount: 300 },
  ], { maxSlabBytes: 1 << 20, arenaBytes: 0 });
}

/** A source over `mem` that does nothing but expose it (DirtyTracker needs only regions and slabs). */
function sourceOf(mem: GuestMemory): MemorySource {
  return {
    regions: mem.regions, slabsOf: (id) => mem.slabsOf(id),
    pause: async () => undefined, resume: async () => undefined, throttle: () => undefined, saveState: () => new Uint8Array(0),
  };
}

test('a page marked dirty is picked up by the next DirtyTracker.sync(), and only that page', () => {
  const mem = twoRegions();
  const tracker = new DirtyTracker(sourceOf(mem));
  assert.is(tracker.sync(), 0, 'a fresh guest has nothing dirty');
  mem.markDirty(0, 777); // slab 3 of region 0, bit 9 of its word 0 (777 - 768)
  mem.markDirty(7, 31);
  assert.is(tracker.peekDirty(), 2);
  assert.is(tracker.sync(), 2);
  assert.equal([...bitmapPages(mem, 'snapshot', 0)], [777]);
  assert.equal([...bitmapPages(mem, 'snapshot', 7)], [31]);
  assert.is(bitmapPages(mem, 'dirty', 0).size, 0, 'sync cleared the dirty log');
});

test('marking a page twice, or two pages of one word, sets exactly their bits', () => {
  const mem = twoRegions();
  for (const p of [0, 31, 31, 32, 63, 999]) mem.markDirty(0, p);
  assert.equal([...bitmapPages(mem, 'dirty', 0)].sort((a, b) => a - b), [0, 31, 32, 63, 999]);
});

test('markDirty rejects an unknown region and a page outside the region', () => {
  const mem = twoRegions();
  expectCode(() => mem.markDirty(1, 0), INVALID, 'region 1');
  expectCode(() => mem.markDirty(0, -1), INVALID, 'page -1');
  expectCode(() => mem.markDirty(0, 1000), INVALID, 'page = pageCount');
  expectCode(() => mem.markDirty(7, 300), INVALID, 'page = pageCount of region 7');
  expectCode(() => mem.markDirty(0, 1.5), INVALID, 'page 1.5');
  assert.is(bitmapPages(mem, 'dirty', 0).size + bitmapPages(mem, 'dirty', 7).size, 0, 'no bit was set');
});

test('writeImage of several regions writes their pages concatenated, in the order asked', async () => {
  const mem = twoRegions();
  mem.pageView(0, 999).fill(0xaa);
  mem.pageView(7, 0).fill(0xbb);
  await withTempDir(async (dir) => {
    const file = join(dir, 'both.img');
    mem.writeImage([7, 0], file);
    const image = await readFile(file);
    assert.is(image.length, 1300 * 4096);
    assert.is(image[0], 0xbb, 'region 7 first');
    assert.is(image[(300 + 999) * 4096], 0xaa, 'region 0 page 999 after region 7');
    assert.is(image[(300 + 998) * 4096], 0);
    mem.writeImage(0, file);
    assert.is((await readFile(file)).length, 1000 * 4096, 'one region alone');
  });
});

test('checkOptions names maxSlabBytes below 64 small pages or above the 4 GiB bookkeeping room, and accepts the bounds', () => {
  for (const bad of [1, MIN_SLAB_BYTES - 1, MAX_SLAB_BYTES + 1, 1.5 * MIN_SLAB_BYTES + 0.5]) {
    const e = expectCode(() => GuestMemory.checkOptions({ maxSlabBytes: bad }), INVALID, `maxSlabBytes ${bad}`);
    assert.match(e.message, /^maxSlabBytes /);
  }
  GuestMemory.checkOptions({ maxSlabBytes: MIN_SLAB_BYTES });
  GuestMemory.checkOptions({ maxSlabBytes: MAX_SLAB_BYTES });
  expectCode(() => GuestMemory.checkOptions({ arenaBytes: -1 }), INVALID, 'arenaBytes -1');
  expectCode(() => GuestMemory.checkOptions({ cacheBytes: 0.5 }), INVALID, 'cacheBytes 0.5');
});

test('a slab size that holds 64 small pages but not 64 large ones is refused for that region', () => {
  const spec = [{ id: 0, name: 'ram', kind: 'ram' as const, pageSize: 65536, pageCount: 10 }];
  const e = expectCode(() => GuestMemory.allocate(spec, { maxSlabBytes: MIN_SLAB_BYTES }), INVALID, '64 KiB pages in 256 KiB');
  assert.match(e.message, /65536/);
});

test.run();
