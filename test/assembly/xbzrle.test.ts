// XBZRLE delta kernels (assembly/xbzrle.ts, assembly/uleb128.ts): hex fixtures derived by hand from
// the grammar, byte-for-byte equality with the reference encoder, round trips, the limit, and hostile
// deltas (every-prefix truncation, hand-made corruptions, bit flips, garbage) decoded into a page
// fenced by guard bytes.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Kernels, type KernelVariant } from '../../src/wasm/kernels.js';
import {
  firstDifference, hex, refXbzrleDecode, refXbzrleEncode, refXbzrleValidate, ulebDecode, ulebEncode, unhex,
  XB_EMPTY_RUN, XB_OVERRUN, XB_TRUNCATED, XB_VARINT,
} from '../_support/reference-kernels.js';
import { seeded, type Rng } from '../_support/seeded.js';

const VARIANTS: readonly KernelVariant[] = ['simd', 'scalar', 'debug'];
const PREV = 131072;
const CUR = 196608;
const OUT = 262144;
const PAGE = 393216;
const DELTA = 462848;
const GUARD = 64;
const GUARD_BYTE = 0xc3;

interface Bench { k: Kernels; u8: Uint8Array }

function setup(variant: KernelVariant): Bench {
  const memory = new WebAssembly.Memory({ initial: 9, maximum: 9, shared: true });
  return { k: new Kernels(memory, variant), u8: new Uint8Array(memory.buffer) };
}

/** Encodes `cur` against `prev` in the kernel; the delta bytes or -1. Guards the `limit` bytes of output. */
function encode(b: Bench, prev: Uint8Array, cur: Uint8Array, limit: number): Uint8Array | -1 {
  b.u8.set(prev, PREV);
  b.u8.set(cur, CUR);
  b.u8.fill(GUARD_BYTE, OUT, OUT + limit + GUARD);
  const n = b.k.raw.xorDeltaEncode(PREV, CUR, cur.length, OUT, limit);
  const tail = b.u8.subarray(OUT + Math.max(n, 0), OUT + limit + GUARD);
  if (n < 0) assert.ok(b.u8.subarray(OUT + limit, OUT + limit + GUARD).every((x) => x === GUARD_BYTE), `${b.k.variant}: overflow wrote past out+limit`);
  else assert.ok(tail.every((x) => x === GUARD_BYTE), `${b.k.variant}: encode wrote past its delta`);
  return n < 0 ? -1 : b.u8.slice(OUT, OUT + n);
}

/** Decodes `delta` onto a copy of `page` fenced by guard bytes; checks the fence. */
function decode(b: Bench, delta: Uint8Array, page: Uint8Array, deltaLen = delta.length): { code: number; page: Uint8Array } {
  b.u8.fill(GUARD_BYTE, PAGE - GUARD, PAGE + page.length + GUARD);
  b.u8.set(page, PAGE);
  b.u8.set(delta, DELTA);
  const code = b.k.raw.xorDeltaDecode(DELTA, deltaLen, PAGE, page.length);
  const fenced = [...b.u8.subarray(PAGE - GUARD, PAGE), ...b.u8.subarray(PAGE + page.length, PAGE + page.length + GUARD)];
  assert.ok(fenced.every((x) => x === GUARD_BYTE), `${b.k.variant}: decode wrote outside the page`);
  return { code, page: b.u8.slice(PAGE, PAGE + page.length) };
}

function patternPage(len: number): Uint8Array {
  return Uint8Array.from({ length: len }, (_, i) => i & 0xff);
}

/** `prev` with some bytes changed (each to a different value), in one of several shapes. */
function mutate(rng: Rng, prev: Uint8Array, shape: number): Uint8Array {
  const cur = prev.slice();
  const len = cur.length;
  const change = (i: number): void => { cur[i] = prev[i] ^ (1 + rng.below(255)); };
  switch (shape) {
    case 0: for (let n = 1 + rng.below(8); n > 0; n--) change(rng.below(len)); break;
    case 1: for (let n = 1 + rng.below(6); n > 0; n--) {
      const at = rng.below(len);
      for (let i = at; i < Math.min(len, at + 1 + rng.below(300)); i++) change(i);
    } break;
    case 2: for (let i = 0; i < len; i++) if (i % 16 === 0 || i % 16 === 15 || rng.chance(0.02)) change(i); break;
    case 3: for (let i = 0; i < len; i++) change(i); break;
    case 4: change(0); change(len - 1); break;
    case 5: for (let i = 0; i < len; i++) if (rng.chance(0.5)) change(i); break;
    default: break; // unchanged
  }
  return cur;
}

