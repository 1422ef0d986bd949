// Zero-page kernels (assembly/zero-page.ts) against the reference: a single non-zero byte anywhere in
// a page (first byte, last byte, a SIMD block's last lane) makes it non-zero, and scanZeroPages writes
// exactly ceil(count/64) words.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Kernels, type KernelVariant } from '../../src/wasm/kernels.js';
import { firstDifference, refIsZeroPage, refScanZeroPages } from '../_support/reference-kernels.js';
import { seeded } from '../_support/seeded.js';

const VARIANTS: readonly KernelVariant[] = ['simd', 'scalar', 'debug'];
const RAM = 65536 * 2;
const MAP = 65536 + 1024;

function setup(variant: KernelVariant, wasmPages: number): { k: Kernels; u8: Uint8Array } {
  const memory = new WebAssembly.Memory({ initial: wasmPages, maximum: wasmPages, shared: true });
  return { k: new Kernels(memory, variant), u8: new Uint8Array(memory.buffer) };
}

const zero = suite('zero-page');

zero('isZeroPage is 1 for a zero page and 0 whatever the position of one non-zero byte (64-byte page)', () => {
  for (const v of VARIANTS) {
    const { k, u8 } = setup(v, 3);
    assert.is(k.raw.isZeroPage(RAM, 64), 1, `${v} zero page`);
    for (let at = 0; at < 64; at++) {
      for (const value of [0x01, 0x80]) {
        u8[RAM + at] = value;
        assert.is(k.raw.isZeroPage(RAM, 64), 0, `${v} byte ${at} = ${value}`);
        u8[RAM + at] = 0;
      }
    }
  }
});

zero('isZeroPage sees a single byte at the first, last and block-edge positions of 4096 and 65536-byte pages', () => {
  for (const v of VARIANTS) {
    const { k, u8 } = setup(v, 4);
    for (const ps of [4096, 65536]) {
      u8.fill(0xff, RAM + ps, RAM + ps + 64); // neighbours that must not be read as part of the page
      u8.fill(0xff, RAM - 64, RAM);
      assert.is(k.raw.isZeroPage(RAM, ps), 1, `${v} ps=${ps}: zero page between non-zero neighbours`);
      for (const at of [0, 15, 16, 63, 64, ps / 2 + 17, ps - 64, ps - 16, ps - 2, ps - 1]) {
        u8[RAM + at] = 0x40;
        assert.is(k.raw.isZeroPage(RAM, ps), refIsZeroPage(u8.subarray(RAM, RAM + ps)) ? 1 : 0, `${v} ps=${ps} byte ${at}`);
        assert.is(k.raw.isZeroPage(RAM, ps), 0, `${v} ps=${ps} byte ${at} is non-zero`);
        u8[RAM + at] = 0;
      }
      u8.fill(0, RAM + ps, RAM + ps + 64);
    }
  }
});

zero('scanZeroPages matches the reference count and map, for counts that are not a multiple of 64', () => {
  for (const v of VARIANTS) {
    for (const [ps, count] of [[64, 0], [64, 1], [64, 63], [64, 64], [64, 65], [64, 200], [4096, 70], [8192, 3]] as const) {
      const { k, u8 } = setup(v, 2 + Math.ceil((ps * count) / 65536) + 1);
      const rng = seeded(ps * 1000 + count);
      for (let p = 0; p < count; p++) {
        if (rng.chance(0.5)) continue;
        // One non-zero byte, often at an edge of the page, sometimes many.
        const at = [0, ps - 1, rng.below(ps)][rng.below(3)];
        u8[RAM + p * ps + at] = 1 + rng.below(255);
        if (rng.chance(0.3)) rng.fill(u8.subarray(RAM + p * ps, RAM + (p + 1) * ps));
      }
      const mapWords = Math.ceil(count / 64);
      u8.fill(0xcc, MAP, MAP + mapWords * 8 + 8); // stale bits the kernel must overwrite; one guard word
      const want = refScanZeroPages(u8.slice(RAM, RAM + ps * count), ps, count);
      assert.is(k.raw.scanZeroPages(RAM, ps, count, MAP), want.zeros, `${v} ps=${ps} count=${count}: zeros`);
      assert.is(firstDifference(u8.slice(MAP, MAP + mapWords * 8), want.map), -1, `${v} ps=${ps} count=${count}: map`);
      assert.equal([...u8.slice(MAP + mapWords * 8, MAP + mapWords * 8 + 8)], new Array(8).fill(0xcc), `${v} ps=${ps} count=${count}: guard word`);
    }
  }
});

zero('scanZeroPages classifies the last page of the range', () => {
  for (const v of VARIANTS) {
    const { k, u8 } = setup(v, 7);
    const ps = 4096;
    const count = 65;
    u8[RAM + (count - 1) * ps + ps - 1] = 9; // last byte of the last page
    assert.is(k.raw.scanZeroPages(RAM, ps, count, MAP), count - 1, `${v} zeros`);
    const dv = new DataView(u8.buffer);
    assert.equal([dv.getBigUint64(MAP, true), dv.getBigUint64(MAP + 8, true)], [(1n << 64n) - 1n, 0n], `${v} map`);
  }
});

zero.run();
