// Decoding and applying PAGE_BATCH frames to a GuestMemory through BatchApplier
// (src/pipeline/apply.ts): zero, raw, xbzrle and lz4 pages land with the right bytes and
// the recorded digest follows the content; batches that span slabs, and batches decoded in place in
// the first slab's arena; and every kind of bad input — a payload bit flip the frame CRC cannot see,
// a corrupt or mis-based delta, a corrupt lz4 block, a wrong hash, an encoding not negotiated, a bad
// last entry — leaves the page it names unchanged.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BatchApplier } from '../../src/pipeline/apply.js';
import type { GuestMemory } from '../../src/memory/guest-memory.js';
import { slabDigest } from '../../src/memory/slab.js';
import { Capability, FrameType, PageEncoding } from '../../src/protocol/constants.js';
import { lz4Encode } from '../../src/protocol/encodings/lz4.js';
import { FRAME_HEADER_BYTES, readFrameHeader, verifyFrame } from '../../src/protocol/frame.js';
import { FrameReader } from '../../src/protocol/frame-reader.js';
import { encodeBatchFrame, type BatchEntry } from '../../src/protocol/page-batch.js';
import {
  ALL_CAPABILITIES, allocateGuest, assertBytes, changedPages, expectCode, pageHash, ramSpec, randomBytes, readerBytes,
  regionSnapshot, xbzrleDelta,
} from '../_support/protocol-helpers.js';
import { seeded, type Rng } from '../_support/seeded.js';

const PS = 4096;
const ZERO_PAGE = new Uint8Array(PS);
const MiB = 1 << 20;

type Page = BatchEntry & { payload: Uint8Array };

const rawPage = (page: number, content: Uint8Array): Page => ({ page, encoding: PageEncoding.RAW, size: content.length, hash: pageHash(content), payload: content });
const zeroPage = (page: number, size = PS): Page => ({ page, encoding: PageEncoding.ZERO, size: 0, hash: pageHash(new Uint8Array(size)), payload: new Uint8Array(0) });

/** An XBZRLE entry turning the target's current page into `next` (delta built by the kernel). */
function xbzrlePage(mem: GuestMemory, page: number, next: Uint8Array, regionId = 0): Page {
  const delta = xbzrleDelta(mem.readPage(regionId, page), next);
  assert.ok(delta !== null, `delta for page ${page} fits a page`);
  return { page, encoding: PageEncoding.XBZRLE, size: delta.length, hash: pageHash(next), payload: delta };
}

function lz4Page(page: number, content: Uint8Array): Page {
  const payload = lz4Encode(content, content.length);
  assert.ok(payload !== null, `page ${page} compresses`);
  return { page, encoding: PageEncoding.LZ4, size: payload.length, hash: pageHash(content), payload };
}

/** Mostly-zero page with a few random bytes: small XBZRLE deltas and good lz4 ratios. */
function sparse(rng: Rng, n = 20): Uint8Array {
  const p = new Uint8Array(PS);
  for (let i = 0; i < n; i++) p[rng.below(PS)] = 1 + rng.below(255);
  return p;
}

/** Header and CRC checks as the reader does them, then BatchApplier.apply on the body. */
function applyFrame(applier: BatchApplier, frame: Uint8Array): ReturnType<BatchApplier['apply']> {
  const h = readFrameHeader(frame, 0, frame.length);
  assert.ok(h !== null);
  assert.is(h.type, FrameType.PAGE_BATCH);
  verifyFrame(frame, 0, h);
  return applier.apply(frame, FRAME_HEADER_BYTES, h.bodyLength, h.checkedLength);
}

function applyPages(applier: BatchApplier, pages: Page[], regionId = 0): ReturnType<BatchApplier['apply']> {
  return applyFrame(applier, encodeBatchFrame(regionId, 1, pages));
}