const xbzrle = suite('xbzrle');

// Golden vectors, written from the grammar: pair := zrun:uleb128 nzrun:uleb128 byte{nzrun}.
//   bytes 10..12 and 4000 of a 4096-byte page: (10, 3, a0 a1 a2) (4000-13 = 3987 = 0x93 0x1f, 1, ff)
//   first and last byte: (0, 1, ee) (4094 = 0xfe 0x1f, 1, 00)
//   65536-byte page, last byte: (65535 = 0xff 0xff 0x03, 1, 5a)
//   65536-byte page, bytes 16383 and 32768: (16383 = 0xff 0x7f, 1, 01) (16384 = 0x80 0x80 0x01, 1, 02)
//   run of 128 changed bytes at 127: (127 = 0x7f, 128 = 0x80 0x01, 11 x 128)
const GOLDEN: { name: string; len: number; base: 'pattern' | 'zero'; changes: [number, number][]; delta: string }[] = [
  { name: 'bytes 10..12 and 4000', len: 4096, base: 'pattern', changes: [[10, 0xa0], [11, 0xa1], [12, 0xa2], [4000, 0xff]], delta: '0a03a0a1a2 931f01ff' },
  { name: 'first and last byte', len: 4096, base: 'pattern', changes: [[0, 0xee], [4095, 0x00]], delta: '0001ee fe1f0100' },
  { name: 'last byte of a 64 KiB page', len: 65536, base: 'zero', changes: [[65535, 0x5a]], delta: 'ffff03015a' },
  { name: 'two- and three-byte zrun boundaries', len: 65536, base: 'zero', changes: [[16383, 1], [32768, 2]], delta: 'ff7f0101 8080010102' },
  { name: 'nzrun of 128', len: 4096, base: 'zero', changes: Array.from({ length: 128 }, (_, i): [number, number] => [127 + i, 0x11]), delta: `7f8001${'11'.repeat(128)}` },
];

xbzrle('encode produces the hand-derived golden deltas, and decode rebuilds the page from them', () => {
  for (const v of VARIANTS) {
    const b = setup(v);
    for (const g of GOLDEN) {
      const prev = g.base === 'pattern' ? patternPage(g.len) : new Uint8Array(g.len);
      const cur = prev.slice();
      for (const [at, value] of g.changes) cur[at] = value;
      const want = g.delta.replace(/\s+/g, '');
      const got = encode(b, prev, cur, g.len);
      assert.is(got === -1 ? 'overflow' : hex(got), want, `${v} ${g.name}: kernel encode`);
      const ref = refXbzrleEncode(prev, cur, g.len);
      assert.is(ref === -1 ? 'overflow' : hex(ref), want, `${v} ${g.name}: reference encode`);
      const d = decode(b, unhex(want), prev);
      assert.is(d.code, 0, `${v} ${g.name}: decode code`);
      assert.is(firstDifference(d.page, cur), -1, `${v} ${g.name}: decoded page`);
    }
  }
});

xbzrle('the reference uleb128 writes 127, 128, 16383, 16384, 2^21-1 in 1, 2, 2, 3, 3 bytes and reads them back', () => {
  const cases: [number, string][] = [[0, '00'], [1, '01'], [127, '7f'], [128, '8001'], [16383, 'ff7f'], [16384, '808001'], [65536, '808004'], [2 ** 21 - 1, 'ffff7f']];
  for (const [value, want] of cases) {
    assert.is(hex(Uint8Array.from(ulebEncode(value))), want, `encode ${value}`);
    assert.equal(ulebDecode(unhex(want), 0), { value, size: want.length / 2 }, `decode ${want}`);
  }
  assert.is(ulebDecode(unhex('8000'), 0), XB_VARINT, 'over-long two bytes');
  assert.is(ulebDecode(unhex('80808001'), 0), XB_VARINT, 'four bytes');
  assert.is(ulebDecode(unhex('8080'), 0), XB_TRUNCATED, 'ends inside');
});

