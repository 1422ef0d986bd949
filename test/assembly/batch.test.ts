// encodePages / applyPages (assembly/batch-encode.ts, batch-apply.ts) through the raw exports: a
// source memory encodes its RAM into entries + payload, the bytes are copied into a second memory
// (as the wire would), applied there, and the pages, hash tables and digests of both are compared.
//
//   64K DIGEST | +64 RESULT | +128 SNAPSHOT | +256 PRESENT | +384 CLAIM | +512 TAGS | +1024 HASHES
//   +4096 ENTRIES | 2×64K SCRATCH | 3×64K RAM (48 pages of 4 KiB) | 6×64K PAYLOAD | 9×64K CACHE

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { PageEncoding } from '../../src/protocol/constants.js';
import { KernelCode, Kernels, KERNEL_ENTRY_BYTES, type KernelVariant } from '../../src/wasm/kernels.js';
import {
  firstDifference, mxh64, refDigest, refIsZeroPage, refXbzrleEncode, refXbzrleParse,
} from '../_support/reference-kernels.js';
import { seeded } from '../_support/seeded.js';

const VARIANTS: readonly KernelVariant[] = ['simd', 'scalar', 'debug'];
const PS = 4096;
const PAGES = 48;
const BASE = 1000; // region page of slab page 0
const KEYBASE = 2n << 32n; // region 2
const DIGEST = 65536;
const RESULT = DIGEST + 64;
const SNAPSHOT = DIGEST + 128;
const PRESENT = DIGEST + 256;
const CLAIM = DIGEST + 384;
const TAGS = DIGEST + 512;
const HASHES = DIGEST + 1024;
const ENTRIES = DIGEST + 4096;
const SCRATCH = 2 * 65536;
const RAM = 3 * 65536;
const PAYLOAD = 6 * 65536;
const CACHE = 9 * 65536;
const u64 = (x: bigint): bigint => BigInt.asUintN(64, x);

interface Host { k: Kernels; u8: Uint8Array; dv: DataView; zeroHash: bigint }
interface Entry { page: number; encoding: number; size: number; hash: bigint }
interface Encoded { n: number; next: number; used: number; zeros: number; raws: number; deltas: number; misses: number; entries: Entry[]; entryBytes: Uint8Array; payload: Uint8Array }
interface Applied { off: number; applied: number; duplicates: number; stop: number; code: number }

/** A fresh memory laid out as above, hash table at the zero hash, digest 0 (as slab.ts does). */
function host(variant: KernelVariant): Host {
  const memory = new WebAssembly.Memory({ initial: 12, maximum: 12, shared: true });
  const k = new Kernels(memory, variant);
  const zeroHash = u64(k.raw.zeroPageHash(PS));
  k.raw.fillU64(HASHES, PAGES, zeroHash);
  return { k, u8: new Uint8Array(memory.buffer), dv: new DataView(memory.buffer), zeroHash };
}

const page = (h: Host, p: number): Uint8Array => h.u8.slice(RAM + p * PS, RAM + (p + 1) * PS);
const hashOf = (h: Host, p: number): bigint => h.dv.getBigUint64(HASHES + p * 8, true);
const digestOf = (h: Host): bigint => h.dv.getBigUint64(DIGEST, true);

/** One third zero pages, the rest random or sparse. */
function fillRam(h: Host, seed: number): void {
  const rng = seeded(seed);
  for (let p = 0; p < PAGES; p++) {
    const kind = p % 3;
    const view = h.u8.subarray(RAM + p * PS, RAM + (p + 1) * PS);
    if (kind === 1) rng.fill(view);
    else if (kind === 2) for (let i = 0; i < 4; i++) view[rng.below(PS)] = 1 + rng.below(255);
  }
}

