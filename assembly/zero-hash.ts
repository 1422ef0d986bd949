// The mxh64 of an all-zero page, computed without a zero page in memory and cached per page size.

@inline const LANE_MUL: u32 = 0x9E3779B1;

let cachedSize: u32 = 0;
let cachedHash: u64 = 0;

@inline function fold(h: u64, l: u32): u64 {
  return rotl<u64>((h ^ <u64>l) * 0xC2B2AE3D27D4EB4F, 31);
}

/** mxh64 of `pageSize` zero bytes (must equal hashPage over a zero page; tested). */
export function zeroPageHash(pageSize: u32): u64 {
  if (pageSize == cachedSize) return cachedHash;
  let h: u64 = <u64>pageSize * 0x9E3779B97F4A7C15;
  const blocks = pageSize >> 7;
  for (let j: u32 = 0; j < 32; j++) {
    let x: u32 = 0x243F6A88 + j * 0x9E3779B9;
    for (let b: u32 = 0; b < blocks; b++) {
      x = x * LANE_MUL;
      x ^= x >> 15;
    }
    h = fold(h, x);
  }
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCD;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53;
  h ^= h >> 33;
  cachedSize = pageSize;
  cachedHash = h;
  return h;
}
