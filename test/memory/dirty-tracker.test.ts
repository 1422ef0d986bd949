// dirty-tracker and the vCPU's dirty marks: every page whose content changed has its dirty bit set
// (the "no lost write" invariant at the memory layer), sync moves bits without losing any while the
// guest keeps writing, and nothing is marked that was not written.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DirtyTracker } from '../../src/memory/dirty-tracker.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { replay } from '../../src/sim/index.js';
import { kernelsOf } from '../../src/memory/slab.js';
import type { MemorySource } from '../../src/memory/types.js';
import {
  SMALL_SLABS, assertSameMemory, bitmapPages, differentPages, guestConfig, pageBytes, regionImage, sleep, waitForSteps, withGuest,
} from '../_support/guest-helpers.js';

/** 8 MiB + 12 KiB: 2051 pages, so the last 1 MiB slab holds 3 pages and its bitmap a partial word. */
const ODD_BYTES = (8 << 20) + 3 * 4096;

function clearSnapshots(mem: GuestMemory): void {
  for (const s of mem.slabsOf(0)) kernelsOf(s).raw.bitmapZero(s.layout.snapshot, s.layout.bitmapWords);
}

function subsetMissing(sub: Iterable<number>, sup: Set<number>): number[] {
  const missing: number[] = [];
  for (const p of sub) if (!sup.has(p)) missing.push(p);
  return missing;
}

for (const workload of ['uniform', 'hotset'] as const) {
  test(`after a ${workload} run every page that differs from the initial fill has its dirty bit set`, async () => {
    const config = guestConfig({ memoryBytes: ODD_BYTES, workload, seed: 21, hotBytes: 1 << 20 });
    await withGuest(config, SMALL_SLABS, async (g) => {
      const tracker = new DirtyTracker(g);
      assert.is(tracker.startFullPass(), 2051);
      clearSnapshots(g.memory);
      assert.is(tracker.sync(), 0, 'nothing dirty before the guest runs');
      await g.runUntil(3000);
      const dirty = bitmapPages(g.memory, 'dirty');
      const changed = differentPages(g.memory, replay(config, 0));
      assert.ok(changed.length > 100, `${changed.length} pages changed`);
      assert.equal(subsetMissing(changed, dirty), [], 'changed pages without a dirty bit');
      assert.ok([...dirty].every((p) => p < 2051), 'no bit past the last page');
      // The vCPU thread marks exactly the pages the reference run marks.
      const reference = bitmapPages(replay(config, 3000), 'dirty');
      assert.equal([...dirty].sort((a, b) => a - b), [...reference].sort((a, b) => a - b));
      assert.is(tracker.peekDirty(), dirty.size);
    });
  });
}

test('an idle guest sets no dirty bit and changes no page', async () => {
  const config = guestConfig({ memoryBytes: ODD_BYTES, workload: 'idle' });
  await withGuest(config, SMALL_SLABS, async (g) => {
    const tracker = new DirtyTracker(g);
    tracker.startFullPass();
    await g.resume();
    await sleep(60);
    await g.pause();
    assert.is(bitmapPages(g.memory, 'dirty').size, 0);
    assert.is(tracker.peekDirty(), 0);
    assertSameMemory(g.memory, replay(config, 0), 'idle guest');
  });
});

test('startFullPass marks exactly every page, also in a partial last bitmap word', () => {
  const mem = GuestMemory.allocate([{ id: 0, name: 'ram', kind: 'ram', pageSize: 4096, pageCount: 2051 }], SMALL_SLABS);
  const source = { regions: mem.regions, slabsOf: (id: number) => mem.slabsOf(id) } as unknown as MemorySource;
  const tracker = new DirtyTracker(source);
  assert.is(tracker.startFullPass(), 2051);
  assert.is(tracker.pending(), 2051);
  const snap = bitmapPages(mem, 'snapshot');
  assert.is(snap.size, 2051);
  assert.ok([...snap].every((p) => p >= 0 && p < 2051));
  assert.is(tracker.sync(), 2051, 'sync keeps the pass');
});