/** A one-region guest of `pages` 4 KiB pages, pages [0, seeded) filled through raw batches. */
function guest(pages: number, maxSlabBytes = MiB, arenaBytes = 2 * MiB): GuestMemory {
  return allocateGuest([ramSpec(pages)], maxSlabBytes, arenaBytes);
}

/** Fills `pages` with random content through the applier (so hashes and digest stay consistent). */
function seed(applier: BatchApplier, rng: Rng, pages: number[]): Map<number, Uint8Array> {
  const content = new Map<number, Uint8Array>();
  for (let i = 0; i < pages.length; i += 64) {
    const part = pages.slice(i, i + 64).map((p) => {
      const c = randomBytes(rng, PS);
      content.set(p, c);
      return rawPage(p, c);
    });
    applyPages(applier, part);
  }
  return content;
}

function expectUnchanged(mem: GuestMemory, before: Buffer, what: string): void {
  assert.equal(changedPages(mem, 0, before), [], `${what}: changed pages`);
}

// ---- valid batches ----------------------------------------------------------------------------------

test('a fresh guest has digest 0, and contentDigest agrees', () => {
  const mem = guest(64);
  assert.is(mem.digest(), 0n);
  assert.is(mem.contentDigest(), 0n);
});

test('a batch of zero, raw and xbzrle pages applies: the bytes land and digest() follows the content', () => {
  const rng = seeded(61);
  const mem = guest(64);
  const applier = new BatchApplier(mem, Capability.XBZRLE, 0);
  const a = randomBytes(rng, PS);
  const b = sparse(rng);
  const c = sparse(rng);
  applyPages(applier, [rawPage(1, a), rawPage(2, b), rawPage(5, c)]);
  assertBytes(mem.readPage(0, 1), a, 'page 1 raw');
  const afterFirst = mem.digest();
  assert.is.not(afterFirst, 0n);
  assert.is(afterFirst, mem.contentDigest());

  const b2 = b.slice();
  b2.fill(0x77, 100, 140);
  b2[4095] ^= 0x01;
  const d = randomBytes(rng, PS);
  const batch = [zeroPage(1), xbzrlePage(mem, 2, b2), rawPage(4, d), xbzrlePage(mem, 5, c)];
  assert.is(batch[3].size, 0, 'unchanged page: empty delta');
  const view = applyPages(applier, batch);
  assert.equal([view.count, view.regionId], [4, 0]);
  assertBytes(mem.readPage(0, 1), ZERO_PAGE, 'page 1 zeroed');
  assertBytes(mem.readPage(0, 2), b2, 'page 2 xbzrle');
  assertBytes(mem.readPage(0, 4), d, 'page 4 raw');
  assertBytes(mem.readPage(0, 5), c, 'page 5 empty delta');
  assertBytes(mem.readPage(0, 3), ZERO_PAGE, 'page 3 never named');
  const afterSecond = mem.digest();
  assert.is.not(afterSecond, afterFirst);
  assert.is(afterSecond, mem.contentDigest());
  assert.equal(applier.totals.counts, { zero: 1, raw: 4, xbzrle: 2, lz4: 0 });
  assert.is(applier.totals.pages, 7);
});

test('zeroing every written page brings the digest back to 0', () => {
  const rng = seeded(62);
  const mem = guest(64);
  const applier = new BatchApplier(mem, 0, 0);
  seed(applier, rng, [0, 7, 63]);
  assert.is.not(mem.digest(), 0n);
  applyPages(applier, [zeroPage(0), zeroPage(7), zeroPage(63)]);
  assert.is(mem.digest(), 0n);
  assert.ok(regionSnapshot(mem, 0).every((x) => x === 0));
});

