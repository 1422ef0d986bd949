// Dirty bitmaps over little-endian u64 words (bit i of the map = bit (i & 63) of word (i >> 6)).
// Scans read whole words; every write that can race with another thread (the vCPU marking pages,
// sync-and-clear, merge) is an atomic on a 32-bit half, which is also what JS `Atomics.or` on an
// Int32Array does, so both sides use the same access size.

import { WORD_SHIFT } from './layout';

@inline function halfPtr(map: usize, bit: u32): usize {
  return map + ((<usize>bit >> 5) << 2);
}

/** Sets `bit`; returns 1 when it was clear before. */
export function bitmapSet(map: usize, bit: u32): i32 {
  const mask: u32 = 1 << (bit & 31);
  return i32((atomic.or<u32>(halfPtr(map, bit), mask) & mask) == 0);
}

/** Clears `bit`; returns 1 when it was set before. */
export function bitmapClear(map: usize, bit: u32): i32 {
  const mask: u32 = 1 << (bit & 31);
  return i32((atomic.and<u32>(halfPtr(map, bit), ~mask) & mask) != 0);
}

export function bitmapTest(map: usize, bit: u32): i32 {
  return i32((atomic.load<u32>(halfPtr(map, bit)) >> (bit & 31)) & 1);
}

/** Population count of `words` u64 words. */
export function bitmapCount(map: usize, words: u32): u32 {
  let n: u64 = 0;
  const end = map + (<usize>words << 3);
  while (map < end) {
    n += popcnt<u64>(load<u64>(map));
    map += 8;
  }
  return <u32>n;
}

/** Index of the first set bit at or after `from` and below `bits`, or -1. */
export function bitmapNextSet(map: usize, bits: u32, from: u32): i32 {
  if (from >= bits) return -1;
  let w = from >> WORD_SHIFT;
  const lastWord = (bits - 1) >> WORD_SHIFT;
  let word = load<u64>(map + (<usize>w << 3)) & (<u64>-1 << (from & 63));
  while (true) {
    if (word != 0) {
      const bit = (w << WORD_SHIFT) + <u32>ctz<u64>(word);
      return bit < bits ? <i32>bit : -1;
    }
    if (w == lastWord) return -1;
    w++;
    word = load<u64>(map + (<usize>w << 3));
  }
}

/**
 * Moves every set bit of `dirty` into `snapshot` (OR) and clears it in `dirty`; returns how many
 * bits moved. Safe while other threads keep setting bits in `dirty`: each half is exchanged
 * atomically, so a bit set concurrently is either moved now or left for the next sync, never lost.
 */
export function bitmapSyncAndClear(dirty: usize, snapshot: usize, words: u32): u32 {
  let moved: u64 = 0;
  const end = dirty + (<usize>words << 3);
  while (dirty < end) {
    // A plain load is only a hint that lets clean words skip the locked exchange.
    if (load<u64>(dirty) != 0) {
      const lo = atomic.xchg<u32>(dirty, 0);
      const hi = atomic.xchg<u32>(dirty + 4, 0);
      const bits = (<u64>hi << 32) | <u64>lo;
      store<u64>(snapshot, load<u64>(snapshot) | bits);
      moved += popcnt<u64>(bits);
    }
    dirty += 8;
    snapshot += 8;
  }
  return <u32>moved;
}

/** ORs `words` words of `source` (e.g. a hypervisor's dirty log) into `target`; returns bits newly set. */
export function bitmapMerge(target: usize, source: usize, words: u32): u32 {
  let added: u64 = 0;
  const end = source + (<usize>words << 3);
  while (source < end) {
    const bits = load<u64>(source);
    if (bits != 0) {
      const lo = atomic.or<u32>(target, <u32>bits);
      const hi = atomic.or<u32>(target + 4, <u32>(bits >> 32));
      const before = (<u64>hi << 32) | <u64>lo;
      added += popcnt<u64>(bits & ~before);
    }
    source += 8;
    target += 8;
  }
  return <u32>added;
}

/** Sets bits [0, bits) and clears the tail of the last word (the map is `ceil(bits/64)` words). */
export function bitmapFill(map: usize, bits: u32): void {
  const full = bits >> WORD_SHIFT;
  memory.fill(map, 0xff, <usize>full << 3);
  const rest = bits & 63;
  if (rest != 0) store<u64>(map + (<usize>full << 3), (<u64>1 << rest) - 1);
}

/**
 * Clears in `target` every bit set in `mask` (`words` words each); returns the bits set in `mask`. Not
 * atomic: only for maps no other thread writes at the time.
 */
export function bitmapAndNot(target: usize, mask: usize, words: u32): u32 {
  let n: u64 = 0;
  const end = mask + (<usize>words << 3);
  while (mask < end) {
    const bits = load<u64>(mask);
    if (bits != 0) {
      store<u64>(target, load<u64>(target) & ~bits);
      n += popcnt<u64>(bits);
    }
    mask += 8;
    target += 8;
  }
  return <u32>n;
}

/** Clears `words` words. Not atomic: only for maps no other thread writes at the time. */
export function bitmapZero(map: usize, words: u32): void {
  memory.fill(map, 0, <usize>words << 3);
}