test('sync moves dirty bits into the snapshot, clears them, and counts the snapshot', async () => {
  const config = guestConfig({ memoryBytes: ODD_BYTES, workload: 'uniform', seed: 5 });
  await withGuest(config, SMALL_SLABS, async (g) => {
    const tracker = new DirtyTracker(g);
    tracker.startFullPass();
    clearSnapshots(g.memory);
    await g.runUntil(500);
    const dirty = bitmapPages(g.memory, 'dirty');
    assert.ok(dirty.size > 400 && dirty.size <= 500, `${dirty.size} pages dirty after 500 uniform steps`);
    assert.is(tracker.sync(), dirty.size);
    assert.is(tracker.peekDirty(), 0);
    assert.is(bitmapPages(g.memory, 'dirty').size, 0);
    assert.equal([...bitmapPages(g.memory, 'snapshot')].sort((a, b) => a - b), [...dirty].sort((a, b) => a - b));
    // The snapshot accumulates: more steps add to it until it is consumed.
    await g.runUntil(1000);
    const more = bitmapPages(g.memory, 'dirty');
    const union = new Set([...dirty, ...more]);
    assert.is(tracker.sync(), union.size);
    assert.is(tracker.pending(), union.size);
  });
});

test('copying the snapshot after each sync while the guest runs loses no write', async () => {
  const config = guestConfig({ memoryBytes: ODD_BYTES, workload: 'hotset', seed: 99, hotBytes: 256 << 10 });
  await withGuest(config, SMALL_SLABS, async (g) => {
    const tracker = new DirtyTracker(g);
    const pageSize = 4096;
    // Iteration 1: the full pass (snapshot = every page), copied before the guest starts.
    tracker.startFullPass();
    const dest = regionImage(g.memory);
    clearSnapshots(g.memory);
    await g.resume();
    let copied = 0;
    const sendSnapshot = (): void => {
      for (const p of bitmapPages(g.memory, 'snapshot')) {
        dest.set(pageBytes(g.memory, 0, p), p * pageSize);
        copied++;
      }
      clearSnapshots(g.memory);
    };
    for (let i = 0; i < 12; i++) {
      // Sync while the vCPU is mid-run: wait for progress, then sync without pausing it.
      await waitForSteps(g, g.steps + 5_000);
      tracker.sync();
      sendSnapshot();
    }
    await g.pause();
    // Stop-and-copy: the last sync after the pause.
    tracker.sync();
    sendSnapshot();
    assert.ok(g.steps > 0 && copied > 0, `${g.steps} steps, ${copied} page copies`);
    const final = regionImage(g.memory);
    let firstBad = -1;
    for (let p = 0; p < 2051 && firstBad < 0; p++) {
      if (!dest.subarray(p * pageSize, (p + 1) * pageSize).equals(final.subarray(p * pageSize, (p + 1) * pageSize))) firstBad = p;
    }
    assert.is(firstBad, -1, 'first page the copy lost');
    assertSameMemory(g.memory, replay(config, g.steps), 'source after the run');
  });
});

test('sync merges the source dirty log (collectDirtyLog) before moving bits', () => {
  const mem = GuestMemory.allocate([{ id: 0, name: 'ram', kind: 'ram', pageSize: 4096, pageCount: 2051 }], SMALL_SLABS);
  let calls = 0;
  const source = {
    regions: mem.regions,
    slabsOf: (id: number) => mem.slabsOf(id),
    collectDirtyLog(): void {
      calls++;
      for (const page of [3, 700, 2050]) {
        const { slab, local } = mem.locate(0, page);
        kernelsOf(slab).bitmapSet(slab.layout.dirty, slab.pageCount, local);
      }
    },
  } as unknown as MemorySource;
  const tracker = new DirtyTracker(source);
  assert.is(tracker.peekDirty(), 0);
  assert.is(tracker.sync(), 3);
  assert.is(calls, 1);
  assert.equal([...bitmapPages(mem, 'snapshot')].sort((a, b) => a - b), [3, 700, 2050]);
  assert.is(tracker.peekDirty(), 0);
});

test('a full pass of only written pages takes every page ever written: dirty now, or synced by an earlier pass', () => {
  const mem = GuestMemory.allocate([{ id: 0, name: 'ram', kind: 'ram', pageSize: 4096, pageCount: 2051 }], SMALL_SLABS);
  const source = { regions: mem.regions, slabsOf: (id: number) => mem.slabsOf(id) } as unknown as MemorySource;
  const tracker = new DirtyTracker(source);
  // An earlier attempt: pages 5 and 1030 written and synced (their dirty bits are gone since).
  for (const page of [5, 1030]) mem.markDirty(0, page);
  assert.is(tracker.sync(), 2);
  clearSnapshots(mem);
  // Since then: 2050 written, and 5 again.
  for (const page of [2050, 5]) mem.markDirty(0, page);
  assert.is(tracker.startFullPass(true), 3);
  assert.equal([...bitmapPages(mem, 'snapshot')].sort((a, b) => a - b), [5, 1030, 2050]);
  assert.is(tracker.peekDirty(), 0);
  clearSnapshots(mem);
  assert.is(tracker.startFullPass(), 2051, 'without the agreement every page goes');
});

test.run();