test('lz4 pages apply when negotiated, between kernel-applied pages', () => {
  const rng = seeded(63);
  const mem = guest(64);
  const applier = new BatchApplier(mem, ALL_CAPABILITIES, 0);
  const pages = [sparse(rng), sparse(rng), randomBytes(rng, PS), sparse(rng)];
  applyPages(applier, [lz4Page(3, pages[0]), rawPage(4, pages[2]), lz4Page(9, pages[1]), lz4Page(10, pages[3])]);
  assertBytes(mem.readPage(0, 3), pages[0], 'page 3');
  assertBytes(mem.readPage(0, 4), pages[2], 'page 4');
  assertBytes(mem.readPage(0, 9), pages[1], 'page 9');
  assertBytes(mem.readPage(0, 10), pages[3], 'page 10');
  assert.is(mem.digest(), mem.contentDigest());
  assert.equal(applier.totals.counts, { zero: 0, raw: 1, xbzrle: 0, lz4: 3 });
});

test('a batch split across two slabs (1 MiB = 256 pages each) applies to both', () => {
  const rng = seeded(64);
  const mem = guest(512);
  assert.is(mem.slabsOf(0).length, 2);
  const applier = new BatchApplier(mem, ALL_CAPABILITIES, 0);
  const base = seed(applier, rng, [254, 256, 300]);
  const [s0, s1] = mem.slabsOf(0).map(slabDigest);
  const next = new Map<number, Uint8Array>([[250, randomBytes(rng, PS)], [255, randomBytes(rng, PS)], [257, sparse(rng)], [511, randomBytes(rng, PS)]]);
  const n254 = base.get(254)!.slice(); n254.fill(1, 0, 64);
  const n300 = base.get(300)!.slice(); n300[17] ^= 0xff;
  applyPages(applier, [
    rawPage(250, next.get(250)!), xbzrlePage(mem, 254, n254), rawPage(255, next.get(255)!), zeroPage(256),
    lz4Page(257, next.get(257)!), xbzrlePage(mem, 300, n300), rawPage(511, next.get(511)!),
  ]);
  for (const [p, c] of next) assertBytes(mem.readPage(0, p), c, `page ${p}`);
  assertBytes(mem.readPage(0, 254), n254, 'page 254 (slab 0, xbzrle)');
  assertBytes(mem.readPage(0, 256), ZERO_PAGE, 'page 256 (first page of slab 1)');
  assertBytes(mem.readPage(0, 300), n300, 'page 300 (slab 1, xbzrle)');
  const [t0, t1] = mem.slabsOf(0).map(slabDigest);
  assert.ok(t0 !== s0 && t1 !== s1, 'both slab digests moved');
  assert.is(mem.digest(), mem.contentDigest());
  assert.is(applier.totals.pages, 3 + 7);
});

test('a batch over three slabs received into the first slab\'s arena applies in place there and through copies elsewhere', () => {
  const rng = seeded(65);
  const mem = guest(600);
  const slabs = mem.slabsOf(0);
  assert.is(slabs.length, 3);
  const applier = new BatchApplier(mem, ALL_CAPABILITIES, 0);
  const maxBody = 256 * 1024;
  const s0 = slabs[0];
  const ring = new Uint8Array(s0.memory.buffer, s0.layout.arena, readerBytes(maxBody));
  assert.ok(readerBytes(maxBody) <= s0.layout.arenaBytes);
  const reader = new FrameReader(ring, maxBody);
  const content = [1, 255, 256, 511, 512, 599].map((p) => [p, sparse(rng)] as const);
  const frame = encodeBatchFrame(0, 4, content.map(([p, c], i) => (i % 2 === 0 ? rawPage(p, c) : lz4Page(p, c))));
  let applied = 0;
  reader.push(frame, () => {
    for (let f = reader.next(); f !== null; f = reader.next()) {
      assert.ok(f.buf.buffer === s0.memory.buffer, 'the frame lives in slab 0\'s memory');
      applier.apply(f.buf, f.bodyOffset, f.bodyLength, f.checkedLength);
      applied++;
    }
  });
  assert.is(applied, 1);
  for (const [p, c] of content) assertBytes(mem.readPage(0, p), c, `page ${p}`);
  assert.is(mem.digest(), mem.contentDigest());
});

