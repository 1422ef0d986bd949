// The checked face of src/wasm/kernels.ts: every bad argument throws MS_ERR_INVALID_ARGUMENT naming
// that argument before the kernel runs (so memory is untouched and no WebAssembly.RuntimeError
// escapes), the boundary values are accepted, and the values returned are those the kernels define.

import { createHash } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode } from '../../src/errors.js';
import { Kernels, type KernelVariant } from '../../src/wasm/kernels.js';
import { firstDifference, hex, mxh64 } from '../_support/reference-kernels.js';

const VARIANTS: readonly KernelVariant[] = ['simd', 'scalar', 'debug'];
const END = 4 * 65536;
const A = 65536;
const B = 131072;

function setup(variant: KernelVariant, pages = 4): { k: Kernels; u8: Uint8Array } {
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  return { k: new Kernels(memory, variant), u8: new Uint8Array(memory.buffer) };
}

const digestOfMemory = (u8: Uint8Array): string => createHash('sha256').update(u8).digest('hex');

/** Asserts that `fn` throws MS_ERR_INVALID_ARGUMENT whose message names `name`. */
function rejects(fn: () => unknown, name: string, label: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err !== undefined, `${label}: throws`);
  assert.not.instance(err, WebAssembly.RuntimeError, `${label}: not a trap`);
  const e = err as { code?: string; message: string };
  assert.is(e.code, ErrorCode.INVALID_ARGUMENT, `${label}: code (${e.message})`);
  assert.match(e.message, new RegExp(`(^|\\W)${name}(\\W|$)`), `${label}: message names ${name}`);
}

type Call = [label: string, name: string, call: (k: Kernels) => unknown];