function encode(h: Host, opts: { from?: number; to?: number; maxEntries?: number; payloadLimit?: number; cacheSlots?: number; cacheReadOnly?: boolean; deltaLimit?: number } = {}): Encoded {
  const n = h.k.raw.encodePages(
    RAM, PS, SNAPSHOT, opts.from ?? 0, opts.to ?? PAGES, BASE, KEYBASE, HASHES, DIGEST,
    ENTRIES, opts.maxEntries ?? PAGES, PAYLOAD, opts.payloadLimit ?? PAGES * PS,
    CACHE, TAGS, opts.cacheSlots ?? 0, opts.cacheReadOnly === true ? 1 : 0, SCRATCH, opts.deltaLimit ?? PS, RESULT,
  );
  const r = (i: number): number => h.dv.getUint32(RESULT + i * 4, true);
  const entries: Entry[] = [];
  for (let i = 0; i < n; i++) {
    const e = ENTRIES + i * KERNEL_ENTRY_BYTES;
    const word = h.dv.getUint32(e + 4, true);
    entries.push({ page: h.dv.getUint32(e, true), encoding: word >>> 24, size: word & 0xffffff, hash: h.dv.getBigUint64(e + 8, true) });
  }
  assert.is(r(0), n, 'result entries = return value');
  return {
    n, next: r(1), used: r(2), zeros: r(3), raws: r(4), deltas: r(5), misses: r(6), entries,
    entryBytes: h.u8.slice(ENTRIES, ENTRIES + n * KERNEL_ENTRY_BYTES), payload: h.u8.slice(PAYLOAD, PAYLOAD + r(2)),
  };
}

/** Copies entries and payload into `h` (as received) and applies them. */
function apply(h: Host, entryBytes: Uint8Array, payload: Uint8Array, claim = 0): Applied {
  h.u8.set(entryBytes, ENTRIES);
  h.u8.set(payload, PAYLOAD);
  const count = entryBytes.length / KERNEL_ENTRY_BYTES;
  const off = h.k.raw.applyPages(RAM, PS, PAGES, BASE, KEYBASE, ENTRIES, 0, count, PAYLOAD, 0, HASHES, DIGEST, PRESENT, claim, SCRATCH, RESULT);
  const r = (i: number): number => h.dv.getInt32(RESULT + i * 4, true);
  return { off, applied: r(0), duplicates: r(1), stop: r(2), code: r(3) };
}

function entryBytesOf(entries: Entry[]): Uint8Array {
  const out = new Uint8Array(entries.length * KERNEL_ENTRY_BYTES);
  const dv = new DataView(out.buffer);
  entries.forEach((e, i) => {
    dv.setUint32(i * 16, e.page, true);
    dv.setUint32(i * 16 + 4, (e.size | (e.encoding << 24)) >>> 0, true);
    dv.setBigUint64(i * 16 + 8, e.hash, true);
  });
  return out;
}

function assertSameMemory(src: Host, dst: Host, label: string): void {
  for (let p = 0; p < PAGES; p++) {
    assert.is(firstDifference(page(dst, p), page(src, p)), -1, `${label}: page ${p}`);
    assert.is(hashOf(dst, p), hashOf(src, p), `${label}: hash of page ${p}`);
  }
  assert.is(digestOf(dst), digestOf(src), `${label}: digest`);
}

const batch = suite('batch');

batch('the kernels write 16-byte entries with the protocol\'s encoding numbers', () => {
  for (const v of VARIANTS) {
    const src = host(v);
    assert.is(src.k.raw.entryBytes(), KERNEL_ENTRY_BYTES, `${v} entryBytes`);
    fillRam(src, 1);
    src.k.raw.bitmapFill(SNAPSHOT, 3);
    const e = encode(src);
    assert.equal(e.entries.map((x) => x.encoding), [PageEncoding.ZERO, PageEncoding.RAW, PageEncoding.RAW], v);
  }
});

batch('raw and zero pages round-trip into a second memory with equal pages, hashes and digests', () => {
  for (const v of VARIANTS) {
    const src = host(v);
    const dst = host(v);
    fillRam(src, 2);
    src.k.raw.bitmapFill(SNAPSHOT, PAGES);
    const e = encode(src);
    assert.equal([e.n, e.next, e.zeros, e.raws, e.deltas, e.misses], [PAGES, PAGES, PAGES / 3, (2 * PAGES) / 3, 0, 0], `${v} counts`);
    assert.is(src.k.raw.bitmapCount(SNAPSHOT, 1), 0, `${v}: encode consumed every snapshot bit`);
    const hashes: bigint[] = [];
    let at = 0;
    e.entries.forEach((entry, i) => {
      const content = page(src, i);
      const zero = refIsZeroPage(content);
      hashes.push(mxh64(content));
      assert.equal(entry, { page: BASE + i, encoding: zero ? PageEncoding.ZERO : PageEncoding.RAW, size: zero ? 0 : PS, hash: mxh64(content) }, `${v} entry ${i}`);
      if (!zero) {
        assert.is(firstDifference(e.payload.subarray(at, at + PS), content), -1, `${v} payload of page ${i}`);
        at += PS;
      }
      assert.is(hashOf(src, i), hashes[i], `${v} source hash table, page ${i}`);
    });
    assert.is(e.used, at, `${v} payload bytes`);
    assert.is(digestOf(src), refDigest(hashes, KEYBASE + BigInt(BASE), src.zeroHash), `${v} source digest = reference`);
    const a = apply(dst, e.entryBytes, e.payload);
    assert.equal(a, { off: e.used, applied: PAGES, duplicates: 0, stop: PAGES, code: 0 }, `${v} apply result`);
    assertSameMemory(src, dst, v);
    assert.is(dst.k.raw.bitmapCount(PRESENT, 1), PAGES, `${v} present bits`);
  }
});