xbzrle('identical pages encode to an empty delta, and an empty delta leaves the page unchanged', () => {
  for (const v of VARIANTS) {
    const b = setup(v);
    for (const len of [64, 4096, 65536]) {
      const page = patternPage(len);
      const got = encode(b, page, page, 0);
      assert.is(got === -1 ? -1 : got.length, 0, `${v} len=${len}: encode with limit 0`);
      const d = decode(b, new Uint8Array(0), page);
      assert.equal([d.code, firstDifference(d.page, page)], [0, -1], `${v} len=${len}: decode`);
    }
  }
});

xbzrle('every byte changed: the delta is 00 uleb(len) and the page; exactly the limit passes, limit-1 overflows', () => {
  for (const v of VARIANTS) {
    const b = setup(v);
    for (const [len, lenHex] of [[64, '40'], [4096, '8020'], [65536, '808004']] as const) {
      const prev = patternPage(len);
      const cur = prev.map((x) => x ^ 0xff);
      const size = 1 + lenHex.length / 2 + len;
      const got = encode(b, prev, cur, size);
      assert.is(got === -1 ? 'overflow' : hex(got), `00${lenHex}${hex(cur)}`, `${v} len=${len}: at the limit`);
      assert.is(encode(b, prev, cur, size - 1), -1, `${v} len=${len}: at limit-1`);
    }
  }
});

xbzrle('encode equals the reference byte for byte on random page pairs, in every build', () => {
  for (const v of VARIANTS) {
    const b = setup(v);
    const rng = seeded(1234);
    for (let round = 0; round < 140; round++) {
      const len = [64, 128, 4096, 4096, 65536][round % 5];
      const prev = new Uint8Array(len);
      if (rng.chance(0.7)) rng.fill(prev);
      const cur = mutate(rng, prev, round % 7);
      const want = refXbzrleEncode(prev, cur, 2 * len);
      const got = encode(b, prev, cur, 2 * len);
      assert.ok(want !== -1, 'the reference never overflows at 2 * len');
      assert.is(got === -1 ? 'overflow' : hex(got), hex(want as Uint8Array), `${v} round ${round} len=${len} shape ${round % 7}`);
    }
  }
});

xbzrle('encode overflows at limit-1 and not at the delta length, never writing past out+limit', () => {
  for (const v of VARIANTS) {
    const b = setup(v);
    const rng = seeded(4321);
    for (let round = 0; round < 60; round++) {
      const len = round % 3 === 0 ? 64 : 4096;
      const prev = new Uint8Array(len);
      rng.fill(prev);
      const cur = mutate(rng, prev, round % 6);
      const ref = refXbzrleEncode(prev, cur, 3 * len) as Uint8Array;
      const got = encode(b, prev, cur, ref.length);
      assert.is(got === -1 ? 'overflow' : hex(got), hex(ref), `${v} round ${round}: limit = length`);
      assert.is(encode(b, prev, cur, ref.length - 1), -1, `${v} round ${round}: limit = length-1`);
      assert.is(refXbzrleEncode(prev, cur, ref.length - 1), -1, `round ${round}: reference at length-1`);
      const cut = rng.below(ref.length);
      assert.is(encode(b, prev, cur, cut), -1, `${v} round ${round}: limit ${cut} < ${ref.length}`);
    }
  }
});

