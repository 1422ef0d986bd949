// Initial contents of the simulated guest's RAM, a pure function of (seed, page index) so that the
// source, the reference replay and any test build the same image. `mixed` blends the page kinds a
// real guest has: untouched (zero), high-entropy (random: encrypted or compressed data), text-like
// (a small vocabulary with a skewed word choice, so LZ4 finds repeats), and sparse (mostly zero with
// a few words set, like page tables and fresh heap).

import { fmix64 } from './hash';

@inline export const FILL_ZERO: u32 = 0;
@inline export const FILL_RANDOM: u32 = 1;
@inline export const FILL_MIXED: u32 = 2;

@inline const KIND_ZERO: u32 = 0;
@inline const KIND_RANDOM: u32 = 1;
@inline const KIND_TEXT: u32 = 2;
@inline const KIND_SPARSE: u32 = 3;

/** splitmix64 step over a state held in a global (kernels never allocate). */
let sm: u64 = 0;
@inline function next64(): u64 {
  sm += 0x9E3779B97F4A7C15;
  return fmix64(sm);
}

@inline function pageKind(fill: u32, r: u64): u32 {
  if (fill == FILL_ZERO) return KIND_ZERO;
  if (fill == FILL_RANDOM) return KIND_RANDOM;
  const pct = <u32>(r % 100);
  return pct < 35 ? KIND_ZERO : pct < 55 ? KIND_RANDOM : pct < 85 ? KIND_TEXT : KIND_SPARSE;
}

function fillRandom(dst: usize, pageSize: u32): void {
  const end = dst + pageSize;
  while (dst < end) {
    store<u64>(dst, next64());
    dst += 8;
  }
}

/** Writes one word of the vocabulary for `seed` (2..9 lowercase letters); returns its length. */
@inline function writeWord(dst: usize, end: usize, seed: u64, word: u32): usize {
  let x = fmix64(seed ^ (<u64>word * 0xD6E8FEB86659FD93));
  const len = <usize>(2 + (x & 7));
  let n: usize = 0;
  while (n < len && dst + n < end) {
    x = x * 0x5851F42D4C957F2D + 1;
    store<u8>(dst + n, <u8>(97 + <u32>((x >> 33) % 26)));
    n++;
  }
  return n;
}

function fillText(dst: usize, pageSize: u32, seed: u64): void {
  const end = dst + pageSize;
  let p = dst;
  while (p < end) {
    const r = next64();
    // AND of two uniform 6-bit values favours low word numbers: a few words are common.
    const word = <u32>(r & 63) & <u32>((r >> 6) & 63);
    p += writeWord(p, end, seed, word);
    if (p >= end) break;
    const punct = (r >> 12) & 15;
    store<u8>(p++, punct == 0 ? 46 : punct == 1 ? 10 : 32); // '.', '\n', ' '
  }
}

function fillSparse(dst: usize, pageSize: u32): void {
  const words = pageSize >> 3;
  const n: u32 = 1 + <u32>(next64() & 7);
  for (let i: u32 = 0; i < n; i++) {
    const r = next64();
    store<u64>(dst + (<usize>(<u32>(r >> 40) % words) << 3), r);
  }
}

/**
 * Fills `count` pages at `ptr`, whose first page is page `firstPage` of the guest, for `fill` and
 * `seed`. Zero pages are not written (the memory is fresh). Each page written gets its bit in the
 * bitmap at `dirty` (0: none), as a write by the guest would: a page never written is never read by
 * a first pass either. Not atomic: for memory no vCPU runs on yet. Returns the number of non-zero pages.
 */
export function fillGuestPages(ptr: usize, pageSize: u32, count: u32, firstPage: u32, seed: u64, fill: u32, dirty: usize): u32 {
  let written: u32 = 0;
  for (let i: u32 = 0; i < count; i++) {
    const page = firstPage + i;
    const r = fmix64(seed ^ fmix64(<u64>page + 0x632BE59BD9B4E019));
    const kind = pageKind(fill, r);
    if (kind == KIND_ZERO) continue;
    sm = r;
    const dst = ptr + <usize>i * pageSize;
    if (kind == KIND_RANDOM) fillRandom(dst, pageSize);
    else if (kind == KIND_TEXT) fillText(dst, pageSize, seed);
    else fillSparse(dst, pageSize);
    if (dirty != 0) {
      const word = dirty + (<usize>(i >> 6) << 3);
      store<u64>(word, load<u64>(word) | (<u64>1 << <u64>(i & 63)));
    }
    written++;
  }
  return written;
}