batch('maxEntries, payloadLimit and [from, to) split the work, and nextPage resumes without repeats', () => {
  for (const v of VARIANTS) {
    const src = host(v);
    const dst = host(v);
    fillRam(src, 3);
    const rng = seeded(33);
    const dirty = Array.from({ length: PAGES }, () => rng.chance(0.6));
    dirty.forEach((d, p) => { if (d) src.k.raw.bitmapSet(SNAPSHOT, p); });
    const from = 5;
    const to = 41;
    const seen: number[] = [];
    let next = from;
    for (let call = 0; next < to; call++) {
      assert.ok(call < PAGES, `${v}: progress`);
      const e = encode(src, { from: next, to, maxEntries: 4, payloadLimit: 3 * PS + 100 });
      assert.ok(e.n <= 4 && e.used <= 3 * PS + 100, `${v} call ${call}: limits (${e.n} entries, ${e.used} bytes)`);
      assert.ok(e.next > next || e.next === to, `${v} call ${call}: next advances`);
      seen.push(...e.entries.map((x) => x.page - BASE));
      const a = apply(dst, e.entryBytes, e.payload);
      assert.equal([a.code, a.applied], [0, e.n], `${v} call ${call}: applied`);
      next = e.next;
    }
    const want = dirty.map((d, p) => (d && p >= from && p < to ? p : -1)).filter((p) => p >= 0);
    assert.equal(seen, want, `${v}: every dirty page in range, once, in order`);
    for (let p = 0; p < PAGES; p++) {
      assert.is(src.k.raw.bitmapTest(SNAPSHOT, p), dirty[p] && (p < from || p >= to) ? 1 : 0, `${v}: snapshot bit ${p} after`);
      if (seen.includes(p)) assert.is(firstDifference(page(dst, p), page(src, p)), -1, `${v}: page ${p} applied`);
    }
  }
});

/**
 * Two passes with an XBZRLE cache, the second read-only when asked (a final pass); returns both hosts
 * and the cache and its tags as they were before the second pass.
 */
function twoPasses(v: KernelVariant, cacheReadOnly = false): { src: Host; dst: Host; second: Encoded; prev: Uint8Array[]; changed: Map<number, string>; cacheBefore: Uint8Array } {
  const src = host(v);
  const dst = host(v);
  fillRam(src, 4);
  src.k.raw.bitmapFill(SNAPSHOT, PAGES);
  const first = encode(src, { cacheSlots: 64, deltaLimit: PS / 4 });
  const nonZero = PAGES - PAGES / 3;
  assert.equal([first.zeros, first.raws, first.deltas, first.misses], [PAGES / 3, nonZero, 0, nonZero], `${v}: first pass with a cache = misses, sent raw`);
  assert.equal(apply(dst, first.entryBytes, first.payload).code, 0, `${v}: first pass applied`);
  const prev = Array.from({ length: PAGES }, (_, p) => page(src, p));
  // Second pass: a few bytes, edges, a run, nothing, everything, turned zero, was zero.
  const changed = new Map<number, string>([[1, 'delta'], [2, 'delta'], [4, 'delta'], [5, 'delta'], [7, 'empty'], [10, 'raw'], [13, 'zero'], [3, 'miss']]);
  const at = (p: number, i: number, x: number): void => { src.u8[RAM + p * PS + i] ^= x; };
  at(1, 10, 0x55); at(1, 11, 0x55); at(1, 4000, 0x01);
  at(2, 0, 0xff); at(2, PS - 1, 0xff);
  for (let i = 100; i < 400; i++) at(4, i, 0x3c);
  at(5, 2048, 0x80);
  for (let i = 0; i < PS; i++) at(10, i, 0xa5);
  src.u8.fill(0, RAM + 13 * PS, RAM + 14 * PS);
  at(3, 17, 0x09); // page 3 was zero: not cached
  for (const p of changed.keys()) src.k.raw.bitmapSet(SNAPSHOT, p);
  const cacheBefore = cacheBytes(src);
  const second = encode(src, { cacheSlots: 64, cacheReadOnly, deltaLimit: PS / 4 });
  return { src, dst, second, prev, changed, cacheBefore };
}