test('with claim on, a second copy of a page is counted as a duplicate and does not overwrite the first', () => {
  const rng = seeded(66);
  const mem = guest(64);
  const applier = new BatchApplier(mem, 0, 0, true);
  const first = randomBytes(rng, PS);
  applyPages(applier, [rawPage(8, first)]);
  applyPages(applier, [rawPage(8, randomBytes(rng, PS)), zeroPage(9)]);
  assertBytes(mem.readPage(0, 8), first, 'page 8 keeps the first copy');
  assert.equal([applier.totals.pages, applier.totals.duplicates], [2, 1]);
});

test('scratch placement (the fault path) applies one-page answers through the agent\'s scratch slot and never touches the arena', () => {
  const rng = seeded(79);
  const mem = guest(64);
  const s0 = mem.slabsOf(0)[0];
  const arena = new Uint8Array(s0.memory.buffer, s0.layout.arena, s0.layout.arenaBytes);
  arena.fill(0x3c);
  const applier = new BatchApplier(mem, 0, 5, true, 'scratch');
  const content = randomBytes(rng, PS);
  applyPages(applier, [rawPage(17, content)]);
  applyPages(applier, [rawPage(18, sparse(rng)), zeroPage(19)]);
  assertBytes(mem.readPage(0, 17), content, 'page 17');
  assert.ok(arena.every((x) => x === 0x3c), 'arena untouched');
  assert.is(mem.digest(), mem.contentDigest());
  const before = regionSnapshot(mem, 0);
  expectCode(() => applyPages(applier, [rawPage(20, sparse(rng)), rawPage(21, sparse(rng))]), 'MS_ERR_FRAME_TOO_LARGE', 'two raw pages do not fit two scratch pages');
  expectUnchanged(mem, before, 'too large for scratch');
});

// ---- payload bit flips ---------------------------------------------------------------------------

test('every payload bit flip of a raw page passes the frame CRC, then is MS_ERR_PAGE_HASH_MISMATCH with the page unchanged', () => {
  const rng = seeded(67);
  const mem = guest(64);
  const applier = new BatchApplier(mem, 0, 0);
  seed(applier, rng, [6]);
  const before = regionSnapshot(mem, 0);
  const digest = mem.digest();
  const frame = encodeBatchFrame(0, 1, [rawPage(6, randomBytes(rng, PS))]);
  const maxBody = 64 * 1024;
  const buf = new Uint8Array(readerBytes(maxBody));
  buf.set(frame);
  const payloadBit = (FRAME_HEADER_BYTES + 32) * 8;
  for (let bit = payloadBit; bit < frame.length * 8; bit++) {
    buf[bit >>> 3] ^= 1 << (bit & 7);
    const reader = new FrameReader(buf, maxBody);
    reader.commit(frame.length);
    const f = reader.next();
    assert.ok(f !== null, `bit ${bit}: the frame CRC does not cover the payload`);
    expectCode(() => applier.apply(f.buf, f.bodyOffset, f.bodyLength, f.checkedLength), 'MS_ERR_PAGE_HASH_MISMATCH', `payload bit ${bit - payloadBit}`);
    buf[bit >>> 3] ^= 1 << (bit & 7);
    if ((bit & 1023) === 0) expectUnchanged(mem, before, `payload bit ${bit - payloadBit}`);
  }
  expectUnchanged(mem, before, 'after all flips');
  assert.is(mem.digest(), digest);
});