const BAD: Call[] = [
  ['set: bit = bits', 'bit', (k) => k.bitmapSet(A, 100, 100)],
  ['set: negative bit', 'bit', (k) => k.bitmapSet(A, 100, -1)],
  ['set: fractional bit', 'bit', (k) => k.bitmapSet(A, 100, 1.5)],
  ['set: NaN bit', 'bit', (k) => k.bitmapSet(A, 100, NaN)],
  ['clear: bit past the end', 'bit', (k) => k.bitmapClear(A, 64, 64)],
  ['test: bit past the end', 'bit', (k) => k.bitmapTest(A, 1, 1)],
  ['set: map in the reserved bytes', 'map', (k) => k.bitmapSet(1024, 64, 0)],
  ['set: map not 8-byte aligned', 'map', (k) => k.bitmapSet(A + 4, 64, 0)],
  ['set: map past the end of memory', 'map', (k) => k.bitmapSet(END - 8, 128, 0)],
  ['test: negative map', 'map', (k) => k.bitmapTest(-8, 64, 0)],
  ['count: negative bits', 'bits', (k) => k.bitmapCount(A, -1)],
  ['count: 2^32 bits', 'bits', (k) => k.bitmapCount(A, 2 ** 32)],
  ['count: string map', 'map', (k) => k.bitmapCount('65536' as unknown as number, 64)],
  ['nextSet: negative from', 'from', (k) => k.bitmapNextSet(A, 64, -1)],
  ['nextSet: fractional from', 'from', (k) => k.bitmapNextSet(A, 64, 0.5)],
  ['sync: snapshot one word after dirty', 'snapshot', (k) => k.bitmapSyncAndClear(A, A + 8, 256)],
  ['sync: snapshot one word before dirty', 'snapshot', (k) => k.bitmapSyncAndClear(A + 8, A, 256)],
  ['sync: snapshot = dirty', 'snapshot', (k) => k.bitmapSyncAndClear(A, A, 64)],
  ['sync: snapshot past the end', 'snapshot', (k) => k.bitmapSyncAndClear(A, END - 8, 128)],
  ['sync: dirty in the reserved bytes', 'dirty', (k) => k.bitmapSyncAndClear(8, A, 64)],
  ['merge: bits not whole words', 'bits', (k) => k.bitmapMerge(A, B, 100)],
  ['merge: source in the reserved bytes', 'source', (k) => k.bitmapMerge(A, 0, 64)],
  ['merge: target past the end', 'target', (k) => k.bitmapMerge(END, B, 64)],
  ['fill: map past the end', 'map', (k) => k.bitmapFill(END - 8, 65)],
  ['zero: map not aligned', 'map', (k) => k.bitmapZero(A + 1, 64)],
  ['isZeroPage: len 100', 'len', (k) => k.isZeroPage(B, 100)],
  ['isZeroPage: len 0', 'len', (k) => k.isZeroPage(B, 0)],
  ['isZeroPage: negative len', 'len', (k) => k.isZeroPage(B, -64)],
  ['isZeroPage: len over 16 MiB', 'len', (k) => k.isZeroPage(B, 2 ** 24 + 64)],
  ['isZeroPage: ptr 0', 'ptr', (k) => k.isZeroPage(0, 64)],
  ['isZeroPage: page past the end', 'ptr', (k) => k.isZeroPage(END - 64, 4096)],
  ['scan: page size 4000', 'pageSize', (k) => k.scanZeroPages(B, 4000, 1, A)],
  ['scan: pages past the end', 'ptr', (k) => k.scanZeroPages(B, 4096, 40, A)],
  ['scan: outMap in the reserved bytes', 'outMap', (k) => k.scanZeroPages(B, 4096, 1, 64)],
  ['hashPage: ptr 65535', 'ptr', (k) => k.hashPage(65535, 128)],
  ['hashPage: fractional ptr', 'ptr', (k) => k.hashPage(B + 0.5, 128)],
  ['hashPage: len not a multiple of 128', 'len', (k) => k.hashPage(B, 64)],
  ['zeroPageHash: pageSize not a multiple of 128', 'pageSize', (k) => k.zeroPageHash(192)],
  ['hashPage: len 63', 'len', (k) => k.hashPage(B, 63)],
  ['hashPage: page past the end', 'ptr', (k) => k.hashPage(END - 4032, 4096)],
  ['copyAndHash: dst past the end', 'dst', (k) => k.copyAndHash(END - 64, B, 4096)],
  ['copyAndHash: src in the reserved bytes', 'src', (k) => k.copyAndHash(B, 4096, 4096)],
  ['zeroPageHash: 0', 'pageSize', (k) => k.zeroPageHash(0)],
  ['zeroPageHash: 65', 'pageSize', (k) => k.zeroPageHash(65)],
  ['encode: negative limit', 'limit', (k) => k.xorDeltaEncode(A, B, 4096, B + 8192, -1)],
  ['encode: fractional limit', 'limit', (k) => k.xorDeltaEncode(A, B, 4096, B + 8192, 10.5)],
  ['encode: out past the end', 'out', (k) => k.xorDeltaEncode(A, B, 4096, END - 100, 4096)],
  ['encode: prev in the reserved bytes', 'prev', (k) => k.xorDeltaEncode(0, B, 4096, B + 8192, 4096)],
  ['encode: cur past the end', 'cur', (k) => k.xorDeltaEncode(A, END - 4000, 4096, B + 8192, 4096)],
  ['encode: len 4097', 'len', (k) => k.xorDeltaEncode(A, B, 4097, B + 8192, 4096)],
  ['decode: delta past the end', 'delta', (k) => k.xorDeltaDecode(END - 10, 11, B, 4096)],
  ['decode: negative delta length', 'delta', (k) => k.xorDeltaDecode(A, -1, B, 4096)],
  ['decode: page in the reserved bytes', 'page', (k) => k.xorDeltaDecode(A, 4, 4096, 4096)],
  ['decode: len 0', 'len', (k) => k.xorDeltaDecode(A, 4, B, 0)],
];

const wrappers = suite('wrappers');

wrappers('bad arguments throw MS_ERR_INVALID_ARGUMENT naming the argument, before memory is touched', () => {
  for (const v of VARIANTS) {
    const { k, u8 } = setup(v);
    u8.fill(0x5a, A, END); // non-zero everywhere, so a stray fill or clear would show
    const before = digestOfMemory(u8);
    for (const [label, name, call] of BAD) rejects(() => call(k), name, `${v} ${label}`);
    assert.is(digestOfMemory(u8), before, `${v}: memory unchanged`);
  }
});