/** A copy of the 64-slot cache and its tags. */
function cacheBytes(h: Host): Uint8Array {
  return Uint8Array.from([...h.u8.subarray(CACHE, CACHE + 64 * PS), ...h.u8.subarray(TAGS, TAGS + 64 * 4)]);
}

batch('a second pass with a cache sends changed pages as XBZRLE deltas that rebuild them on the target', () => {
  for (const v of VARIANTS) {
    const { src, dst, second, prev, changed } = twoPasses(v);
    assert.equal([second.n, second.zeros, second.raws, second.deltas, second.misses], [8, 1, 2, 5, 1], `${v} counts`);
    let off = 0;
    for (const e of second.entries) {
      const p = e.page - BASE;
      const kind = changed.get(p);
      const cur = page(src, p);
      assert.is(e.hash, mxh64(cur), `${v} page ${p}: hash`);
      if (kind === 'delta' || kind === 'empty') {
        const want = refXbzrleEncode(prev[p], cur, PS / 4) as Uint8Array;
        assert.equal([e.encoding, e.size], [PageEncoding.XBZRLE, want.length], `${v} page ${p} (${kind})`);
        assert.is(firstDifference(second.payload.subarray(off, off + e.size), want), -1, `${v} page ${p}: delta bytes`);
        if (kind === 'empty') assert.is(e.size, 0, `${v} page ${p}: unchanged page, empty delta`);
      } else {
        assert.equal([e.encoding, e.size], kind === 'zero' ? [PageEncoding.ZERO, 0] : [PageEncoding.RAW, PS], `${v} page ${p} (${kind})`);
      }
      off += e.size;
    }
    const a = apply(dst, second.entryBytes, second.payload);
    assert.equal(a, { off: second.used, applied: 8, duplicates: 0, stop: 8, code: 0 }, `${v} apply`);
    assertSameMemory(src, dst, v);
  }
});

batch('a final pass reads the cache and writes nothing to it: the same deltas, every slot and tag as it was', () => {
  for (const v of VARIANTS) {
    const updating = twoPasses(v).second;
    const { src, dst, second, cacheBefore } = twoPasses(v, true);
    assert.equal([second.n, second.zeros, second.raws, second.deltas, second.misses], [8, 1, 2, 5, 1], `${v} counts`);
    assert.equal(second.entries, updating.entries, `${v}: the entries a pass that updates the cache sends`);
    assert.is(firstDifference(second.payload, updating.payload), -1, `${v}: the same payload`);
    assert.is(firstDifference(cacheBytes(src), cacheBefore), -1, `${v}: the cache and its tags unchanged`);
    assert.is(apply(dst, second.entryBytes, second.payload).code, 0, `${v} apply`);
    assertSameMemory(src, dst, v);
  }
});

batch('a final pass over a cache no pass filled sends every page raw or zero and leaves the cache unwritten', () => {
  for (const v of VARIANTS) {
    const src = host(v);
    fillRam(src, 6);
    src.k.raw.bitmapFill(SNAPSHOT, PAGES);
    const e = encode(src, { cacheSlots: 64, cacheReadOnly: true });
    assert.equal([e.zeros, e.raws, e.deltas, e.misses], [PAGES / 3, PAGES - PAGES / 3, 0, PAGES - PAGES / 3], `${v} counts`);
    assert.ok(cacheBytes(src).every((b) => b === 0), `${v}: the cache never written`);
  }
});

