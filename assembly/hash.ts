// mxh64: the page hash. Thirty-two 32-bit multiply-xorshift lanes, one per u32 word of each 128-byte
// block (lane j takes words j, j+32, j+64, ...), folded into 64 bits by a murmur3-style finaliser.
// Chosen for speed: the SIMD build maps four lanes onto one v128, and eight independent v128 chains
// hide the multiply's latency (`npm run bench -- --only kernels`: 16 lanes ran at 0.73× memcpy here,
// 32 at 1.35×; xxh64 in WASM reaches ~5 GB/s). It detects change and corruption, it is not keyed and not cryptographic.
// Every step of a lane is a bijection of its state, so a single changed word always changes the
// hash; scalar and SIMD builds return identical values (test/assembly/hash). Protocol version 2
// (version 1 had 16 lanes over 64-byte blocks).
//
//   lane_j  = 0x243F6A88 + j * 0x9E3779B9                    (initial state, j = 0..31)
//   lane_j  = (lane_j ^ word) * 0x9E3779B1;  lane_j ^= lane_j >>> 15      (per word)
//   h       = len * 0x9E3779B97F4A7C15
//   h       = rotl64((h ^ lane_j) * 0xC2B2AE3D27D4EB4F, 31)   for j = 0..31
//   result  = fmix64(h)

/** Bytes per block: 32 lanes of one u32 word. Hashed lengths are multiples of it (pages are ≥ 4 KiB). */
@inline const HASH_BLOCK: usize = 128;

@inline const LANE_MUL: u32 = 0x9E3779B1;
@inline const GOLDEN64: u64 = 0x9E3779B97F4A7C15;
@inline const FOLD_MUL: u64 = 0xC2B2AE3D27D4EB4F;

@inline export function fmix64(h: u64): u64 {
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCD;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53;
  h ^= h >> 33;
  return h;
}

@inline function lane(x: u32, w: u32): u32 {
  x = (x ^ w) * LANE_MUL;
  return x ^ (x >> 15);
}

@inline function vlane(x: v128, w: v128, m: v128): v128 {
  x = i32x4.mul(v128.xor(x, w), m);
  return v128.xor(x, i32x4.shr_u(x, 15));
}

@inline function fold(h: u64, l: u32): u64 {
  return rotl<u64>((h ^ <u64>l) * FOLD_MUL, 31);
}

@inline function foldV(h: u64, v: v128): u64 {
  h = fold(h, i32x4.extract_lane(v, 0));
  h = fold(h, i32x4.extract_lane(v, 1));
  h = fold(h, i32x4.extract_lane(v, 2));
  return fold(h, i32x4.extract_lane(v, 3));
}

/**
 * Scalar half of mxh64: sixteen lanes starting at state `first` (+ j × 0x9E3779B9) over the 64-byte
 * halves at `p`, `p` + 128, … below `end`, folded into `h` in lane order.
 */
@inline function halfBlocks(h: u64, p: usize, end: usize, first: u32): u64 {
  let l0: u32 = first, l1: u32 = first + 0x9E3779B9, l2: u32 = first + 0x3C6EF372, l3: u32 = first + 0xDAA66D2B;
  let l4: u32 = first + 0x78DDE6E4, l5: u32 = first + 0x1715609D, l6: u32 = first + 0xB54CDA56, l7: u32 = first + 0x5384540F;
  let l8: u32 = first + 0xF1BBCDC8, l9: u32 = first + 0x8FF34781, l10: u32 = first + 0x2E2AC13A, l11: u32 = first + 0xCC623AF3;
  let l12: u32 = first + 0x6A99B4AC, l13: u32 = first + 0x08D12E65, l14: u32 = first + 0xA708A81E, l15: u32 = first + 0x454021D7;
  for (; p < end; p += HASH_BLOCK) {
    l0 = lane(l0, load<u32>(p)); l1 = lane(l1, load<u32>(p, 4));
    l2 = lane(l2, load<u32>(p, 8)); l3 = lane(l3, load<u32>(p, 12));
    l4 = lane(l4, load<u32>(p, 16)); l5 = lane(l5, load<u32>(p, 20));
    l6 = lane(l6, load<u32>(p, 24)); l7 = lane(l7, load<u32>(p, 28));
    l8 = lane(l8, load<u32>(p, 32)); l9 = lane(l9, load<u32>(p, 36));
    l10 = lane(l10, load<u32>(p, 40)); l11 = lane(l11, load<u32>(p, 44));
    l12 = lane(l12, load<u32>(p, 48)); l13 = lane(l13, load<u32>(p, 52));
    l14 = lane(l14, load<u32>(p, 56)); l15 = lane(l15, load<u32>(p, 60));
  }
  h = fold(h, l0); h = fold(h, l1); h = fold(h, l2); h = fold(h, l3);
  h = fold(h, l4); h = fold(h, l5); h = fold(h, l6); h = fold(h, l7);
  h = fold(h, l8); h = fold(h, l9); h = fold(h, l10); h = fold(h, l11);
  h = fold(h, l12); h = fold(h, l13); h = fold(h, l14); return fold(h, l15);
}

