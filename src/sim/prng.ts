// xoshiro128** (Blackman & Vigna): four u32 words of state, 2^128 - 1 period, fast with Math.imul.
// The guest's vCPU state is this PRNG plus a step counter, so it must be exactly reproducible:
// state travels between hosts as four u32s. Seeded from a 53-bit integer with splitmix64.

export type PrngState = [number, number, number, number];

const MASK64 = (1n << 64n) - 1n;

function splitmix64(x: bigint): [bigint, bigint] {
  x = (x + 0x9e3779b97f4a7c15n) & MASK64;
  let z = x;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return [x, z ^ (z >> 31n)];
}

/** Initial state for `seed` (never all zero). */
export function seedPrng(seed: number, stream = 0): PrngState {
  let x = BigInt(seed) ^ (BigInt(stream) << 53n);
  let a: bigint, b: bigint;
  [x, a] = splitmix64(x);
  [x, b] = splitmix64(x);
  const s: PrngState = [Number(a & 0xffffffffn), Number(a >> 32n), Number(b & 0xffffffffn), Number(b >> 32n)];
  if ((s[0] | s[1] | s[2] | s[3]) === 0) s[0] = 1;
  return s;
}

/** A 64-bit value derived from `seed` and `salt` (for choices made once, like where the hot set lies). */
export function seedHash(seed: number, salt: number): bigint {
  return splitmix64(BigInt(seed) * 0x100000001n + BigInt(salt))[1];
}

/** Advances `s` in place and returns the next u32. Kept in one function so callers can inline the loop. */
export function nextU32(s: PrngState): number {
  const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
  const t = s[1] << 9;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 11);
  return result;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
