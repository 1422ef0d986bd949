// Plain-TS reference implementations of the WASM kernels, written from the semantics in the headers
// of assembly/*.ts (not translated from the AS code): the differential oracle of test/assembly. They
// favour obviousness over speed: bit loops, byte loops, BigInt for every 64-bit step. They work on
// ordinary Uint8Arrays (copies of the kernel's memory), never on the shared memory itself.
//
//   bitmap  bit i = bit (i & 63) of little-endian u64 word (i >> 6) = bit (i & 7) of byte (i >> 3)
//   mxh64   32 u32 lanes (lane j eats words j, j+32, ...), folded into 64 bits, fmix64
//   xbzrle  pair* ; pair = zrun:uleb128 nzrun:uleb128 byte{nzrun}

const MASK64 = (1n << 64n) - 1n;

// ---- bytes ------------------------------------------------------------------------------------

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function unhex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
}

/** Index of the first byte where `a` and `b` differ, or -1 (also compares lengths). */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

// ---- bitmaps ----------------------------------------------------------------------------------

function getBit(map: Uint8Array, bit: number): number {
  return (map[bit >>> 3] >>> (bit & 7)) & 1;
}

function popcount8(b: number): number {
  let n = 0;
  for (; b !== 0; b &= b - 1) n++;
  return n;
}

/** Sets `bit`; 1 when it was clear before. */
export function refBitmapSet(map: Uint8Array, bit: number): number {
  const was = getBit(map, bit);
  map[bit >>> 3] |= 1 << (bit & 7);
  return was ^ 1;
}

/** Clears `bit`; 1 when it was set before. */
export function refBitmapClear(map: Uint8Array, bit: number): number {
  const was = getBit(map, bit);
  map[bit >>> 3] &= ~(1 << (bit & 7));
  return was;
}

export function refBitmapTest(map: Uint8Array, bit: number): number {
  return getBit(map, bit);
}

/** Set bits in `words` whole u64 words (bits past a map's logical end count too). */
export function refBitmapCount(map: Uint8Array, words: number): number {
  let n = 0;
  for (let i = 0; i < words * 8; i++) n += popcount8(map[i]);
  return n;
}

/** First set bit in [from, bits), or -1. */
export function refBitmapNextSet(map: Uint8Array, bits: number, from: number): number {
  for (let i = from; i < bits; i++) if (getBit(map, i)) return i;
  return -1;
}

/** snapshot |= dirty; dirty = 0; returns the number of bits that were set in dirty. */
export function refBitmapSyncAndClear(dirty: Uint8Array, snapshot: Uint8Array, words: number): number {
  let moved = 0;
  for (let i = 0; i < words * 8; i++) {
    moved += popcount8(dirty[i]);
    snapshot[i] |= dirty[i];
    dirty[i] = 0;
  }
  return moved;
}

/** target |= source; returns the number of bits set in target that were not before. */
export function refBitmapMerge(target: Uint8Array, source: Uint8Array, words: number): number {
  let added = 0;
  for (let i = 0; i < words * 8; i++) {
    added += popcount8(source[i] & ~target[i] & 0xff);
    target[i] |= source[i];
  }
  return added;
}

/** Bits [0, bits) set, the rest of the last word (of ceil(bits/64)) clear; later bytes untouched. */
export function refBitmapFill(map: Uint8Array, bits: number): void {
  const words = Math.ceil(bits / 64);
  for (let i = 0; i < words * 64; i++) {
    if (i < bits) map[i >>> 3] |= 1 << (i & 7);
    else map[i >>> 3] &= ~(1 << (i & 7));
  }
}

// ---- zero pages -------------------------------------------------------------------------------

export function refIsZeroPage(page: Uint8Array): boolean {
  return page.every((b) => b === 0);
}

/** Zero-page count and the ceil(count/64)-word map (bit i set when page i is zero). */
export function refScanZeroPages(ram: Uint8Array, pageSize: number, count: number): { zeros: number; map: Uint8Array } {
  const map = new Uint8Array(Math.ceil(count / 64) * 8);
  let zeros = 0;
  for (let i = 0; i < count; i++) {
    if (refIsZeroPage(ram.subarray(i * pageSize, (i + 1) * pageSize))) {
      map[i >>> 3] |= 1 << (i & 7);
      zeros++;
    }
  }
  return { zeros, map };
}

// ---- mxh64 and the memory digest --------------------------------------------------------------

const LANE_MUL = 0x9e3779b1;
const LANE_STEP = 0x9e3779b9;
const LANE_BASE = 0x243f6a88;
const GOLDEN64 = 0x9e3779b97f4a7c15n;
const FOLD_MUL = 0xc2b2ae3d27d4eb4fn;

export function fmix64(h: bigint): bigint {
  h &= MASK64;
  h ^= h >> 33n;
  h = (h * 0xff51afd7ed558ccdn) & MASK64;
  h ^= h >> 33n;
  h = (h * 0xc4ceb9fe1a85ec53n) & MASK64;
  h ^= h >> 33n;
  return h;
}

function rotl64(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (64n - r))) & MASK64;
}