/**
 * Hashes `len` bytes (a multiple of HASH_BLOCK) at `src`; when `dst` is not 0 it also copies them there in
 * the same pass, hashing exactly the bytes it stored. That makes the copy of a page that the guest
 * is writing concurrently self-consistent with its hash.
 */
@inline function hashBlocks(dst: usize, src: usize, len: usize): u64 {
  const end = src + len;
  let h: u64 = <u64>len * GOLDEN64;
  if (ASC_FEATURE_SIMD) {
    const m = i32x4.splat(LANE_MUL);
    let a = i32x4(<i32>0x243F6A88, <i32>0xC276E441, <i32>0x60AE5DFA, <i32>0xFEE5D7B3);
    let b = i32x4(<i32>0x9D1D516C, <i32>0x3B54CB25, <i32>0xD98C44DE, <i32>0x77C3BE97);
    let c = i32x4(<i32>0x15FB3850, <i32>0xB432B209, <i32>0x526A2BC2, <i32>0xF0A1A57B);
    let d = i32x4(<i32>0x8ED91F34, <i32>0x2D1098ED, <i32>0xCB4812A6, <i32>0x697F8C5F);
    let e = i32x4(<i32>0x07B70618, <i32>0xA5EE7FD1, <i32>0x4425F98A, <i32>0xE25D7343);
    let f = i32x4(<i32>0x8094ECFC, <i32>0x1ECC66B5, <i32>0xBD03E06E, <i32>0x5B3B5A27);
    let g = i32x4(<i32>0xF972D3E0, <i32>0x97AA4D99, <i32>0x35E1C752, <i32>0xD419410B);
    let k = i32x4(<i32>0x7250BAC4, <i32>0x1088347D, <i32>0xAEBFAE36, <i32>0x4CF727EF);
    while (src < end) {
      const wa = v128.load(src), wb = v128.load(src, 16), wc = v128.load(src, 32), wd = v128.load(src, 48);
      const we = v128.load(src, 64), wf = v128.load(src, 80), wg = v128.load(src, 96), wk = v128.load(src, 112);
      if (dst != 0) {
        v128.store(dst, wa); v128.store(dst, wb, 16); v128.store(dst, wc, 32); v128.store(dst, wd, 48);
        v128.store(dst, we, 64); v128.store(dst, wf, 80); v128.store(dst, wg, 96); v128.store(dst, wk, 112);
        dst += HASH_BLOCK;
      }
      a = vlane(a, wa, m); b = vlane(b, wb, m); c = vlane(c, wc, m); d = vlane(d, wd, m);
      e = vlane(e, we, m); f = vlane(f, wf, m); g = vlane(g, wg, m); k = vlane(k, wk, m);
      src += HASH_BLOCK;
    }
    h = foldV(h, a); h = foldV(h, b); h = foldV(h, c); h = foldV(h, d);
    h = foldV(h, e); h = foldV(h, f); h = foldV(h, g); h = foldV(h, k);
  } else {
    // Lanes are independent, so the scalar build runs lanes 0..15 over the first half of every block,
    // then lanes 16..31 over the second half, and folds them in lane order.
    let p = src;
    if (dst != 0) {
      memory.copy(dst, src, len);
      // Hash what was stored, not a second read of a source the guest may be writing.
      p = dst;
    }
    h = halfBlocks(h, p, p + len, 0x243F6A88);
    h = halfBlocks(h, p + 64, p + len, 0x07B70618);
  }
  return fmix64(h);
}

