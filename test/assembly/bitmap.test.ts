// Bitmap kernels (assembly/bitmap.ts) against test/_support/reference-kernels.ts, for every build.
// Maps live at DATA (above the kernels' reserved 64 KiB); a guard word after each map catches writes
// past ceil(bits/64) words.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Kernels, type KernelVariant } from '../../src/wasm/kernels.js';
import {
  firstDifference, refBitmapClear, refBitmapCount, refBitmapFill, refBitmapMerge, refBitmapNextSet,
  refBitmapSet, refBitmapSyncAndClear, refBitmapTest,
} from '../_support/reference-kernels.js';
import { seeded, type Rng } from '../_support/seeded.js';

const VARIANTS: readonly KernelVariant[] = ['simd', 'scalar', 'debug'];
const DATA = 65536;
const A = DATA;
const B = DATA + 16384;

function setup(variant: KernelVariant): { k: Kernels; u8: Uint8Array } {
  const memory = new WebAssembly.Memory({ initial: 3, maximum: 3, shared: true });
  return { k: new Kernels(memory, variant), u8: new Uint8Array(memory.buffer) };
}

function randomMap(rng: Rng, bytes: number, density: number): Uint8Array {
  const m = new Uint8Array(bytes);
  for (let i = 0; i < bytes * 8; i++) if (rng.chance(density)) m[i >>> 3] |= 1 << (i & 7);
  return m;
}

const words = (bits: number): number => Math.ceil(bits / 64);

const bitmap = suite('bitmap');

bitmap('set and clear return the previous state of bit 0, bit n-1 and random bits, as the reference does', () => {
  for (const v of VARIANTS) {
    for (const bits of [1, 64, 65, 1000]) {
      const { k, u8 } = setup(v);
      const ref = new Uint8Array(words(bits) * 8);
      const rng = seeded(bits);
      const sequence = [0, bits - 1, 0, bits - 1, ...Array.from({ length: 400 }, () => rng.below(bits))];
      sequence.forEach((bit, step) => {
        const clear = step % 3 === 2;
        const got = clear ? k.raw.bitmapClear(A, bit) : k.raw.bitmapSet(A, bit);
        const want = clear ? refBitmapClear(ref, bit) : refBitmapSet(ref, bit);
        assert.is(got, want, `${v} bits=${bits} step ${step} ${clear ? 'clear' : 'set'}(${bit})`);
      });
      assert.is(firstDifference(u8.slice(A, A + ref.length), ref), -1, `${v} bits=${bits}: map bytes`);
      assert.is(u8[A + ref.length], 0, `${v} bits=${bits}: byte after the map`);
      for (let bit = 0; bit < bits; bit++) assert.is(k.raw.bitmapTest(A, bit), refBitmapTest(ref, bit), `${v} test(${bit})`);
    }
  }
});

bitmap('set of bit 0 and bit 63 touch only their own 32-bit half of word 0', () => {
  for (const v of VARIANTS) {
    const { k, u8 } = setup(v);
    const dv = new DataView(u8.buffer);
    k.raw.bitmapSet(A, 0);
    assert.equal([dv.getUint32(A, true), dv.getUint32(A + 4, true)], [1, 0], `${v} after set(0)`);
    k.raw.bitmapSet(A, 63);
    assert.equal([dv.getUint32(A, true), dv.getUint32(A + 4, true)], [1, 0x80000000], `${v} after set(63)`);
    assert.is(dv.getBigUint64(A, true), 0x8000000000000001n, `${v} word 0 as u64`);
  }
});

bitmap('count equals the reference popcount for empty, full and random maps', () => {
  for (const v of VARIANTS) {
    const { k, u8 } = setup(v);
    const rng = seeded(7);
    for (const [w, density] of [[0, 0.5], [1, 0], [1, 1], [3, 0.5], [17, 0.01], [200, 0.3], [200, 1]] as const) {
      const map = randomMap(rng, w * 8, density);
      u8.fill(0xff, A, A + 4096);
      u8.set(map, A);
      assert.is(k.raw.bitmapCount(A, w), refBitmapCount(map, w), `${v} words=${w} density=${density}`);
    }
  }
});

bitmap('nextSet returns the first set bit at or after from, for every from up to past the end', () => {
  for (const v of VARIANTS) {
    const { k, u8 } = setup(v);
    const rng = seeded(11);
    for (const [bits, density] of [[1, 1], [64, 0.05], [100, 0.03], [300, 0.02], [300, 0], [513, 0.5]] as const) {
      const map = randomMap(rng, words(bits) * 8, density);
      for (let i = bits; i < words(bits) * 64; i++) map[i >>> 3] &= ~(1 << (i & 7));
      u8.set(map, A);
      for (let from = 0; from <= bits + 70; from++) {
        assert.is(k.raw.bitmapNextSet(A, bits, from), refBitmapNextSet(map, bits, from), `${v} bits=${bits} from=${from}`);
      }
    }
  }
});

bitmap('nextSet finds bit n-1 from itself and reports -1 from n and beyond', () => {
  for (const v of VARIANTS) {
    for (const bits of [1, 63, 64, 65, 130]) {
      const { k } = setup(v);
      k.raw.bitmapSet(A, bits - 1);
      assert.is(k.raw.bitmapNextSet(A, bits, 0), bits - 1, `${v} bits=${bits} from 0`);
      assert.is(k.raw.bitmapNextSet(A, bits, bits - 1), bits - 1, `${v} bits=${bits} from n-1`);
      assert.is(k.raw.bitmapNextSet(A, bits, bits), -1, `${v} bits=${bits} from n`);
      assert.is(k.raw.bitmapNextSet(A, bits, bits + 1000), -1, `${v} bits=${bits} from n+1000`);
    }
    const { k } = setup(v);
    assert.is(k.raw.bitmapNextSet(A, 0, 0), -1, `${v} empty map`);
  }
});

