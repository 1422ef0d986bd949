// Hash-scan: the dirty log of memory nobody logs writes to (a file-backed region, whose writer is
// another process). A run of pages just read from the file is hashed, and a page whose hash differs
// from the hash it was last sent with is marked dirty. A write that lands after the read is found by
// the next scan; the scan that follows the pause sees the final content, so nothing is missed.

import { hashPage } from './hash';

/**
 * Hashes `count` pages at `pages` (the run's copy) and sets the bit of slab page `first + i` in
 * `dirty` (atomic OR, a 32-bit word at a time) where the hash differs from `hashes[first + i]`.
 * Returns how many pages it marked.
 */
export function markChangedPages(pages: usize, pageSize: u32, count: u32, first: u32, hashes: usize, dirty: usize): u32 {
  let marked: u32 = 0, word: u32 = 0xffffffff, bits: u32 = 0;
  for (let i: u32 = 0; i < count; i++) {
    const page = first + i;
    if (hashPage(pages + <usize>i * pageSize, pageSize) == load<u64>(hashes + (<usize>page << 3))) continue;
    if (page >> 5 != word) {
      if (bits != 0) atomic.or<u32>(dirty + (<usize>word << 2), bits);
      word = page >> 5;
      bits = 0;
    }
    bits |= <u32>1 << (page & 31);
    marked++;
  }
  if (bits != 0) atomic.or<u32>(dirty + (<usize>word << 2), bits);
  return marked;
}
