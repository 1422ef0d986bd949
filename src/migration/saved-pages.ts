// Pages of a save file, loaded one at a time into a target whose page gate is armed (a lazy restore):
// each page is checked against its saved hash and written only by whoever claims it first, the fault
// thread for a page the vCPU is blocked on or the background loader for the rest, so a page the
// resumed guest has written since is never overwritten. Used on both threads; no I/O of its own.

import { ErrorCode, MemshiftError } from '../errors.js';
import { kernelsOf, type Slab } from '../memory/slab.js';
import { CONTROL_DIGEST } from '../memory/slab-layout.js';
import { KernelCode } from '../wasm/kernels.js';

/** What the pages of one region need: where they are in the file and what they hash to. */
export interface SavedRegionPages {
  id: number;
  pageSize: number;
  dataOffset: number;
  /** The region's saved hashes, one u64 per page. */
  hashes: BigUint64Array;
  slabs: readonly Slab[];
}

/** The slab holding region page `page`, and the page's index in it. */
export function locatePage(r: SavedRegionPages, page: number): { slab: Slab; local: number } {
  const perSlab = r.slabs[0].pageCount;
  const slab = r.slabs[Math.floor(page / perSlab)];
  if (slab === undefined || page < slab.firstPage || page >= slab.firstPage + slab.pageCount) {
    throw new MemshiftError(ErrorCode.BATCH_PAGE_RANGE, `page ${page} is outside region ${r.id}`, { regionId: r.id, page });
  }
  return { slab, local: page - slab.firstPage };
}

export function isPresent(slab: Slab, local: number): boolean {
  return kernelsOf(slab).raw.bitmapTest(slab.layout.present, local) === 1;
}

/**
 * Writes page `page` of region `r` if nobody claimed it yet, from its saved content already read to
 * offset `at` of the page's slab memory (a scratch page, an arena), checking it against its saved hash
 * first; sets it present and wakes a vCPU waiting on it. Returns true when this call wrote it, false
 * when another copy had.
 */
export function loadSavedPage(r: SavedRegionPages, page: number, at: number): boolean {
  const { slab } = locatePage(r, page);
  const L = slab.layout;
  const rc = kernelsOf(slab).raw.applyScratchPage(L.ram, L.pageSize, slab.pageCount, slab.firstPage, BigInt(r.id) << 32n, page, r.hashes[page],
    L.hashes, L.control + CONTROL_DIGEST, L.present, L.claim, at);
  if (rc === KernelCode.APPLY_ERR_HASH) {
    throw new MemshiftError(ErrorCode.SAVE_FILE_CORRUPT, `page ${page} of region ${r.id} does not match its saved hash (the file was damaged at byte ${r.dataOffset + page * r.pageSize})`, { regionId: r.id, page });
  }
  if (rc < 0) throw new MemshiftError(ErrorCode.SAVE_FILE_CORRUPT, `page ${page} of region ${r.id} could not be loaded (${rc})`, { regionId: r.id, page });
  return rc === 1;
}