wrappers('boundary values are accepted and return what the raw exports return', () => {
  for (const v of VARIANTS) {
    const { k, u8 } = setup(v);
    assert.is(k.bitmapSet(END - 8, 64, 63), true, `${v} set the last bit of a map ending at the memory end`);
    assert.is(k.bitmapSet(END - 8, 64, 63), false, `${v} set it again`);
    assert.is(k.bitmapTest(END - 8, 64, 63), true, `${v} test`);
    assert.is(k.bitmapNextSet(END - 8, 64, 63), 63, `${v} nextSet from the last bit`);
    assert.is(k.bitmapNextSet(END - 8, 64, 64), -1, `${v} nextSet from the end`);
    assert.is(k.bitmapCount(END - 8, 64), 1, `${v} count`);
    assert.is(k.bitmapClear(END - 8, 64, 63), true, `${v} clear`);
    assert.is(k.bitmapCount(END, 0), 0, `${v} empty map at the memory end`);
    k.bitmapFill(A, 100);
    assert.is(k.bitmapSyncAndClear(A, A + 16, 100), 100, `${v} sync into the adjacent map`);
    assert.is(k.bitmapMerge(A, A + 16, 128), 100, `${v} merge back`);
    k.bitmapZero(A + 16, 128);
    assert.is(k.bitmapCount(A + 16, 128), 0, `${v} zero`);
    u8.fill(0, END - 4096, END);
    assert.is(k.isZeroPage(END - 4096, 4096), true, `${v} page ending at the memory end`);
    assert.is(k.scanZeroPages(END - 4096, 64, 64, A), 64, `${v} scan`);
    assert.is(k.hashPage(END - 128, 128), BigInt.asUintN(64, k.raw.hashPage(END - 128, 128)), `${v} hashPage = raw, read unsigned`);
    assert.is(k.copyAndHash(B, END - 4096, 4096), BigInt.asUintN(64, k.raw.hashPage(END - 4096, 4096)), `${v} copyAndHash = raw hashPage`);
    assert.is(k.zeroPageHash(128), BigInt.asUintN(64, k.raw.zeroPageHash(128)), `${v} zeroPageHash = raw`);
    assert.is(k.xorDeltaEncode(B, END - 4096, 4096, A, 0), 0, `${v} equal pages, limit 0, out at a valid offset`);
    assert.is(k.xorDeltaDecode(END, 0, B, 4096), 0, `${v} empty delta at the memory end`);
  }
});

wrappers('the simd build reports SIMD and the scalar and debug builds do not; all report threads', () => {
  const features = VARIANTS.map((v) => setup(v, 2).k.raw.features());
  assert.equal(features, [3, 2, 2]);
  assert.equal(VARIANTS.map((v) => setup(v, 2).k.simd), [true, false, false]);
});

wrappers('Kernels refuses a memory that is not shared with MS_ERR_WASM_UNAVAILABLE', () => {
  for (const v of VARIANTS) {
    let code: unknown;
    try {
      new Kernels(new WebAssembly.Memory({ initial: 2, maximum: 2 }), v);
    } catch (e) {
      code = (e as { code?: unknown }).code;
    }
    assert.is(code, ErrorCode.WASM_UNAVAILABLE, v);
  }
});

// ---- edges of the wrappers' contract ---------------------------------------------------------------

wrappers('bitmapNextSet from 2^32 or more is past the end and returns -1 (not a wrapped-around bit)', () => {
  for (const v of VARIANTS) {
    const { k } = setup(v);
    k.bitmapSet(A, 128, 5);
    // `from` is checked for >= 0 only; the u32 parameter wraps 2^32 + 3 to 3.
    assert.is(k.bitmapNextSet(A, 128, 2 ** 32 + 3), -1, `${v} from 2^32 + 3 in a 128-bit map`);
  }
});

