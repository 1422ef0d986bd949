// MISSING_PAGES bitmaps, both ways. At a post-copy switchover the source names the pages it has not
// sent (its snapshot bitmaps); after a lost link, a destination asked to recover names the pages it
// still lacks (the complement of its present bitmaps), and the source takes exactly those as the pages
// left to push. A region's bitmap is its slabs' bitmaps concatenated (slabs hold whole bitmap words,
// page counts being multiples of 64 but for the last).
//
//   source snapshot ─► frames ─► destination present/claim cleared     (switchover)
//   destination ¬present ─► frames ─► source snapshot set             (recovery)
//
// Disks (capability POSTCOPY_BLOCKS) use the same frames at the switchover, with region
// DISK_REGION_BASE + disk and blocks for pages: the source's dirty bitmap is the blocks it has not sent
// since they were last written.

import { ErrorCode, MemshiftError } from '../errors.js';
import { kernelsOf, type Slab } from '../memory/slab.js';
import { scratchSlot } from '../memory/slab-layout.js';
import { ScratchAgent } from '../memory/scratch-agents.js';
import type { Region } from '../memory/types.js';
import { DISK_REGION_BASE, Limits } from '../protocol/constants.js';
import { encodeMissingPages, type MissingPages } from '../protocol/control.js';
import { viewsOf } from '../wasm/views.js';

/** MISSING_PAGES frames for a region's pages marked in the slabs' `snapshot` bitmaps (still to send). */
export function unsentPagesFrames(region: Region, slabs: readonly Slab[]): { frames: Uint8Array[]; pages: number } {
  // Counted in the kernels: this runs paused, once, where a JS loop would run interpreted.
  let pages = 0;
  for (const s of slabs) pages += kernelsOf(s).raw.bitmapCount(s.layout.snapshot, s.layout.bitmapWords) >>> 0;
  const bytes = joinBitmaps(region, slabs, (s, u8) => u8.subarray(s.layout.snapshot, s.layout.snapshot + s.layout.bitmapWords * 8));
  return bitmapFrames(region.id, region.pageCount, bytes, Limits.MAX_MISSING_BITMAP_BYTES * 8, pages);
}

/**
 * Pages per MISSING_PAGES frame towards the source, which reads control frames only (bodies of at most
 * MAX_CONTROL_BODY_BYTES): a 16-byte header and whole bitmap words.
 */
export const CONTROL_FRAME_PAGES = Math.floor((Limits.MAX_CONTROL_BODY_BYTES - 16) / 8) * 64;

/** MISSING_PAGES frames for a region's pages whose `present` bit is clear (not arrived here). */
export function absentPagesFrames(region: Region, slabs: readonly Slab[]): { frames: Uint8Array[]; pages: number } {
  const bytes = joinBitmaps(region, slabs, (s, u8) => {
    const bytes = u8.slice(s.layout.present, s.layout.present + s.layout.bitmapWords * 8);
    for (let i = 0; i < bytes.length; i++) bytes[i] = ~bytes[i] & 0xff;
    // Bits past the slab's last page are not pages: never name them.
    for (let bit = s.pageCount; bit < bytes.length * 8; bit++) bytes[bit >>> 3] &= ~(1 << (bit & 7));
    return bytes;
  });
  return bitmapFrames(region.id, region.pageCount, bytes, CONTROL_FRAME_PAGES, countBytes(bytes));
}

/** A region's bitmap: its slabs' bitmaps (as `bitmapOf` gives each) concatenated. */
function joinBitmaps(region: Region, slabs: readonly Slab[], bitmapOf: (s: Slab, u8: Uint8Array) => Uint8Array): Uint8Array {
  const bytes = new Uint8Array(Math.ceil(region.pageCount / 64) * 8);
  let at = 0;
  for (const s of slabs) {
    bytes.set(bitmapOf(s, viewsOf(s.memory).u8), at);
    at += s.layout.bitmapWords * 8;
  }
  return bytes;
}

/** MISSING_PAGES frames for a disk's blocks marked in `dirty` (the source's dirty bitmap taken paused, or a destination's absent blocks at a recovery). */
export function unsentBlocksFrames(disk: number, dirty: Int32Array, blocks: number): { frames: Uint8Array[]; blocks: number } {
  const bytes = new Uint8Array(Math.ceil(blocks / 64) * 8);
  bytes.set(new Uint8Array(dirty.buffer, dirty.byteOffset, Math.min(dirty.byteLength, bytes.length)));
  const m = bitmapFrames(DISK_REGION_BASE + disk, blocks, bytes, Limits.MAX_MISSING_BITMAP_BYTES * 8, countBytes(bytes));
  return { frames: m.frames, blocks: m.pages };
}

/** A bitmap of `pageCount` bits (whole u64 words), `pages` of them set, as MISSING_PAGES frames of at most `framePages` each. */
function bitmapFrames(regionId: number, pageCount: number, bytes: Uint8Array, framePages: number, pages: number): { frames: Uint8Array[]; pages: number } {
  const frames: Uint8Array[] = [];
  for (let first = 0; first < pageCount; first += framePages) {
    const count = Math.min(framePages, pageCount - first);
    const bitmap = bytes.slice(first / 8, first / 8 + Math.ceil(count / 64) * 8);
    frames.push(encodeMissingPages({ regionId, firstPage: first, pageCount: count, bitmap }));
  }
  return { frames, pages };
}