/** mxh64 of `len` bytes at `ptr` (`len` a multiple of 128). */
export function hashPage(ptr: usize, len: usize): u64 {
  return hashBlocks(0, ptr, len);
}

/** Copies `len` bytes from `src` to `dst` and returns the mxh64 of the bytes stored. */
export function copyAndHash(dst: usize, src: usize, len: usize): u64 {
  return hashBlocks(dst, src, len);
}

/** Writes the mxh64 of each of `count` pages at `ptr` to consecutive u64s at `out`. */
export function hashPages(ptr: usize, pageSize: usize, count: u32, out: usize): void {
  for (let i: u32 = 0; i < count; i++) {
    store<u64>(out + (<usize>i << 3), hashBlocks(0, ptr + <usize>i * pageSize, pageSize));
  }
}

// ---- memory digest -------------------------------------------------------------------------------
// digest(region) = XOR over pages p of  contribution(key(p), hash(p)),
//   contribution(k, h) = fmix64(h ^ K(k)) ^ fmix64(Z ^ K(k)),  K(k) = k * GOLDEN64 + 1,
//   key = regionId << 32 | page,  Z = hash of the zero page.
// A zero page contributes nothing, so fresh memory has digest 0, and a page whose hash changes from
// a to b updates the digest by fmix64(a ^ K) ^ fmix64(b ^ K): both hosts keep it incrementally.

@inline function pageKey(key: u64): u64 {
  return key * GOLDEN64 + 1;
}

/** The digest change when page `key` goes from hash `before` to hash `after`. */
@inline export function digestDelta(key: u64, before: u64, after: u64): u64 {
  const k = pageKey(key);
  return fmix64(before ^ k) ^ fmix64(after ^ k);
}

/** Records that page `page` (slab-local index into `hashes`) now hashes to `hash`; XORs the change
 * into the u64 at `digestPtr` atomically and returns it. */
export function recordPageHash(hashes: usize, page: u32, key: u64, hash: u64, digestPtr: usize): u64 {
  const delta = storePageHash(hashes, page, key, hash);
  if (delta != 0) atomic.xor<u64>(digestPtr, delta);
  return delta;
}

/**
 * Stores page `page`'s new hash and returns the digest change, for a caller that XORs a batch's changes
 * into the digest once: an atomic per page is a full barrier that waits for the page copy's stores to
 * drain, which serialises copying with hashing the next page (measured: most of apply's own time).
 */
@inline export function storePageHash(hashes: usize, page: u32, key: u64, hash: u64): u64 {
  const slot = hashes + (<usize>page << 3);
  const delta = digestDelta(key, load<u64>(slot), hash);
  store<u64>(slot, hash);
  return delta;
}

/** Stores `value` in `count` consecutive u64s (initialises a hash table to the zero-page hash). */
export function fillU64(ptr: usize, count: u32, value: u64): void {
  const end = ptr + (<usize>count << 3);
  while (ptr < end) {
    store<u64>(ptr, value);
    ptr += 8;
  }
}

/** XOR-fold of `count` u64s (combines per-page hashes of a region for a full recomputation). */
export function digestOfHashes(hashes: usize, count: u32, keyBase: u64, zeroHash: u64): u64 {
  let d: u64 = 0;
  for (let i: u32 = 0; i < count; i++) {
    d ^= digestDelta(keyBase + i, zeroHash, load<u64>(hashes + (<usize>i << 3)));
  }
  return d;
}