/** mxh64 of `bytes` (length a multiple of 128), as an unsigned 64-bit value. */
export function mxh64(bytes: Uint8Array): bigint {
  const lanes: number[] = [];
  for (let j = 0; j < 32; j++) lanes.push((LANE_BASE + Math.imul(j, LANE_STEP)) >>> 0);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let w = 0; w * 4 < bytes.length; w++) {
    const j = w % 32;
    const x = Math.imul((lanes[j] ^ dv.getUint32(w * 4, true)) >>> 0, LANE_MUL) >>> 0;
    lanes[j] = (x ^ (x >>> 15)) >>> 0;
  }
  let h = (BigInt(bytes.length) * GOLDEN64) & MASK64;
  for (let j = 0; j < 32; j++) h = rotl64(((h ^ BigInt(lanes[j])) * FOLD_MUL) & MASK64, 31n);
  return fmix64(h);
}

function pageKey(key: bigint): bigint {
  return (key * GOLDEN64 + 1n) & MASK64;
}

/** What page `key` holding content with hash `hash` adds to a digest: 0 for a zero page. */
export function refDigestContribution(key: bigint, hash: bigint, zeroHash: bigint): bigint {
  const k = pageKey(key);
  return fmix64(hash ^ k) ^ fmix64(zeroHash ^ k);
}

/** The digest change when page `key` goes from hash `before` to hash `after`. */
export function refDigestDelta(key: bigint, before: bigint, after: bigint): bigint {
  const k = pageKey(key);
  return fmix64(before ^ k) ^ fmix64(after ^ k);
}

/** Digest of consecutive pages keyed keyBase, keyBase+1, ... */
export function refDigest(hashes: readonly bigint[], keyBase: bigint, zeroHash: bigint): bigint {
  return hashes.reduce((d, h, i) => d ^ refDigestContribution(keyBase + BigInt(i), h, zeroHash), 0n);
}

// ---- ULEB128 ----------------------------------------------------------------------------------

export function ulebEncode(v: number): number[] {
  const out: number[] = [];
  do {
    let b = v & 0x7f;
    v = Math.floor(v / 128);
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
}

/** XBZRLE error codes (assembly/xbzrle.ts). */
export const XB_TRUNCATED = -1;
export const XB_OVERRUN = -2;
export const XB_VARINT = -3;
export const XB_EMPTY_RUN = -4;

/**
 * Reads a run length at `at`: {value, size}, or XB_TRUNCATED when the input ends inside it, or
 * XB_VARINT when it needs more than 3 bytes (21 bits) or is over-long (ends in a 0 byte after the first).
 */
export function ulebDecode(buf: Uint8Array, at: number): { value: number; size: number } | number {
  let value = 0;
  for (let n = 0; ; n++) {
    if (n === 3) return XB_VARINT;
    if (at + n >= buf.length) return XB_TRUNCATED;
    const b = buf[at + n];
    value += (b & 0x7f) * 2 ** (7 * n);
    if ((b & 0x80) === 0) return n > 0 && b === 0 ? XB_VARINT : { value, size: n + 1 };
  }
}

// ---- XBZRLE -----------------------------------------------------------------------------------

/** Greedy delta of `cur` against `prev` (equal run, changed run, ...; the equal tail is implicit);
 * XB_TRUNCATED's value -1 (= overflow) when the delta would be longer than `limit`. */
export function refXbzrleEncode(prev: Uint8Array, cur: Uint8Array, limit: number): Uint8Array | -1 {
  const out: number[] = [];
  let i = 0;
  while (i < cur.length) {
    const zStart = i;
    while (i < cur.length && prev[i] === cur[i]) i++;
    if (i === cur.length) break;
    const nStart = i;
    while (i < cur.length && prev[i] !== cur[i]) i++;
    out.push(...ulebEncode(nStart - zStart), ...ulebEncode(i - nStart), ...cur.subarray(nStart, i));
    if (out.length > limit) return -1;
  }
  return new Uint8Array(out);
}

/** The pairs of a delta, or the error code of the first rule it breaks (page of `len` bytes). */
export function refXbzrleParse(delta: Uint8Array, len: number): { at: number; bytes: Uint8Array }[] | number {
  const pairs: { at: number; bytes: Uint8Array }[] = [];
  let i = 0;
  let d = 0;
  while (i < delta.length) {
    const z = ulebDecode(delta, i);
    if (typeof z === 'number') return z;
    if (z.value === 0 && i !== 0) return XB_EMPTY_RUN;
    i += z.size;
    const n = ulebDecode(delta, i);
    if (typeof n === 'number') return n;
    if (n.value === 0) return XB_EMPTY_RUN;
    i += n.size;
    if (d + z.value + n.value > len) return XB_OVERRUN;
    if (i + n.value > delta.length) return XB_TRUNCATED;
    pairs.push({ at: d + z.value, bytes: delta.subarray(i, i + n.value) });
    i += n.value;
    d += z.value + n.value;
  }
  return pairs;
}

/** 0 when `delta` is valid for a page of `len` bytes, else an error code. */
export function refXbzrleValidate(delta: Uint8Array, len: number): number {
  const r = refXbzrleParse(delta, len);
  return typeof r === 'number' ? r : 0;
}

/** Applies `delta` to `page` in place when valid (then 0); else returns the code and leaves `page` alone. */
export function refXbzrleDecode(delta: Uint8Array, page: Uint8Array): number {
  const r = refXbzrleParse(delta, page.length);
  if (typeof r === 'number') return r;
  for (const { at, bytes } of r) page.set(bytes, at);
  return 0;
}