bitmap('nextSet ignores set bits past n in the last word', () => {
  for (const v of VARIANTS) {
    const { k } = setup(v);
    k.raw.bitmapSet(A, 70); // the first bit past a 70-bit map's end
    k.raw.bitmapSet(A, 100);
    assert.is(k.raw.bitmapNextSet(A, 70, 0), -1, `${v} stray bits 70 and 100 in a 70-bit map`);
    k.raw.bitmapSet(A, 69);
    assert.is(k.raw.bitmapNextSet(A, 70, 0), 69, `${v} bit 69 before the stray bits`);
    assert.is(k.raw.bitmapNextSet(A, 64, 0), -1, `${v} bits 69, 70, 100 lie past a 64-bit map`);
  }
});

bitmap('syncAndClear moves every set bit exactly once', () => {
  for (const v of VARIANTS) {
    const { k, u8 } = setup(v);
    const rng = seeded(23);
    for (const [w, density] of [[1, 1], [5, 0.5], [64, 0.02], [300, 0.2]] as const) {
      const dirty = randomMap(rng, w * 8, density);
      const snapshot = randomMap(rng, w * 8, 0.1);
      u8.set(dirty, A);
      u8.set(snapshot, B);
      u8.fill(0xee, A + w * 8, A + w * 8 + 8);
      u8.fill(0xee, B + w * 8, B + w * 8 + 8);
      const want = refBitmapSyncAndClear(dirty, snapshot, w);
      assert.is(k.raw.bitmapSyncAndClear(A, B, w), want, `${v} words=${w}: moved`);
      assert.is(firstDifference(u8.slice(A, A + w * 8), dirty), -1, `${v} words=${w}: dirty is clear`);
      assert.is(firstDifference(u8.slice(B, B + w * 8), snapshot), -1, `${v} words=${w}: snapshot = old | dirty`);
      assert.equal([u8[A + w * 8], u8[B + w * 8 + 7]], [0xee, 0xee], `${v} words=${w}: guards`);
      assert.is(k.raw.bitmapSyncAndClear(A, B, w), 0, `${v} words=${w}: a second sync moves nothing`);
    }
  }
});

bitmap('merge ORs the source into the target and counts only newly set bits', () => {
  for (const v of VARIANTS) {
    const { k, u8 } = setup(v);
    const rng = seeded(31);
    for (const [w, ds, dt] of [[1, 1, 1], [1, 1, 0], [8, 0.3, 0.3], [100, 0.05, 0.5]] as const) {
      const source = randomMap(rng, w * 8, ds);
      const target = randomMap(rng, w * 8, dt);
      u8.set(target, A);
      u8.set(source, B);
      u8[A + w * 8] = 0x5a;
      const want = refBitmapMerge(target, source, w);
      assert.is(k.raw.bitmapMerge(A, B, w), want, `${v} words=${w}: added`);
      assert.is(firstDifference(u8.slice(A, A + w * 8), target), -1, `${v} words=${w}: target`);
      assert.is(firstDifference(u8.slice(B, B + w * 8), source), -1, `${v} words=${w}: source unchanged`);
      assert.is(u8[A + w * 8], 0x5a, `${v} words=${w}: guard after target`);
    }
  }
});

bitmap('andNot clears in the target exactly the mask\'s bits and counts the mask', () => {
  for (const v of VARIANTS) {
    const { k, u8 } = setup(v);
    const rng = seeded(37);
    for (const [w, dm, dt] of [[1, 1, 1], [1, 0, 1], [8, 0.3, 0.7], [100, 0.05, 0.5]] as const) {
      const mask = randomMap(rng, w * 8, dm);
      const target = randomMap(rng, w * 8, dt);
      u8.set(target, A);
      u8.set(mask, B);
      u8[A + w * 8] = 0x5a;
      const want = target.map((t, i) => t & ~mask[i] & 0xff);
      assert.is(k.raw.bitmapAndNot(A, B, w), refBitmapCount(mask, w), `${v} words=${w}: counted`);
      assert.is(firstDifference(u8.slice(A, A + w * 8), want), -1, `${v} words=${w}: target`);
      assert.is(firstDifference(u8.slice(B, B + w * 8), mask), -1, `${v} words=${w}: mask unchanged`);
      assert.is(u8[A + w * 8], 0x5a, `${v} words=${w}: guard after target`);
    }
  }
});

bitmap('fill sets exactly bits [0, n) and clears the rest of the last word, nothing after', () => {
  for (const v of VARIANTS) {
    const { k, u8 } = setup(v);
    for (const bits of [0, 1, 63, 64, 65, 127, 128, 1000]) {
      u8.fill(0xa5, A, A + 256);
      const ref = u8.slice(A, A + 256);
      refBitmapFill(ref, bits);
      k.raw.bitmapFill(A, bits);
      assert.is(firstDifference(u8.slice(A, A + 256), ref), -1, `${v} bits=${bits}`);
      assert.is(refBitmapCount(u8.slice(A, A + words(bits) * 8), words(bits)), bits, `${v} bits=${bits}: popcount`);
    }
  }
});

bitmap('zero clears whole words and leaves the next word alone', () => {
  for (const v of VARIANTS) {
    const { k, u8 } = setup(v);
    u8.fill(0xff, A, A + 64);
    k.raw.bitmapZero(A, 3);
    assert.equal([...u8.slice(A, A + 32)], [...new Array(24).fill(0), ...new Array(8).fill(0xff)], v);
  }
});

bitmap.run();
