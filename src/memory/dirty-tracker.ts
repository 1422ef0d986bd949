// The source's view of what still has to be sent. Per slab: `dirty` (set by guest writes) and
// `snapshot` (pages this iteration sends). `sync` moves dirty into snapshot with the atomic
// sync-and-clear kernel, so a page is marked clean *before* its contents are read, and a write that
// lands after that re-dirties it for the next iteration.

import type { Slab } from './slab.js';
import { kernelsOf } from './slab.js';
import type { MemorySource } from './types.js';
import type { SlabLayout } from './slab-layout.js';
import type { KernelExports } from '../wasm/kernels.js';

export class DirtyTracker {
  private readonly slabs: Slab[];
  private readonly source: MemorySource;

  constructor(source: MemorySource) {
    this.source = source;
    this.slabs = source.regions.flatMap((r) => [...source.slabsOf(r.id)]);
  }

  /**
   * Starts a pass over all memory: collects an external dirty log (an integrator whose guest RAM is
   * mirrored into the slabs brings the mirror up to date there), clears the dirty log into the
   * snapshot, then marks every page, or with `onlyWritten` every page ever written (the source and
   * the target agreed that the others are zero on both ends).
   */
  startFullPass(onlyWritten = false): number {
    this.source.collectDirtyLog?.();
    let pages = 0;
    for (const s of this.slabs) {
      const k = kernelsOf(s).raw;
      const L = s.layout;
      k.bitmapSyncAndClear(L.dirty, L.snapshot, L.bitmapWords);
      k.bitmapMerge(L.written, L.snapshot, L.bitmapWords);
      if (onlyWritten) {
        // Every page ever written, this pass or an earlier attempt's: the rest is zero on both ends.
        k.bitmapMerge(L.snapshot, L.written, L.bitmapWords);
        pages += k.bitmapCount(L.snapshot, L.bitmapWords);
      } else {
        k.bitmapFill(L.snapshot, s.pageCount);
        pages += s.pageCount;
      }
    }
    return pages;
  }

  /** Moves pages dirtied since the last sync into the snapshot; returns how many pages the snapshot now holds. */
  sync(): number {
    return this.syncEach((k, L) => {
      k.bitmapSyncAndClear(L.dirty, L.snapshot, L.bitmapWords);
      k.bitmapMerge(L.written, L.snapshot, L.bitmapWords);
    });
  }

  /**
   * sync() for a paused guest whose snapshot may hold pages never written (a full pass set up before
   * the pause): only the pages dirtied since join `written`, not the whole snapshot. Merging before
   * taking the bits is safe only because nothing writes meanwhile.
   */
  syncPaused(): number {
    return this.syncEach((k, L) => {
      k.bitmapMerge(L.written, L.dirty, L.bitmapWords);
      k.bitmapSyncAndClear(L.dirty, L.snapshot, L.bitmapWords);
    });
  }

  /** Collects the source's dirty log, runs `move` on each slab's bitmaps; returns the pages in the snapshot. */
  private syncEach(move: (k: KernelExports, layout: SlabLayout) => void): number {
    this.source.collectDirtyLog?.();
    let pending = 0;
    for (const s of this.slabs) {
      const k = kernelsOf(s).raw;
      move(k, s.layout);
      pending += k.bitmapCount(s.layout.snapshot, s.layout.bitmapWords);
    }
    return pending;
  }

  /** Pages dirtied since the last sync, without moving them (for dirty-rate sampling). */
  peekDirty(): number {
    let n = 0;
    for (const s of this.slabs) n += kernelsOf(s).raw.bitmapCount(s.layout.dirty, s.layout.bitmapWords);
    return n;
  }

  /** Pages in the snapshot, still to send. */
  pending(): number {
    let n = 0;
    for (const s of this.slabs) n += kernelsOf(s).raw.bitmapCount(s.layout.snapshot, s.layout.bitmapWords);
    return n;
  }
}