batch('a corrupted raw payload byte stops apply with -12 at that entry and leaves the page untouched', () => {
  for (const v of VARIANTS) {
    const src = host(v);
    const dst = host(v);
    fillRam(src, 5);
    src.k.raw.bitmapFill(SNAPSHOT, PAGES);
    const e = encode(src);
    const victim = 7; // page 7 is random, the 5th raw page: its payload starts at 4 * PS
    assert.is(e.entries[victim].encoding, PageEncoding.RAW, 'victim is raw');
    const offset = e.entries.slice(0, victim).reduce((s, x) => s + x.size, 0);
    const bad = e.payload.slice();
    bad[offset + 1234] ^= 0x10;
    const a = apply(dst, e.entryBytes, bad);
    assert.equal(a, { off: offset, applied: victim, duplicates: 0, stop: victim, code: KernelCode.APPLY_ERR_HASH }, `${v} result`);
    assert.ok(page(dst, victim).every((x) => x === 0), `${v}: victim page untouched`);
    assert.is(hashOf(dst, victim), dst.zeroHash, `${v}: victim hash not recorded`);
    assert.is(dst.k.raw.bitmapTest(PRESENT, victim), 0, `${v}: victim not present`);
    for (let p = 0; p < victim; p++) assert.is(firstDifference(page(dst, p), page(src, p)), -1, `${v}: page ${p} before the victim applied`);
    const applied = Array.from({ length: victim }, (_, p) => hashOf(src, p));
    assert.is(digestOf(dst), refDigest(applied, KEYBASE + BigInt(BASE), dst.zeroHash), `${v}: digest covers the applied pages only`);
  }
});

batch('a corrupted XBZRLE data byte stops apply with -12 and leaves the target page untouched', () => {
  for (const v of VARIANTS) {
    const { dst, second } = twoPasses(v);
    const victim = second.entries.findIndex((x) => x.encoding === PageEncoding.XBZRLE && x.size > 0);
    const offset = second.entries.slice(0, victim).reduce((s, x) => s + x.size, 0);
    const delta = second.payload.subarray(offset, offset + second.entries[victim].size);
    const pairs = refXbzrleParse(delta, PS);
    assert.ok(typeof pairs !== 'number' && pairs.length > 0, 'victim delta parses');
    const dataAt = offset + (pairs[0].bytes.byteOffset - delta.byteOffset); // first verbatim byte
    const bad = second.payload.slice();
    bad[dataAt] ^= 0x01;
    const p = second.entries[victim].page - BASE;
    const before = page(dst, p);
    const hashBefore = hashOf(dst, p);
    const a = apply(dst, second.entryBytes, bad);
    assert.equal([a.code, a.stop, a.applied, a.off], [KernelCode.APPLY_ERR_HASH, victim, victim, offset], `${v} result`);
    assert.is(firstDifference(page(dst, p), before), -1, `${v}: page ${p} untouched`);
    assert.is(hashOf(dst, p), hashBefore, `${v}: hash of page ${p} unchanged`);
  }
});

batch('apply rejects a bad page, size, hash or encoding with its code before touching the page', () => {
  for (const v of VARIANTS) {
    const dst = host(v);
    dst.u8.fill(0x42, RAM, RAM + PS); // page 0 holds data the bad entries must not touch
    const good = mxh64(new Uint8Array(PS).fill(7));
    dst.u8.fill(7, PAYLOAD, PAYLOAD + PS);
    const cases: [string, Entry, number][] = [
      ['page past the slab', { page: BASE + PAGES, encoding: PageEncoding.RAW, size: PS, hash: good }, KernelCode.APPLY_ERR_PAGE_RANGE],
      ['page before the slab', { page: BASE - 1, encoding: PageEncoding.RAW, size: PS, hash: good }, KernelCode.APPLY_ERR_PAGE_RANGE],
      ['raw of 4032 bytes', { page: BASE, encoding: PageEncoding.RAW, size: PS - 64, hash: good }, KernelCode.APPLY_ERR_SIZE],
      ['zero with a size', { page: BASE, encoding: PageEncoding.ZERO, size: 1, hash: dst.zeroHash }, KernelCode.APPLY_ERR_SIZE],
      ['zero with a non-zero hash', { page: BASE, encoding: PageEncoding.ZERO, size: 0, hash: good }, KernelCode.APPLY_ERR_HASH],
      ['raw with the wrong hash', { page: BASE, encoding: PageEncoding.RAW, size: PS, hash: good ^ 1n }, KernelCode.APPLY_ERR_HASH],
      ['xbzrle longer than a page', { page: BASE, encoding: PageEncoding.XBZRLE, size: PS + 1, hash: good }, KernelCode.APPLY_ERR_SIZE],
      ['encoding 7', { page: BASE, encoding: 7, size: PS, hash: good }, KernelCode.APPLY_ERR_ENCODING],
      ['lz4 goes to the host', { page: BASE, encoding: PageEncoding.LZ4, size: 100, hash: good }, KernelCode.APPLY_NEEDS_HOST],
    ];
    for (const [name, entry, code] of cases) {
      const a = apply(dst, entryBytesOf([entry]), dst.u8.slice(PAYLOAD, PAYLOAD + PS));
      assert.equal(a, { off: 0, applied: 0, duplicates: 0, stop: 0, code }, `${v} ${name}`);
      assert.ok(page(dst, 0).every((x) => x === 0x42), `${v} ${name}: page untouched`);
      assert.is(digestOf(dst), 0n, `${v} ${name}: digest untouched`);
    }
    // A malformed delta reports the XBZRLE code itself.
    dst.u8.set([0x80, 0x00, 0x01, 0x01], PAYLOAD);
    const a = apply(dst, entryBytesOf([{ page: BASE, encoding: PageEncoding.XBZRLE, size: 4, hash: good }]), dst.u8.slice(PAYLOAD, PAYLOAD + 4));
    assert.equal([a.code, a.applied], [KernelCode.XBZRLE_ERR_VARINT, 0], `${v} over-long varint in a delta`);
    assert.ok(page(dst, 0).every((x) => x === 0x42), `${v} malformed delta: page untouched`);
  }
});

