// Where everything lives inside one slab's shared memory. JS owns this layout; kernels get every
// address as an argument. All bitmaps are ceil(pages/64) u64 words; slab page counts are multiples
// of 64 (except a region's last slab), so a task that covers whole words never shares a word.
//
//   0 ─────────── kernel reserved (64 KiB: the kernels' own statics)
//   control ───── 256 B: u64 digest at +0 (XOR of page contributions, see assembly/hash.ts)
//   dirty ─────── bitmap: set by the vCPU on each write; sync-and-clear moves it to `snapshot`
//   snapshot ──── bitmap: pages still to send this iteration (consumed by the encoder)
//   present ───── bitmap: destination pages that hold received data (post-copy waits on it)
//   claim ─────── bitmap: post-copy, first writer of a page wins
//   written ───── bitmap: source pages ever moved out of `dirty` (so written since allocation)
//   hashes ────── u64 per page: mxh64 of the page as last sent (source) or applied (destination)
//   scratch ───── SCRATCH_AGENTS slots of (2 pages + 64 B result): one per thread using kernels
//   arena ─────── frame buffers (source: encoder output; destination: receive ring)
//   cacheTags ─── u32 per XBZRLE cache slot (slab page + 1; 0 empty; 0xffffffff busy)
//   cache ─────── XBZRLE cache slots (pageSize each), last-sent content
//   ram ───────── the guest pages, 64 KiB aligned; for a file-backed region (its pages live in a file,
//                 read and written at their offsets) one window of `windowPages` pages per scratch agent,
//                 where a thread reads the pages it encodes or writes the pages it applied
//
// Slabs exist because a wasm32 memory stops at 4 GiB: a larger region is several slabs, each with
// its own kernel instance.

import { invalidArgument } from '../errors.js';
import { KERNEL_RESERVED_BYTES, WASM_PAGE_BYTES } from '../wasm/kernels.js';

/** Threads that may use kernels on one slab at once, each with its own scratch slot. */
export const SCRATCH_AGENTS = 16;
/** Largest wasm32 memory. */
export const MAX_MEMORY_BYTES = 65536 * WASM_PAGE_BYTES;
export const CONTROL_BYTES = 256;
/** Offset of the u64 digest accumulator within the control block. */
export const CONTROL_DIGEST = 0;
/** Smallest and largest page sizes a region may have. */
export const MIN_PAGE_SIZE = 4096;
export const MAX_PAGE_SIZE = 65536;

export interface SlabLayout {
  readonly pageSize: number;
  readonly pageCount: number;
  /** u64 words per bitmap. */
  readonly bitmapWords: number;
  readonly control: number;
  readonly dirty: number;
  readonly snapshot: number;
  readonly present: number;
  /** Source: pages ever synced out of `dirty`, i.e. written at some point since the slab was allocated. */
  readonly written: number;
  readonly claim: number;
  readonly hashes: number;
  readonly scratch: number;
  readonly scratchSlotBytes: number;
  readonly arena: number;
  readonly arenaBytes: number;
  readonly cacheTags: number;
  readonly cache: number;
  readonly cacheSlots: number;
  readonly ram: number;
  readonly ramBytes: number;
  /** File-backed slab: pages per agent's window in `ram` (0: `ram` holds every page of the slab). */
  readonly windowPages: number;
  /** Whole memory size, a multiple of 64 KiB. */
  readonly totalBytes: number;
}

export interface SlabLayoutOptions {
  /** Bytes of frame arena (0 for a slab that never sends or receives frames directly). */
  arenaBytes: number;
  /** XBZRLE cache slots (0 = no cache). */
  cacheSlots: number;
  /** File-backed slab: pages per agent's window (0 or absent: the slab holds its pages). */
  windowPages?: number;
}

const align = (n: number, a: number): number => Math.ceil(n / a) * a;

export function isValidPageSize(pageSize: number): boolean {
  return Number.isInteger(pageSize) && pageSize >= MIN_PAGE_SIZE && pageSize <= MAX_PAGE_SIZE &&
    (pageSize & (pageSize - 1)) === 0;
}