/**
 * Calls `fn` for each non-zero 32-bit half of `m`'s bitmap with the slab it falls in and the half's
 * index in that slab's bitmaps, after checking every bit names a page of the region.
 */
export function forEachMissingHalf(region: Region, slabs: readonly Slab[], m: MissingPages, fn: (slab: Slab, half: number, bits: number) => void): void {
  const perSlab = slabs[0].pageCount;
  forEachHalf(region.pageCount, `region ${region.id}`, m, (page, bits) => {
    const slab = slabs[Math.floor(page / perSlab)];
    fn(slab, (page - slab.firstPage) >>> 5, bits);
  });
}

/** Checks that every bit of `m` names one of `pageCount` pages (`what` names them in the error). */
function checkNamed(pageCount: number, what: string, m: MissingPages): void {
  // What decodeMissingPages holds a frame to, again: the kernels below write where these say.
  if (m.firstPage % 64 !== 0 || m.bitmap.length !== Math.ceil(m.pageCount / 64) * 8) {
    throw new MemshiftError(ErrorCode.FRAME_MALFORMED, `MISSING_PAGES: first page ${m.firstPage} and a bitmap of ${m.bitmap.length} bytes for ${m.pageCount} pages (whole words from a multiple of 64)`);
  }
  if (m.firstPage + m.pageCount > pageCount) {
    throw new MemshiftError(ErrorCode.BATCH_PAGE_RANGE, `MISSING_PAGES names pages up to ${m.firstPage + m.pageCount}, ${what} has ${pageCount}`);
  }
  // The bitmap is whole words: only the last may hold bits past its pages.
  for (let bit = m.pageCount; bit < m.bitmap.length * 8; bit++) {
    if ((m.bitmap[bit >>> 3] & (1 << (bit & 7))) !== 0) throw new MemshiftError(ErrorCode.FRAME_MALFORMED, `MISSING_PAGES has bits past its ${m.pageCount} pages`);
  }
}

/** Calls `fn` for each non-zero 32-bit half of `m`'s bitmap with its first page, after checking every bit names one of `pageCount` pages. */
export function forEachHalf(pageCount: number, what: string, m: MissingPages, fn: (page: number, bits: number) => void): void {
  checkNamed(pageCount, what, m);
  // 32-bit halves: bit i of half h is page firstPage + 32h + i.
  const halves = new Uint32Array(m.bitmap.buffer.slice(m.bitmap.byteOffset, m.bitmap.byteOffset + m.bitmap.byteLength));
  for (let h = 0; h < halves.length; h++) {
    if (halves[h] !== 0) fn(m.firstPage + h * 32, halves[h]);
  }
}

/**
 * Clears the pages `m` names in their slabs' `present` and `claim` bitmaps (at a post-copy switchover:
 * they are still on the source); returns how many it names. In the kernels, through the main thread's
 * scratch: this runs once per migration with the guest paused, and a JS loop's first run is interpreted
 * (2–4 ms for a 256 MiB guest's 2048 words, most of the switchover's downtime).
 */
export function clearMissingPages(region: Region, slabs: readonly Slab[], m: MissingPages): number {
  checkNamed(region.pageCount, `region ${region.id}`, m);
  const perSlab = slabs[0].pageCount;
  const words = m.bitmap.length / 8;
  let named = 0;
  for (let w = 0; w < words;) {
    const page = m.firstPage + w * 64;
    const slab = slabs[Math.floor(page / perSlab)];
    const at = (page - slab.firstPage) / 64;
    const scratch = scratchSlot(slab.layout, ScratchAgent.MAIN).page;
    const n = Math.min(words - w, slab.layout.bitmapWords - at, (2 * slab.layout.pageSize) / 8);
    viewsOf(slab.memory).u8.set(m.bitmap.subarray(w * 8, (w + n) * 8), scratch);
    const k = kernelsOf(slab).raw;
    named += k.bitmapAndNot(slab.layout.present + at * 8, scratch, n) >>> 0;
    k.bitmapAndNot(slab.layout.claim + at * 8, scratch, n);
    w += n;
  }
  return named;
}

/** Clears every snapshot bitmap: nothing is left to send until `markUnsent` names pages. */
export function clearSnapshots(slabs: readonly Slab[]): void {
  for (const s of slabs) kernelsOf(s).raw.bitmapZero(s.layout.snapshot, s.layout.bitmapWords);
}

/** Marks the pages `m` names as still to send (snapshot bits); returns how many were not marked yet. */
export function markUnsent(region: Region, slabs: readonly Slab[], m: MissingPages): number {
  let added = 0;
  forEachMissingHalf(region, slabs, m, (slab, half, bits) => {
    const { u32 } = viewsOf(slab.memory);
    const at = (slab.layout.snapshot >>> 2) + half;
    added += popcount32(bits & ~u32[at]);
    u32[at] |= bits;
  });
  return added;
}

/** The bits set in a bitmap of whole 32-bit words, as bytes (a JS loop: a recovery's pages, and disks' blocks, which a post-copy switchover counts paused). */
function countBytes(bytes: Uint8Array): number {
  return countBits(new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2));
}

/** The bits set in a bitmap of 32-bit words. */
export function countBits(words: Int32Array | Uint32Array): number {
  let n = 0;
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) n += popcount32(words[i]);
  return n;
}

export function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}