wrappers('bitmaps of 2^31 bits or more are refused, since bit indices come back as i32', () => {
  for (const v of VARIANTS) {
    const { k } = setup(v, 4098);
    rejects(() => k.bitmapSet(A, 2 ** 31, 0), 'bits', `${v} 2^31 bits`);
    assert.is(k.bitmapSet(A, 2 ** 31 - 1, 2 ** 31 - 2), true, `${v} 2^31 - 1 bits are accepted`);
    assert.is(k.bitmapNextSet(A, 2 ** 31 - 1, 0), 2 ** 31 - 2, `${v} and the highest bit comes back positive`);
  }
});

wrappers('scanZeroPages names count when count is negative or fractional', () => {
  for (const v of VARIANTS) {
    const { k } = setup(v);
    rejects(() => k.scanZeroPages(B, 64, -1, A), 'count', `${v} count -1`);
    rejects(() => k.scanZeroPages(B, 64, 1.5, A), 'count', `${v} count 1.5`);
  }
});

wrappers('hashPage, copyAndHash and zeroPageHash return the unsigned 64-bit hash that entries and hash tables store', () => {
  for (const v of VARIANTS) {
    const { k, u8 } = setup(v);
    for (let i = 0; i < 4096; i++) u8[B + i] = (i * 3) & 0xff; // mxh64 = 0xebdee8a6c5923885: top bit set
    const want = mxh64(u8.slice(B, B + 4096));
    assert.is(want >> 63n, 1n, 'this page hashes above 2^63');
    assert.is(k.copyAndHash(A, B, 4096), want, `${v} copyAndHash`);
    assert.is(k.hashPage(B, 4096), want, `${v} hashPage`);
    assert.is(k.zeroPageHash(8192), mxh64(new Uint8Array(8192)), `${v} zeroPageHash(8192) = 0x2fc7b2d4203dc3b6`);
  }
});

wrappers('xorDeltaEncode on a 4 MiB page (accepted by the wrapper) yields a delta that decodes back', () => {
  deltaBeyondVarint(4 << 20, 1 << 21);
});

wrappers('xorDeltaEncode on an 8 MiB page (accepted by the wrapper) yields a delta that decodes back', () => {
  deltaBeyondVarint(8 << 20, 0x404000);
});

/**
 * Encodes a page of `len` bytes that differs from a zero page only at `at` (a zrun of `at` bytes, past
 * uleb128's 21 bits) through the checked wrappers. Either the wrapper refuses `len`, naming it, or the
 * delta it returns must decode back to the page.
 */
function deltaBeyondVarint(len: number, at: number): void {
  const prev = 65536;
  const cur = prev + len;
  const out = cur + len;
  const pages = (out + 65536) / 65536;
  for (const v of ['simd', 'scalar'] as const) {
    const { k, u8 } = setup(v, pages);
    u8[cur + at] = 1;
    let n: number;
    try {
      n = k.xorDeltaEncode(prev, cur, len, out, 64);
    } catch (e) {
      rejects(() => { throw e; }, 'len', `${v} len ${len}`);
      continue;
    }
    const delta = hex(u8.slice(out, out + Math.max(n, 0)));
    assert.ok(n > 0, `${v} len ${len}: encoded (${n})`);
    const rc = k.xorDeltaDecode(out, n, prev, len);
    assert.is(rc, 0, `${v} len ${len}: decode of the kernel's own delta [${delta}]`);
    const page = u8.slice(prev, prev + len);
    const expected = new Uint8Array(len);
    expected[at] = 1;
    assert.is(firstDifference(page, expected), -1, `${v} len ${len}: decoded page differs from the encoded one [${delta}]`);
  }
}

wrappers('a trap in an unchecked (raw) call surfaces as MS_ERR_WASM_TRAP naming the kernel', () => {
  for (const v of VARIANTS) {
    const { k } = setup(v);
    let err: unknown;
    try {
      k.raw.hashPage(END - 64, 4096); // reads past the end of the memory
    } catch (e) {
      err = e;
    }
    const e = err as { code?: string; message: string; cause?: unknown };
    assert.is(e?.code, ErrorCode.WASM_TRAP, `${v}: code`);
    assert.match(e.message, /kernel hashPage trapped/, `${v}: message`);
    assert.instance(e.cause, WebAssembly.RuntimeError, `${v}: cause is the trap`);
  }
});

wrappers.run();