test('every payload bit flip of an xbzrle page is MS_ERR_DELTA_MALFORMED or MS_ERR_PAGE_HASH_MISMATCH with the page unchanged', () => {
  const rng = seeded(68);
  const mem = guest(64);
  const applier = new BatchApplier(mem, Capability.XBZRLE, 0);
  const base = seed(applier, rng, [12]).get(12)!;
  const next = base.slice();
  for (let i = 0; i < 6; i++) next.fill(i, 300 * i + 7, 300 * i + 7 + 1 + i * 3);
  const entry = xbzrlePage(mem, 12, next);
  const before = regionSnapshot(mem, 0);
  const codes = new Set<string>();
  for (let bit = 0; bit < entry.size * 8; bit++) {
    const payload = entry.payload.slice();
    payload[bit >>> 3] ^= 1 << (bit & 7);
    try {
      applyPages(applier, [{ ...entry, payload }]);
      assert.unreachable(`delta bit ${bit} was applied`);
    } catch (err) {
      const code = (err as { code?: string }).code ?? String(err);
      assert.ok(code === 'MS_ERR_DELTA_MALFORMED' || code === 'MS_ERR_PAGE_HASH_MISMATCH', `delta bit ${bit}: ${code}`);
      codes.add(code);
    }
  }
  expectUnchanged(mem, before, 'after all flips');
  assert.equal([...codes].sort(), ['MS_ERR_DELTA_MALFORMED', 'MS_ERR_PAGE_HASH_MISMATCH']);
});

// ---- bad content ---------------------------------------------------------------------------------------

test('corrupt xbzrle deltas are MS_ERR_DELTA_MALFORMED and leave the page unchanged', () => {
  const rng = seeded(69);
  const mem = guest(64);
  const applier = new BatchApplier(mem, Capability.XBZRLE, 0);
  const base = seed(applier, rng, [20]).get(20)!;
  const before = regionSnapshot(mem, 0);
  const cases: Array<[string, number[]]> = [
    ['run of 5 bytes with 2 present', [0x00, 0x05, 0xaa, 0xbb]],
    ['number cut short', [0x10, 0x80]],
    ['zero run reaching the page end', [0x80, 0x20, 0x01, 0xaa]], // zrun 4096
    ['changed run past the page end', [0xff, 0x1f, 0x02, 0xaa, 0xbb]], // zrun 4095, nzrun 2
    ['over-long varint', [0x80, 0x80, 0x80, 0x01, 0x01, 0xaa]],
    ['varint with a zero last byte', [0x81, 0x00, 0x01, 0xaa]],
    ['empty changed run', [0x00, 0x00]],
    ['empty zero run after the first pair', [0x00, 0x01, 0xaa, 0x00, 0x01, 0xbb]],
  ];
  for (const [name, delta] of cases) {
    const payload = new Uint8Array(delta);
    expectCode(() => applyPages(applier, [{ page: 20, encoding: PageEncoding.XBZRLE, size: payload.length, hash: pageHash(base), payload }]), 'MS_ERR_DELTA_MALFORMED', name);
    expectUnchanged(mem, before, name);
  }
});

test('a valid delta against a base the target does not hold is MS_ERR_PAGE_HASH_MISMATCH, page unchanged', () => {
  const rng = seeded(70);
  const mem = guest(64);
  const applier = new BatchApplier(mem, Capability.XBZRLE, 0);
  seed(applier, rng, [21]);
  const otherBase = randomBytes(rng, PS);
  const next = otherBase.slice();
  next[5] ^= 1;
  const delta = xbzrleDelta(otherBase, next)!;
  const before = regionSnapshot(mem, 0);
  expectCode(() => applyPages(applier, [{ page: 21, encoding: PageEncoding.XBZRLE, size: delta.length, hash: pageHash(next), payload: delta }]), 'MS_ERR_PAGE_HASH_MISMATCH');
  expectUnchanged(mem, before, 'mis-based delta');
});

test('a zero, raw or lz4 page whose hash does not match is MS_ERR_PAGE_HASH_MISMATCH, page unchanged', () => {
  const rng = seeded(71);
  const mem = guest(64);
  const applier = new BatchApplier(mem, ALL_CAPABILITIES, 0);
  seed(applier, rng, [30, 31, 32]);
  const before = regionSnapshot(mem, 0);
  expectCode(() => applyPages(applier, [{ ...zeroPage(30), hash: 12345n }]), 'MS_ERR_PAGE_HASH_MISMATCH', 'zero');
  expectCode(() => applyPages(applier, [{ ...rawPage(31, sparse(rng)), hash: 12345n }]), 'MS_ERR_PAGE_HASH_MISMATCH', 'raw');
  expectCode(() => applyPages(applier, [{ ...lz4Page(32, sparse(rng)), hash: 12345n }]), 'MS_ERR_PAGE_HASH_MISMATCH', 'lz4');
  expectUnchanged(mem, before, 'wrong hashes');
});

