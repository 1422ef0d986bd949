// mxh64 and the memory digest (assembly/hash.ts, assembly/zero-hash.ts) against the BigInt reference.
// One memory carries an instance of every build, so each page is hashed by all of them. i64 results
// cross into JS as signed bigints; the raw exports are compared as u64 (BigInt.asUintN).

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Kernels, type KernelVariant } from '../../src/wasm/kernels.js';
import {
  firstDifference, fmix64, mxh64, refDigest, refDigestDelta,
} from '../_support/reference-kernels.js';
import { seeded } from '../_support/seeded.js';

const VARIANTS: readonly KernelVariant[] = ['simd', 'scalar', 'debug'];
const SRC = 131072;
const DST = 327680;
const TABLE = 65536 + 4096;
const DIGEST = 65536 + 64;
const u64 = (x: bigint): bigint => BigInt.asUintN(64, x);
const hex64 = (x: bigint): string => `0x${u64(x).toString(16).padStart(16, '0')}`;

function setup(): { ks: Kernels[]; u8: Uint8Array; dv: DataView } {
  const memory = new WebAssembly.Memory({ initial: 8, maximum: 8, shared: true });
  return { ks: VARIANTS.map((v) => new Kernels(memory, v)), u8: new Uint8Array(memory.buffer), dv: new DataView(memory.buffer) };
}

const hash = suite('hash');

hash('hashPage equals the reference mxh64 in every build, for random and sparse pages of 128 to 65536 bytes', () => {
  const { ks, u8 } = setup();
  const rng = seeded(101);
  for (const ps of [128, 256, 4096, 8192, 65536]) {
    for (let round = 0; round < 4; round++) {
      const page = u8.subarray(SRC, SRC + ps);
      page.fill(0);
      if (round % 2 === 0) rng.fill(page);
      else for (let i = 0; i < 5; i++) page[rng.below(ps)] = rng.u32() & 0xff;
      const want = mxh64(page.slice());
      for (const k of ks) assert.is(hex64(k.raw.hashPage(SRC, ps)), hex64(want), `${k.variant} ps=${ps} round ${round}`);
    }
  }
});

hash('mxh64 of fixed pages has pinned values (the digest is compared across hosts and versions)', () => {
  const { ks, u8 } = setup();
  const pattern = u8.subarray(SRC, SRC + 4096);
  for (let i = 0; i < 4096; i++) pattern[i] = i & 0xff;
  const zeros = new Uint8Array(4096);
  // Pinned from the reference, which is written from the header of assembly/hash.ts.
  assert.is(hex64(mxh64(zeros)), '0xa9a85e18154ace20', 'reference, 4096 zero bytes');
  assert.is(hex64(mxh64(pattern.slice())), '0x03776caa2b2e87e0', 'reference, bytes i & 0xff');
  for (const k of ks) {
    assert.is(hex64(k.raw.zeroPageHash(4096)), '0xa9a85e18154ace20', `${k.variant} zero page`);
    assert.is(hex64(k.raw.hashPage(SRC, 4096)), '0x03776caa2b2e87e0', `${k.variant} pattern page`);
  }
});

hash('zeroPageHash(ps) equals hashPage of a zero page, also after its cache switched page sizes', () => {
  const { ks, u8 } = setup();
  u8.fill(0, SRC, SRC + 65536);
  for (const ps of [4096, 8192, 65536, 128, 4096, 8192]) {
    const want = hex64(mxh64(new Uint8Array(ps)));
    for (const k of ks) {
      assert.is(hex64(k.raw.zeroPageHash(ps)), want, `${k.variant} zeroPageHash(${ps})`);
      assert.is(hex64(k.raw.hashPage(SRC, ps)), want, `${k.variant} hashPage(zero ${ps})`);
    }
  }
});

hash('the page length is hashed: zero pages of different sizes hash differently', () => {
  const { ks } = setup();
  for (const k of ks) {
    const seen = new Set([128, 4096, 8192, 65536].map((ps) => hex64(k.raw.zeroPageHash(ps))));
    assert.is(seen.size, 4, k.variant);
  }
});

hash('copyAndHash copies exactly the page, leaves the bytes around it, and returns hashPage of it', () => {
  const { ks, u8 } = setup();
  const rng = seeded(202);
  for (const ps of [128, 4096, 65536]) {
    for (const k of ks) {
      rng.fill(u8.subarray(SRC, SRC + ps));
      u8.fill(0x77, DST - 64, DST + ps + 64);
      const src = u8.slice(SRC, SRC + ps);
      const got = k.raw.copyAndHash(DST, SRC, ps);
      assert.is(firstDifference(u8.slice(DST, DST + ps), src), -1, `${k.variant} ps=${ps}: copy`);
      assert.is(firstDifference(u8.slice(SRC, SRC + ps), src), -1, `${k.variant} ps=${ps}: source unchanged`);
      assert.ok(u8.subarray(DST - 64, DST).every((b) => b === 0x77), `${k.variant} ps=${ps}: guard before`);
      assert.ok(u8.subarray(DST + ps, DST + ps + 64).every((b) => b === 0x77), `${k.variant} ps=${ps}: guard after`);
      assert.is(hex64(got), hex64(mxh64(src)), `${k.variant} ps=${ps}: hash`);
      assert.is(hex64(got), hex64(k.raw.hashPage(DST, ps)), `${k.variant} ps=${ps}: hash = hashPage(copy)`);
    }
  }
});