batch('a ZERO entry zeroes a page whose recorded hash is not the zero hash', () => {
  for (const v of VARIANTS) {
    const dst = host(v);
    dst.u8.fill(9, RAM + 4 * PS, RAM + 5 * PS);
    dst.dv.setBigUint64(HASHES + 4 * 8, mxh64(new Uint8Array(PS).fill(9)), true);
    const a = apply(dst, entryBytesOf([{ page: BASE + 4, encoding: PageEncoding.ZERO, size: 0, hash: dst.zeroHash }]), new Uint8Array(0));
    assert.equal([a.code, a.applied], [0, 1], `${v} applied`);
    assert.ok(page(dst, 4).every((x) => x === 0), `${v}: page zeroed`);
    assert.is(hashOf(dst, 4), dst.zeroHash, `${v}: zero hash recorded`);
  }
});

batch('with a claim map, a second copy of a page is a duplicate and does not overwrite it', () => {
  for (const v of VARIANTS) {
    const src = host(v);
    const dst = host(v);
    fillRam(src, 6);
    src.k.raw.bitmapFill(SNAPSHOT, PAGES);
    const e = encode(src);
    assert.equal(apply(dst, e.entryBytes, e.payload, CLAIM).applied, PAGES, `${v} first copy applied`);
    dst.u8[RAM + 1 * PS + 5] ^= 0xff; // the resumed guest writes page 1
    const guestPage = page(dst, 1);
    const a = apply(dst, e.entryBytes, e.payload, CLAIM);
    assert.equal([a.code, a.applied, a.duplicates, a.stop], [0, 0, PAGES, PAGES], `${v} second copy`);
    assert.is(firstDifference(page(dst, 1), guestPage), -1, `${v}: the guest's write survives`);
  }
});

batch('applyScratchPage verifies, honours the claim, writes and records a host-decoded page', () => {
  for (const v of VARIANTS) {
    const dst = host(v);
    const content = new Uint8Array(PS);
    seeded(8).fill(content);
    const h = mxh64(content);
    dst.u8.set(content, SCRATCH);
    const call = (regionPage: number, expect: bigint): number =>
      dst.k.raw.applyScratchPage(RAM, PS, PAGES, BASE, KEYBASE, regionPage, expect, HASHES, DIGEST, PRESENT, CLAIM, SCRATCH);
    assert.is(call(BASE + 9, h ^ 4n), KernelCode.APPLY_ERR_HASH, `${v} wrong hash`);
    assert.is(call(BASE + PAGES, h), KernelCode.APPLY_ERR_PAGE_RANGE, `${v} out of range`);
    assert.ok(page(dst, 9).every((x) => x === 0), `${v}: untouched after the errors`);
    assert.is(call(BASE + 9, h), 1, `${v} applied`);
    assert.is(firstDifference(page(dst, 9), content), -1, `${v}: page written`);
    assert.equal([hashOf(dst, 9), dst.k.raw.bitmapTest(PRESENT, 9)], [h, 1], `${v}: hash recorded, present`);
    assert.is(digestOf(dst), refDigest([h], KEYBASE + BigInt(BASE + 9), dst.zeroHash), `${v}: digest`);
    assert.is(call(BASE + 9, h), 0, `${v}: claimed already, duplicate`);
  }
});

batch.run();