/** Computes a slab's layout; throws MS_ERR_INVALID_ARGUMENT when it cannot fit in one wasm32 memory. */
export function computeSlabLayout(pageSize: number, pageCount: number, options: SlabLayoutOptions): SlabLayout {
  if (!isValidPageSize(pageSize)) throw invalidArgument('pageSize', `must be a power of two in [${MIN_PAGE_SIZE}, ${MAX_PAGE_SIZE}]`, pageSize);
  if (!Number.isInteger(pageCount) || pageCount <= 0) throw invalidArgument('pageCount', 'must be a positive integer', pageCount);
  if (!Number.isInteger(options.arenaBytes) || options.arenaBytes < 0) throw invalidArgument('arenaBytes', 'must be a non-negative integer', options.arenaBytes);
  if (!Number.isInteger(options.cacheSlots) || options.cacheSlots < 0) throw invalidArgument('cacheSlots', 'must be a non-negative integer', options.cacheSlots);
  const bitmapWords = Math.ceil(pageCount / 64);
  const bitmapBytes = bitmapWords * 8;
  let at = KERNEL_RESERVED_BYTES;
  const take = (bytes: number, alignment = 64): number => {
    at = align(at, alignment);
    const offset = at;
    at += bytes;
    return offset;
  };
  const control = take(CONTROL_BYTES);
  const dirty = take(bitmapBytes);
  const snapshot = take(bitmapBytes);
  const present = take(bitmapBytes);
  const claim = take(bitmapBytes);
  const written = take(bitmapBytes);
  const hashes = take(pageCount * 8);
  const scratchSlotBytes = 2 * pageSize + 64;
  const scratch = take(SCRATCH_AGENTS * scratchSlotBytes, pageSize);
  const arena = take(options.arenaBytes, 4096);
  const cacheTags = take(options.cacheSlots * 4);
  const cache = take(options.cacheSlots * pageSize, pageSize);
  const windowPages = options.windowPages ?? 0;
  if (!Number.isInteger(windowPages) || windowPages < 0) throw invalidArgument('windowPages', 'must be a non-negative integer', windowPages);
  const ramBytes = windowPages > 0 ? SCRATCH_AGENTS * windowPages * pageSize : pageCount * pageSize;
  const ram = take(ramBytes, WASM_PAGE_BYTES);
  const totalBytes = align(at, WASM_PAGE_BYTES);
  if (totalBytes > MAX_MEMORY_BYTES) {
    throw invalidArgument('slab', `of ${pageCount} pages of ${pageSize} B plus bookkeeping needs ${totalBytes} B, more than one wasm32 memory (4 GiB)`);
  }
  return {
    pageSize, pageCount, bitmapWords, control, dirty, snapshot, present, claim, written, hashes,
    scratch, scratchSlotBytes, arena, arenaBytes: options.arenaBytes, cacheTags, cache,
    cacheSlots: options.cacheSlots, ram, ramBytes, windowPages, totalBytes,
  };
}

/** File-backed slab: offset of `agent`'s window (windowPages pages) in the slab's memory. */
export function windowOf(layout: SlabLayout, agent: number): number {
  if (layout.windowPages === 0) throw invalidArgument('slab', 'holds its pages: it has no windows');
  if (!Number.isInteger(agent) || agent < 0 || agent >= SCRATCH_AGENTS) throw invalidArgument('agent', `must be in [0, ${SCRATCH_AGENTS})`, agent);
  return layout.ram + agent * layout.windowPages * layout.pageSize;
}

/** Scratch slot `agent`: two pages, then 64 bytes of kernel result words. */
export function scratchSlot(layout: SlabLayout, agent: number): { page: number; page2: number; result: number } {
  if (!Number.isInteger(agent) || agent < 0 || agent >= SCRATCH_AGENTS) throw invalidArgument('agent', `must be in [0, ${SCRATCH_AGENTS})`, agent);
  const base = layout.scratch + agent * layout.scratchSlotBytes;
  return { page: base, page2: base + layout.pageSize, result: base + 2 * layout.pageSize };
}
