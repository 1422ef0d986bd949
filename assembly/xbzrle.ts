// XOR-delta ("XBZRLE") of a page against its previous version, after QEMU migration/xbzrle.c.
//
//   delta := pair*
//   pair  := zrun:uleb128  nzrun:uleb128  byte{nzrun}
//
// zrun counts unchanged bytes to skip, nzrun changed bytes that follow verbatim (the new values,
// not the XOR). Rules checked by the decoder: nzrun >= 1; zrun >= 1 except in the first pair;
// the runs never pass the page end; the unchanged tail of the page is implicit, so an empty delta
// means "no change". Encoding is greedy and deterministic, so a reference encoder can compare
// byte for byte. Decoding validates the whole delta before it writes a byte of the page.

import { ulebRead, ulebSize, ulebWrite } from './uleb128';

/** Delta is larger than the caller's limit: send the page raw. */
export const XBZRLE_OVERFLOW: i32 = -1;
/** Input ends inside a number or a run of bytes. */
export const XBZRLE_ERR_TRUNCATED: i32 = -1;
/** A run passes the end of the page. */
export const XBZRLE_ERR_OVERRUN: i32 = -2;
/** A run length is over-long or wider than 21 bits. */
export const XBZRLE_ERR_VARINT: i32 = -3;
/** A zero-length run where the grammar needs at least one byte. */
export const XBZRLE_ERR_EMPTY_RUN: i32 = -4;

/** Copies `n` bytes; runs of changed bytes are mostly a few bytes long, where a call to memory.copy costs more than the loop. */
@inline function copySmall(dst: usize, src: usize, n: usize): void {
  if (n <= 16) {
    for (let k: usize = 0; k < n; k++) store<u8>(dst + k, load<u8>(src + k));
  } else {
    memory.copy(dst, src, n);
  }
}

/**
 * Length of the run of equal bytes at `i` (stops at `len`). Eight bytes a step with a trailing-zero
 * count to find the first difference: measured faster here than 16-byte SIMD compares and bitmasks,
 * because runs between changes are short (a step rarely skips 64 bytes).
 */
@inline function equalRun(a: usize, b: usize, i: usize, len: usize): usize {
  const start = i;
  while (i + 8 <= len) {
    const x = load<u64>(a + i) ^ load<u64>(b + i);
    if (x != 0) return i + <usize>(ctz<u64>(x) >> 3) - start;
    i += 8;
  }
  while (i < len && load<u8>(a + i) == load<u8>(b + i)) i++;
  return i - start;
}

/** Length of the run of differing bytes at `i` (stops at `len`). */
@inline function changedRun(a: usize, b: usize, i: usize, len: usize): usize {
  const start = i;
  if (ASC_FEATURE_SIMD) {
    while (i + 16 <= len) {
      const eq = i8x16.bitmask(i8x16.eq(v128.load(a + i), v128.load(b + i)));
      if (eq != 0) return i + <usize>ctz<u32>(eq) - start;
      i += 16;
    }
  }
  while (i < len && load<u8>(a + i) != load<u8>(b + i)) i++;
  return i - start;
}

/**
 * Encodes `cur` against `prev` (both `len` bytes) into `out`. Returns the delta length, or
 * XBZRLE_OVERFLOW as soon as it would exceed `limit` bytes.
 */
export function xorDeltaEncode(prev: usize, cur: usize, len: usize, out: usize, limit: usize): i32 {
  let i: usize = 0;
  let d: usize = 0;
  while (i < len) {
    const zrun = equalRun(prev, cur, i, len);
    i += zrun;
    if (i == len) break;
    const nzrun = changedRun(prev, cur, i, len);
    const need = ulebSize(<u32>zrun) + ulebSize(<u32>nzrun) + nzrun;
    if (d + need > limit) return XBZRLE_OVERFLOW;
    d += ulebWrite(out + d, <u32>zrun);
    d += ulebWrite(out + d, <u32>nzrun);
    copySmall(out + d, cur + i, nzrun);
    d += nzrun;
    i += nzrun;
  }
  return <i32>d;
}

/** Checks `delta` (`deltaLen` bytes) against a page of `len` bytes; 0 when valid, else an error code. */
export function xorDeltaValidate(delta: usize, deltaLen: usize, len: usize): i32 {
  let i: usize = 0;
  let d: usize = 0;
  while (i < deltaLen) {
    const z = ulebRead(delta + i, deltaLen - i);
    if (z < 0) return z;
    const zrun = <usize>(z & 0xffffff);
    if (zrun == 0 && i != 0) return XBZRLE_ERR_EMPTY_RUN;
    i += <usize>(z >>> 24);
    d += zrun;
    if (d >= len) return XBZRLE_ERR_OVERRUN;
    const n = ulebRead(delta + i, deltaLen - i);
    if (n < 0) return n;
    const nzrun = <usize>(n & 0xffffff);
    if (nzrun == 0) return XBZRLE_ERR_EMPTY_RUN;
    i += <usize>(n >>> 24);
    if (d + nzrun > len) return XBZRLE_ERR_OVERRUN;
    if (nzrun > deltaLen - i) return XBZRLE_ERR_TRUNCATED;
    i += nzrun;
    d += nzrun;
  }
  return 0;
}

/**
 * Applies `delta` to the `len`-byte page at `page`. Validates first, so a bad delta returns its
 * error code and leaves the page untouched. Returns 0 on success.
 */
export function xorDeltaDecode(delta: usize, deltaLen: usize, page: usize, len: usize): i32 {
  const bad = xorDeltaValidate(delta, deltaLen, len);
  if (bad != 0) return bad;
  let i: usize = 0;
  let d: usize = 0;
  while (i < deltaLen) {
    const z = ulebRead(delta + i, deltaLen - i);
    i += <usize>(z >>> 24);
    d += <usize>(z & 0xffffff);
    const n = ulebRead(delta + i, deltaLen - i);
    i += <usize>(n >>> 24);
    const nzrun = <usize>(n & 0xffffff);
    copySmall(page + d, delta + i, nzrun);
    i += nzrun;
    d += nzrun;
  }
  return 0;
}
