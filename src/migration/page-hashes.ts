// What each side believes the destination holds, compared after a pre-copy link was lost. Both sides
// keep a hash per page (the source: of the version it last encoded; the destination: of the version
// it applied), so a page whose copy died with the link is exactly a page whose two hashes differ. The
// destination sends its table (PAGE_HASHES); the source marks each differing page to send again and
// drops its XBZRLE cache slot, whose content the destination never got (a delta against it would not
// decode there). Pages still marked in the snapshot go anyway; pages that agree never go again.
//
//   destination hashes[] ─► PAGE_HASHES* ─► source: hashes differ ─► snapshot bit set, cache slot dropped

import { ErrorCode, MemshiftError } from '../errors.js';
import type { Slab } from '../memory/slab.js';
import type { Region } from '../memory/types.js';
import { encodePageHashes, MAX_HASHES_PER_FRAME, type PageHashes } from '../protocol/control.js';
import { viewsOf } from '../wasm/views.js';

function hashesOf(slab: Slab): BigUint64Array {
  return new BigUint64Array(slab.memory.buffer, slab.layout.hashes, slab.pageCount);
}

/** PAGE_HASHES frames for every page of a region, as this side's hash table holds them. */
export function pageHashFrames(region: Region, slabs: readonly Slab[]): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (const s of slabs) {
    const table = hashesOf(s);
    for (let at = 0; at < s.pageCount; at += MAX_HASHES_PER_FRAME) {
      const hashes = table.slice(at, Math.min(s.pageCount, at + MAX_HASHES_PER_FRAME));
      frames.push(encodePageHashes({ regionId: region.id, firstPage: s.firstPage + at, hashes }));
    }
  }
  return frames;
}

/**
 * Marks to send again every page of `m` whose hash differs from the one recorded here, and drops its
 * XBZRLE cache slot; returns how many differed. The pages must lie in the region.
 */
export function markDiverged(region: Region, slabs: readonly Slab[], m: PageHashes): number {
  const end = m.firstPage + m.hashes.length;
  if (end > region.pageCount) {
    throw new MemshiftError(ErrorCode.BATCH_PAGE_RANGE, `PAGE_HASHES names pages up to ${end}, region ${region.id} has ${region.pageCount}`, { regionId: region.id });
  }
  let diverged = 0;
  for (const s of slabs) {
    const from = Math.max(m.firstPage, s.firstPage);
    const to = Math.min(end, s.firstPage + s.pageCount);
    if (from >= to) continue;
    const table = hashesOf(s);
    const { u32 } = viewsOf(s.memory);
    const L = s.layout;
    for (let page = from; page < to; page++) {
      const local = page - s.firstPage;
      if (table[local] === m.hashes[page - m.firstPage]) continue;
      diverged++;
      u32[(L.snapshot >>> 2) + (local >>> 5)] |= 1 << (local & 31);
      if (L.cacheSlots > 0) {
        const tag = (L.cacheTags >>> 2) + (local % L.cacheSlots);
        // Only this page's slot: another page may own it by now.
        if (u32[tag] === local + 1) u32[tag] = 0;
      }
    }
  }
  return diverged;
}