test('a corrupt lz4 block is MS_ERR_LZ4_MALFORMED and leaves the page unchanged', () => {
  const rng = seeded(72);
  const mem = guest(64);
  const applier = new BatchApplier(mem, Capability.LZ4, 0);
  seed(applier, rng, [40]);
  const before = regionSnapshot(mem, 0);
  const good = lz4Page(40, sparse(rng));
  const cut = { ...good, size: good.size - 3, payload: good.payload.subarray(0, good.size - 3) };
  expectCode(() => applyPages(applier, [cut]), 'MS_ERR_LZ4_MALFORMED', 'truncated block');
  const prefix = good.payload.slice();
  prefix[1] = 0x20; // declares 8 KiB
  expectCode(() => applyPages(applier, [{ ...good, payload: prefix }]), 'MS_ERR_LZ4_MALFORMED', 'size prefix');
  expectUnchanged(mem, before, 'corrupt lz4');
});

test('a corrupt lz4 block\'s error names its region and page, as every other content error does', () => {
  // BUG (fails today): lz4Decode's MS_ERR_LZ4_MALFORMED reaches the caller of BatchApplier.apply
  // without {frameType, regionId, page}; MS_ERR_PAGE_HASH_MISMATCH, MS_ERR_DELTA_MALFORMED and the
  // decoder's errors all carry them, and the driver's report has no other way to say which page was bad.
  const rng = seeded(78);
  const mem = guest(64);
  const applier = new BatchApplier(mem, Capability.LZ4, 0);
  const good = lz4Page(41, sparse(rng));
  const cut = { ...good, size: good.size - 3, payload: good.payload.subarray(0, good.size - 3) };
  const e = expectCode(() => applyPages(applier, [rawPage(2, sparse(rng)), cut]), 'MS_ERR_LZ4_MALFORMED');
  const d = (e as unknown as { details: { frameType?: number; regionId?: number; page?: number } }).details;
  assert.equal({ frameType: d.frameType, regionId: d.regionId, page: d.page }, { frameType: FrameType.PAGE_BATCH, regionId: 0, page: 41 });
});

// ---- structural errors write nothing --------------------------------------------------------------------

test('an xbzrle or lz4 entry that was not negotiated rejects the whole batch before any page is written', () => {
  const rng = seeded(73);
  const mem = guest(64);
  const seeder = new BatchApplier(mem, ALL_CAPABILITIES, 0);
  seed(seeder, rng, [1]);
  const before = regionSnapshot(mem, 0);
  const next = mem.readPage(0, 1);
  next[0] ^= 1;
  const xb = xbzrlePage(mem, 1, next);
  const lz = lz4Page(3, sparse(rng));
  expectCode(() => applyPages(new BatchApplier(mem, Capability.LZ4, 0), [rawPage(0, sparse(rng)), xb]), 'MS_ERR_BATCH_ENCODING', 'xbzrle not negotiated');
  expectCode(() => applyPages(new BatchApplier(mem, Capability.XBZRLE, 0), [rawPage(0, sparse(rng)), lz]), 'MS_ERR_BATCH_ENCODING', 'lz4 not negotiated');
  expectUnchanged(mem, before, 'not negotiated');
});