xbzrle('decode(encode(x)) reproduces the page, and validate accepts every encoder output', () => {
  for (const v of VARIANTS) {
    const b = setup(v);
    const rng = seeded(99);
    for (let round = 0; round < 70; round++) {
      const len = [64, 4096, 8192, 65536][round % 4];
      const prev = new Uint8Array(len);
      rng.fill(prev);
      const cur = mutate(rng, prev, round % 7);
      const delta = encode(b, prev, cur, 2 * len);
      assert.ok(delta !== -1, `${v} round ${round}: encoded`);
      b.u8.set(delta, DELTA);
      assert.is(b.k.raw.xorDeltaValidate(DELTA, delta.length, len), 0, `${v} round ${round}: validate`);
      const d = decode(b, delta, prev);
      assert.is(d.code, 0, `${v} round ${round}: decode code`);
      assert.is(firstDifference(d.page, cur), -1, `${v} round ${round}: page`);
    }
  }
});

xbzrle('every truncated prefix of a valid delta is rejected with -1 and leaves the page byte for byte', () => {
  const rng = seeded(555);
  const deltas: { delta: Uint8Array; prev: Uint8Array }[] = GOLDEN.filter((g) => g.len === 4096).map((g) => ({ delta: unhex(g.delta), prev: g.base === 'pattern' ? patternPage(4096) : new Uint8Array(4096) }));
  for (let i = 0; i < 6; i++) {
    const prev = new Uint8Array(4096);
    rng.fill(prev);
    const cur = mutate(rng, prev, i % 3);
    deltas.push({ delta: refXbzrleEncode(prev, cur, 8192) as Uint8Array, prev });
  }
  for (const v of VARIANTS) {
    const b = setup(v);
    deltas.forEach(({ delta, prev }, which) => {
      const checkLens = delta.length < 300 ? delta.length : 300;
      for (let cut = 0; cut < delta.length; cut += cut < checkLens ? 1 : 37) {
        const prefix = delta.subarray(0, cut);
        const expected = prev.slice();
        const refCode = refXbzrleDecode(prefix, expected);
        // The whole delta sits in memory: the kernel must stop at deltaLen, not read on.
        const d = decode(b, delta, prev, cut);
        assert.is(d.code, refCode === 0 ? 0 : XB_TRUNCATED, `${v} delta ${which} prefix ${cut}/${delta.length}`);
        assert.is(refCode === 0 || refCode === XB_TRUNCATED, true, `reference: delta ${which} prefix ${cut}`);
        assert.is(firstDifference(d.page, expected), -1, `${v} delta ${which} prefix ${cut}: page`);
        assert.is(b.k.raw.xorDeltaValidate(DELTA, cut, prev.length), d.code, `${v} delta ${which} prefix ${cut}: validate`);
      }
    });
  }
});

// Hand-made corruptions: [page length, delta hex, expected code].
const CORRUPT: [number, string, number][] = [
  [4096, 'ff1f0101', 0], //                zrun 4095, nzrun 1: the last byte, valid
  [4096, 'ff1f020102', XB_OVERRUN], //     zrun 4095, nzrun 2: one byte past the end
  [4096, '80200101', XB_OVERRUN], //       zrun 4096 = the page end, then a byte
  [4096, `008120${'00'.repeat(4097)}`, XB_OVERRUN], // nzrun 4097
  [64, '3f0101', 0], //                    last byte of a 64-byte page
  [64, '400101', XB_OVERRUN], //           zrun 64
  [64, '0a0101 34020101', XB_OVERRUN], //  second pair ends one byte past the end (10+1+52+2 = 65)
  [4096, '80000101', XB_VARINT], //        zrun 0x80 0x00: over-long
  [4096, '0a810001', XB_VARINT], //        nzrun 0x81 0x00: over-long
  [4096, 'ffff7f0101', XB_OVERRUN], //     zrun 2^21-1: the widest varint parses, then passes the end
  [4096, '8080800101', XB_VARINT], //      zrun of four bytes
  [4096, '808080', XB_VARINT], //          three continuation bytes: wider than 21 bits
  [4096, '8080', XB_TRUNCATED], //         ends inside zrun
  [4096, '0a', XB_TRUNCATED], //           ends before nzrun
  [4096, '0a03a0a1', XB_TRUNCATED], //     ends inside the bytes
  [4096, '0000', XB_EMPTY_RUN], //         zero nzrun
  [4096, '0a00', XB_EMPTY_RUN], //         zero nzrun after a zrun
  [4096, '0001aa0001bb', XB_EMPTY_RUN], // zero zrun in the second pair
  [4096, '0001aa00', XB_EMPTY_RUN], //     zero zrun in the second pair, then nothing
];

