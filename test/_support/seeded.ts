// Seeded randomness for tests: mulberry32 (Tommy Ettinger's 32-bit generator), so every random input
// is reproducible from the seed printed in an assertion message. Not for anything but tests.

export interface Rng {
  /** Next u32. */
  u32(): number;
  /** Integer in [0, n). */
  below(n: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
  /** Fills `bytes` with random values. */
  fill(bytes: Uint8Array): void;
}

export function seeded(seed: number): Rng {
  let s = seed >>> 0;
  const u32 = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  return {
    u32,
    below: (n) => Math.floor((u32() / 0x1_0000_0000) * n),
    chance: (p) => u32() / 0x1_0000_0000 < p,
    fill(bytes) {
      for (let i = 0; i < bytes.length; i++) bytes[i] = u32() & 0xff;
    },
  };
}

/** `count` distinct integers in [0, n), in random order (partial Fisher-Yates). */
export function distinctBelow(rng: Rng, n: number, count: number): number[] {
  const all = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < count; i++) {
    const j = i + rng.below(n - i);
    const t = all[i];
    all[i] = all[j];
    all[j] = t;
  }
  return all.slice(0, count);
}
