// Zero-page detection. A page of all zero bytes travels as a one-byte encoding and costs the
// destination nothing on its first pass, so this runs on every page sent and must be cheaper than
// a copy: SIMD ORs 64 bytes per step and fails fast on the first non-zero block.

import { BLOCK_BYTES } from './layout';

@inline function blockIsZero(ptr: usize): bool {
  if (ASC_FEATURE_SIMD) {
    const v = v128.or(v128.or(v128.load(ptr), v128.load(ptr, 16)), v128.or(v128.load(ptr, 32), v128.load(ptr, 48)));
    return !v128.any_true(v);
  } else {
    return (load<u64>(ptr) | load<u64>(ptr, 8) | load<u64>(ptr, 16) | load<u64>(ptr, 24) |
      load<u64>(ptr, 32) | load<u64>(ptr, 40) | load<u64>(ptr, 48) | load<u64>(ptr, 56)) == 0;
  }
}

/** 1 when the `len` bytes at `ptr` are all zero. `len` is a multiple of 64. */
export function isZeroPage(ptr: usize, len: usize): i32 {
  const end = ptr + len;
  // The first block decides for almost every non-zero page; a loop of 4 blocks hides latency after.
  while (ptr < end) {
    if (!blockIsZero(ptr)) return 0;
    ptr += BLOCK_BYTES;
  }
  return 1;
}

/**
 * Classifies `count` consecutive pages at `ptr`: bit i of `outMap` is set when page i is zero (the
 * map is written whole, ceil(count/64) words, not atomically). Returns the number of zero pages.
 */
export function scanZeroPages(ptr: usize, pageSize: usize, count: u32, outMap: usize): u32 {
  let zeros: u32 = 0;
  let word: u64 = 0;
  for (let i: u32 = 0; i < count; i++) {
    if (isZeroPage(ptr + <usize>i * pageSize, pageSize)) {
      word |= <u64>1 << (i & 63);
      zeros++;
    }
    if ((i & 63) == 63) {
      store<u64>(outMap + (<usize>(i >> 6) << 3), word);
      word = 0;
    }
  }
  if ((count & 63) != 0) store<u64>(outMap + (<usize>(count >> 6) << 3), word);
  return zeros;
}