hash('hashPages writes one u64 hash per page and nothing after', () => {
  const { ks, u8, dv } = setup();
  const rng = seeded(303);
  const ps = 4096;
  const count = 5;
  rng.fill(u8.subarray(SRC, SRC + ps * count));
  u8.fill(0, SRC + 2 * ps, SRC + 3 * ps); // one zero page among them
  for (const k of ks) {
    u8.fill(0xab, TABLE, TABLE + (count + 1) * 8);
    k.raw.hashPages(SRC, ps, count, TABLE);
    for (let i = 0; i < count; i++) {
      assert.is(hex64(dv.getBigUint64(TABLE + i * 8, true)), hex64(mxh64(u8.slice(SRC + i * ps, SRC + (i + 1) * ps))), `${k.variant} page ${i}`);
    }
    assert.is(dv.getBigUint64(TABLE + count * 8, true), 0xababababababababn, `${k.variant} guard`);
  }
});

hash('a single changed word changes the hash, in every word position of a 4096-byte page', () => {
  const { ks, u8, dv } = setup();
  seeded(404).fill(u8.subarray(SRC, SRC + 4096));
  for (const k of ks) {
    const base = hex64(k.raw.hashPage(SRC, 4096));
    const seen = new Set<string>([base]);
    for (let w = 0; w < 1024; w++) {
      const at = SRC + w * 4;
      const old = dv.getUint32(at, true);
      dv.setUint32(at, old ^ (1 << (w % 32)), true);
      const h = hex64(k.raw.hashPage(SRC, 4096));
      if (w % 97 === 0) assert.is(h, hex64(mxh64(u8.slice(SRC, SRC + 4096))), `${k.variant} word ${w} vs reference`);
      assert.is.not(h, base, `${k.variant} word ${w} flipped`);
      seen.add(h);
      dv.setUint32(at, old, true);
    }
    assert.is(seen.size, 1025, `${k.variant}: 1024 one-word changes give 1024 distinct hashes`);
  }
});

hash('fillU64 stores count values and nothing after', () => {
  const { ks, dv, u8 } = setup();
  for (const k of ks) {
    u8.fill(0, TABLE, TABLE + 80);
    k.raw.fillU64(TABLE, 9, 0xfedcba9876543210n);
    const got = Array.from({ length: 10 }, (_, i) => dv.getBigUint64(TABLE + i * 8, true));
    assert.equal(got, [...new Array(9).fill(0xfedcba9876543210n), 0n], k.variant);
  }
});

hash('digestOfHashes of zero pages is 0, and of random hashes equals the reference digest', () => {
  const { ks, dv } = setup();
  const rng = seeded(505);
  const keyBase = (7n << 32n) + 100n;
  for (const k of ks) {
    const z = u64(k.raw.zeroPageHash(4096));
    k.raw.fillU64(TABLE, 64, z);
    assert.is(k.raw.digestOfHashes(TABLE, 64, keyBase, z), 0n, `${k.variant} all zero pages`);
    const hashes: bigint[] = [];
    for (let i = 0; i < 64; i++) {
      const h = i % 3 === 0 ? z : (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
      hashes.push(h);
      dv.setBigUint64(TABLE + i * 8, h, true);
    }
    assert.is(hex64(k.raw.digestOfHashes(TABLE, 64, keyBase, z)), hex64(refDigest(hashes, keyBase, z)), `${k.variant} random`);
  }
});

hash('recordPageHash XORs the reference delta into the digest, and the running digest equals a recomputation', () => {
  const { ks, dv } = setup();
  const keyBase = 3n << 32n;
  for (const k of ks) {
    const rng = seeded(606);
    const z = u64(k.raw.zeroPageHash(4096));
    k.raw.fillU64(TABLE, 32, z);
    dv.setBigUint64(DIGEST, 0n, true);
    const table: bigint[] = new Array(32).fill(z);
    let running = 0n;
    for (let step = 0; step < 200; step++) {
      const page = rng.below(32);
      const after = rng.chance(0.2) ? z : rng.chance(0.1) ? table[page] : (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
      const want = refDigestDelta(keyBase + BigInt(page), table[page], after);
      const got = u64(k.raw.recordPageHash(TABLE, page, keyBase + BigInt(page), after, DIGEST));
      assert.is(hex64(got), hex64(want), `${k.variant} step ${step}: returned delta`);
      if (after === table[page]) assert.is(got, 0n, `${k.variant} step ${step}: same hash, no change`);
      table[page] = after;
      running ^= want;
      assert.is(dv.getBigUint64(TABLE + page * 8, true), after, `${k.variant} step ${step}: slot`);
      assert.is(hex64(dv.getBigUint64(DIGEST, true)), hex64(running), `${k.variant} step ${step}: digest`);
    }
    assert.is(hex64(dv.getBigUint64(DIGEST, true)), hex64(refDigest(table, keyBase, z)), `${k.variant}: running = recomputed`);
    assert.is(hex64(k.raw.digestOfHashes(TABLE, 32, keyBase, z)), hex64(refDigest(table, keyBase, z)), `${k.variant}: digestOfHashes`);
  }
});

hash('the reference fmix64 is murmur3\'s finaliser (its published value for 1)', () => {
  assert.is(hex64(fmix64(1n)), '0xb456bcfc34c2cb2c');
});

hash.run();