xbzrle('hand-corrupted deltas return their error codes and leave the page untouched', () => {
  for (const v of VARIANTS) {
    const b = setup(v);
    for (const [len, deltaHex, want] of CORRUPT) {
      const delta = unhex(deltaHex);
      const label = `${v} len=${len} ${deltaHex.length > 40 ? `${deltaHex.slice(0, 40)}…` : deltaHex}`;
      assert.is(refXbzrleValidate(delta, len), want, `reference ${label}`);
      const page = patternPage(len);
      const expected = page.slice();
      refXbzrleDecode(delta, expected);
      const d = decode(b, delta, page);
      assert.is(d.code, want, `${label}: decode`);
      assert.is(b.k.raw.xorDeltaValidate(DELTA, delta.length, len), want, `${label}: validate`);
      assert.is(firstDifference(d.page, expected), -1, `${label}: page`);
    }
  }
});

/** Bytes that parse often: small run lengths, some continuation bytes, some anything. */
function garbage(rng: Rng, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => {
    const r = rng.below(4);
    return r === 0 ? rng.below(4) : r === 1 ? rng.below(40) : r === 2 ? 0x80 | rng.below(4) : rng.below(256);
  });
}

function checkHostile(b: Bench, delta: Uint8Array, page: Uint8Array, label: string): number {
  const expected = page.slice();
  const refCode = refXbzrleDecode(delta, expected);
  const d = decode(b, delta, page);
  assert.is(d.code === 0, refCode === 0, `${label}: accepted by kernel (${d.code}) iff by reference (${refCode}) [${hex(delta)}]`);
  if (d.code !== 0) {
    assert.ok([XB_TRUNCATED, XB_OVERRUN, XB_VARINT, XB_EMPTY_RUN].includes(d.code), `${label}: code ${d.code} is an XBZRLE error`);
    assert.is(firstDifference(d.page, page), -1, `${label}: rejected delta left the page unchanged`);
  } else {
    assert.is(firstDifference(d.page, expected), -1, `${label}: page as the reference decodes it`);
  }
  assert.is(b.k.raw.xorDeltaValidate(DELTA, delta.length, page.length), d.code, `${label}: validate agrees with decode`);
  return d.code;
}

xbzrle('random garbage never writes outside the page, and an error leaves the page unchanged', () => {
  for (const v of VARIANTS) {
    const b = setup(v);
    const rng = seeded(777);
    const codes = new Set<number>();
    for (let round = 0; round < 3000; round++) {
      const len = round % 2 === 0 ? 64 : 4096;
      const page = new Uint8Array(len);
      rng.fill(page);
      codes.add(checkHostile(b, garbage(rng, rng.below(48)), page, `${v} garbage ${round}`));
    }
    // The inputs reached every outcome, so the loop above tested each path.
    assert.equal([...codes].sort(), [-1, -2, -3, -4, 0].sort(), `${v}: outcomes seen`);
  }
});

xbzrle('bit flips of valid deltas decode like the reference or leave the page unchanged', () => {
  for (const v of VARIANTS) {
    const b = setup(v);
    const rng = seeded(888);
    for (let round = 0; round < 40; round++) {
      const len = round % 2 === 0 ? 64 : 4096;
      const prev = new Uint8Array(len);
      rng.fill(prev);
      const delta = refXbzrleEncode(prev, mutate(rng, prev, round % 3), 2 * len) as Uint8Array;
      if (delta.length === 0) continue;
      for (let flip = 0; flip < 25; flip++) {
        const bad = delta.slice();
        const at = flip < 8 ? flip % bad.length : rng.below(bad.length);
        bad[at] ^= 1 << rng.below(8);
        checkHostile(b, bad, prev, `${v} round ${round} flip byte ${at}`);
      }
    }
  }
});

xbzrle.run();