test('a batch whose last entry is out of range or unknown writes none of its earlier pages', () => {
  const rng = seeded(74);
  const mem = guest(64);
  const applier = new BatchApplier(mem, ALL_CAPABILITIES, 0);
  const before = regionSnapshot(mem, 0);
  const good = [rawPage(0, sparse(rng)), zeroPage(1), rawPage(2, sparse(rng))];
  expectCode(() => applyPages(applier, [...good, rawPage(64, sparse(rng))]), 'MS_ERR_BATCH_PAGE_RANGE', 'page 64 of 64');
  expectCode(() => applyPages(applier, [...good, { ...zeroPage(5), encoding: 9 }]), 'MS_ERR_BATCH_ENCODING', 'encoding 9');
  expectCode(() => applyPages(applier, [...good, zeroPage(2)]), 'MS_ERR_FRAME_MALFORMED', 'repeated page');
  expectCode(() => applyPages(applier, good, 1), 'MS_ERR_BATCH_REGION_UNKNOWN', 'region 1');
  expectUnchanged(mem, before, 'structural errors');
  assert.is(mem.digest(), 0n);
});

test('a corrupt page stops the batch: it and every later page are unchanged, earlier verified pages are applied', () => {
  // Content is verified page by page (a hash per entry), so the pages before the bad one are written
  // with content that matches their hashes; nothing from the bad entry on is.
  const rng = seeded(75);
  const mem = guest(64);
  const applier = new BatchApplier(mem, 0, 0);
  const a = sparse(rng);
  const b = sparse(rng);
  const bad = rawPage(11, sparse(rng));
  bad.payload = bad.payload.slice();
  bad.payload[100] ^= 0x10;
  const e = expectCode(() => applyPages(applier, [rawPage(3, a), rawPage(7, b), bad, rawPage(12, sparse(rng)), zeroPage(13)]), 'MS_ERR_PAGE_HASH_MISMATCH');
  assert.is((e as unknown as { details: { page: number } }).details.page, 11);
  assertBytes(mem.readPage(0, 3), a, 'page 3 before the bad entry');
  assertBytes(mem.readPage(0, 7), b, 'page 7 before the bad entry');
  for (const p of [11, 12]) assertBytes(mem.readPage(0, p), ZERO_PAGE, `page ${p} from the bad entry on`);
  assert.is(mem.digest(), mem.contentDigest(), 'the digest records exactly what was written');
});

test('a batch larger than the target slab\'s arena is MS_ERR_FRAME_TOO_LARGE, nothing written', () => {
  const rng = seeded(76);
  const mem = guest(64, MiB, 64 * 1024);
  const applier = new BatchApplier(mem, 0, 0);
  const pages = Array.from({ length: 16 }, (_, i) => rawPage(i, sparse(rng)));
  const before = regionSnapshot(mem, 0);
  expectCode(() => applyPages(applier, pages), 'MS_ERR_FRAME_TOO_LARGE');
  expectUnchanged(mem, before, 'too large');
  applyPages(applier, pages.slice(0, 15));
  assert.is(changedPages(mem, 0, before).length, 15);
});

test('a body length that runs past its buffer is rejected, not filled from stale arena bytes', () => {
  // BUG (fails today): decodeBatch does not check bodyOffset + bodyLength against the buffer, and
  // placeBody copies the short buffer into the arena without noticing, so the kernel reads the
  // payload that the previous batch left in the arena. Here page 7 receives page 5's bytes from a
  // frame that carries no payload at all.
  const rng = seeded(77);
  const mem = guest(64);
  const applier = new BatchApplier(mem, 0, 0);
  const content = randomBytes(rng, PS);
  applyPages(applier, [rawPage(5, content)]);
  const frame = encodeBatchFrame(0, 1, [rawPage(7, content)]);
  const metadataOnly = frame.slice(0, FRAME_HEADER_BYTES + 32);
  const before = regionSnapshot(mem, 0);
  expectCode(() => applier.apply(metadataOnly, FRAME_HEADER_BYTES, frame.length - FRAME_HEADER_BYTES, 32), 'MS_ERR_FRAME_MALFORMED');
  expectUnchanged(mem, before, 'metadata-only frame');
});

test.run();
