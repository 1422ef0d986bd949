// The staging area of replication (src/replication/staged-pages.ts): on the primary it copies the pages
// marked in a slab's snapshot bitmap (taking the marks, at most a limit, leaving the rest for the next
// call) and hands them out as encoded runs of one region, each page hashed as staged and sent raw or,
// with a cache of the pages as last sent, as an XOR delta against that version; on the standby it
// decodes a received EPOCH_PAGES frame (a delta against the page as the guest holds it), checks each
// page against its hash, keeps them all or none, and applies them to a guest at END. Unit tests on
// small guests through the real codec: no process, no socket.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GuestMemory, type RegionSpec } from '../../src/memory/guest-memory.js';
import { kernelsOf, pageOffset } from '../../src/memory/slab.js';
import { FRAME_HEADER_BYTES, readFrameHeader, verifyFrame } from '../../src/protocol/frame.js';
import { decodeEpochPages, encodeEpochPagesHead, EpochEncoding, maxPagesPerEpochFrame, type EpochPages } from '../../src/protocol/replication.js';
import { StagedPages, writePage } from '../../src/replication/staged-pages.js';
import { assertSameMemory, bitmapPages, differentPages, expectCode, isZeroBytes, pageBytes } from '../_support/guest-helpers.js';
import { concat, pageHash } from '../_support/protocol-helpers.js';
import { refXbzrleDecode, refXbzrleValidate } from '../_support/reference-kernels.js';
import { distinctBelow, seeded, type Rng } from '../_support/seeded.js';

const PS = 4096;
const MiB = 1 << 20;
const RAW = EpochEncoding.RAW;
const XBZRLE = EpochEncoding.XBZRLE;

/** A guest of `specs` whose pages hold seeded random bytes (distinct per region and page). */
function guest(specs: readonly RegionSpec[], maxSlabBytes = MiB, fill = true): GuestMemory {
  const mem = GuestMemory.allocate(specs, { maxSlabBytes, arenaBytes: 1 << 16 });
  if (fill) {
    for (const r of mem.regions) {
      for (const s of mem.slabsOf(r.id)) {
        kernelsOf(s).raw.fillGuestPages(s.layout.ram, s.layout.pageSize, s.pageCount, s.firstPage, BigInt(1000 + r.id), 1, 0);
      }
    }
  }
  return mem;
}

function ram(id: number, pageCount: number, pageSize = PS): RegionSpec {
  return { id, name: `r${id}`, kind: 'ram', pageSize, pageCount };
}

/** Sets region page `page`'s bit in its slab's snapshot bitmap (as a dirty sync would). */
function mark(mem: GuestMemory, regionId: number, page: number): void {
  const { slab, local } = mem.locate(regionId, page);
  Atomics.or(new Int32Array(slab.memory.buffer), (slab.layout.snapshot >>> 2) + (local >>> 5), 1 << (local & 31));
}

function marked(mem: GuestMemory, regionId: number): number[] {
  return [...bitmapPages(mem, 'snapshot', regionId)].sort((a, b) => a - b);
}

/** Stages every slab of a region, as the primary does. */
function stageRegion(staging: StagedPages, mem: GuestMemory, regionId: number, limit?: number): number {
  let n = 0;
  for (const s of mem.slabsOf(regionId)) n += limit === undefined ? staging.stageMarked(regionId, s) : staging.stageMarked(regionId, s, limit);
  return n;
}

interface Run { regionId: number; pages: number[]; sizes: number[]; hashes: bigint[]; payload: Uint8Array; deltas: number }

const sizeOf = (sizeAndEncoding: number): number => sizeAndEncoding & 0xffffff;
const encodingOf = (sizeAndEncoding: number): number => sizeAndEncoding >>> 24;

/** The encoded runs, copied (their payload is a view into staging). */
function runsOf(staging: StagedPages, most: number): Run[] {
  return [...staging.encodedRuns(most)].map((r) => ({
    regionId: r.regionId, pages: [...r.pages], sizes: [...r.sizes], hashes: [...r.hashes], payload: r.payload.slice(), deltas: r.deltas,
  }));
}

/**
 * The staged (region, page) list in staging order, and each page's bytes, through encodedRuns() of a
 * staging without a cache: every page raw, so the payload is the staged pages.
 */
function staged(staging: StagedPages): { keys: [number, number][]; data: Uint8Array[] } {
  const keys: [number, number][] = [];
  const data: Uint8Array[] = [];
  for (const r of runsOf(staging, 1 << 30)) {
    assert.is(r.deltas, 0, 'no cache: no delta');
    assert.is(r.payload.length, r.pages.length * staging.pageSize, 'no cache: the payload is the pages');
    r.pages.forEach((p, i) => {
      assert.is(r.sizes[i], staging.pageSize | (RAW << 24), `page ${p} raw`);
      keys.push([r.regionId, p]);
      data.push(r.payload.subarray(i * staging.pageSize, (i + 1) * staging.pageSize));
    });
  }
  return { keys, data };
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** The page kernel's hash of region page `page`, read where the guest holds it. */
function kernelHash(mem: GuestMemory, regionId: number, page: number): bigint {
  const { slab, local } = mem.locate(regionId, page);
  return BigInt.asUintN(64, kernelsOf(slab).raw.hashPage(pageOffset(slab, local), slab.layout.pageSize));
}

/** One EPOCH_PAGES frame of a run, as the primary sends it: the encoder's head segment, then the payload. */
function frameOf(epoch: number, pageSize: number, r: Run): Uint8Array {
  return concat([encodeEpochPagesHead(epoch, r.regionId, pageSize, r.pages, r.sizes, BigUint64Array.from(r.hashes)), r.payload]);
}

/** Encodes what `staging` holds as EPOCH_PAGES frames of `epoch` (runs of at most a frame's pages). */
function send(staging: StagedPages, epoch: number, most = maxPagesPerEpochFrame(staging.pageSize)): { runs: Run[]; frames: Uint8Array[] } {
  const runs = runsOf(staging, most);
  return { runs, frames: runs.map((r) => frameOf(epoch, staging.pageSize, r)) };
}

/** Receives a frame as the standby does: header, CRC, decode (with the frame's checkedLength), then acceptFrame. */
function receive(staging: StagedPages, frame: Uint8Array, holder: GuestMemory): EpochPages {
  const h = readFrameHeader(frame, 0, frame.length);
  assert.ok(h !== null);
  verifyFrame(frame, 0, h);
  const m = decodeEpochPages(frame, FRAME_HEADER_BYTES, h.bodyLength, h.checkedLength, holder.regions);
  staging.acceptFrame(frame, m, holder, `epoch ${m.epoch}`);
  return m;
}

/**
 * One epoch from `primary` to `holder`: encode, receive every frame into `standby`, apply, and clear
 * both stagings. Returns the runs sent.
 */
function ship(primary: StagedPages, standby: StagedPages, holder: GuestMemory, epoch: number): Run[] {
  const { runs, frames } = send(primary, epoch);
  const count = primary.count;
  for (const f of frames) receive(standby, f, holder);
  assert.is(standby.count, count, `epoch ${epoch}: every page received`);
  assert.is(standby.applyTo(holder), count);
  standby.clear();
  primary.clear();
  return runs;
}

/** Changes `words` random 4-byte words of region page `page` (each to a different value), in place. */
function scribble(rng: Rng, mem: GuestMemory, regionId: number, page: number, words: number): void {
  const bytes = pageBytes(mem, regionId, page);
  for (let i = 0; i < words; i++) {
    const at = 4 * rng.below(bytes.length / 4);
    for (let b = 0; b < 4; b++) bytes[at + b] ^= 1 + rng.below(255);
  }
}

/** The error's details as MemshiftError carries them. */
function detailsOf(e: Error): { regionId?: number; page?: number } {
  return (e as unknown as { details: { regionId?: number; page?: number } }).details;
}

// ---- stageMarked --------------------------------------------------------------------------------

test('stageMarked copies exactly the marked pages of every slab, in page order, and takes their marks', () => {
  const mem = guest([ram(0, 600)]); // slabs of 256, 256 and 88 pages
  assert.is(mem.slabsOf(0).length, 3);
  const rng = seeded(41);
  const want = distinctBelow(rng, 600, 150).sort((a, b) => a - b);
  for (const p of [...want, 0, 599].filter((p, i, all) => all.indexOf(p) === i)) mark(mem, 0, p);
  const expected = marked(mem, 0);
  assert.ok(expected.includes(0) && expected.includes(599) && expected.length >= 150);
  const staging = new StagedPages(PS, 600 * PS);
  const before = mem.contentDigest();
  assert.is(stageRegion(staging, mem, 0), expected.length);
  assert.is(staging.count, expected.length);
  assert.equal(marked(mem, 0), [], 'every mark taken');
  const s = staged(staging);
  assert.equal(s.keys, expected.map((p) => [0, p]));
  s.keys.forEach(([, p], i) => assert.ok(same(s.data[i], pageBytes(mem, 0, p)), `page ${p}: bytes`));
  assert.is(mem.contentDigest(), before, 'the guest is only read');
  // Nothing marked: nothing staged.
  assert.is(stageRegion(staging, mem, 0), 0);
  assert.is(staging.count, expected.length);
});

test('with a limit, stageMarked stages exactly that many; the marks not taken stay (the rest of a cut word too) for the next call', () => {
  const mem = guest([ram(0, 256)]);
  const slab = mem.slabsOf(0)[0];
  // Word 1 (pages 32..63) fully marked, and marks spread over the rest.
  const want = new Set<number>([3, 7, 31, ...Array.from({ length: 32 }, (_, i) => 32 + i), 70, 101, 127, 128, 200, 255]);
  for (const p of want) mark(mem, 0, p);
  const all = [...want].sort((a, b) => a - b);
  const staging = new StagedPages(PS, 256 * PS);
  // 3 + 17: the cut falls inside word 1, after page 48.
  assert.is(staging.stageMarked(0, slab, 20), 20);
  assert.is(staging.count, 20);
  assert.equal(staged(staging).keys.map(([, p]) => p), all.slice(0, 20));
  assert.equal(marked(mem, 0), all.slice(20), 'the marks not taken stay, from page 49 of the cut word on');
  // At the limit already: another call takes nothing and leaves every mark.
  assert.is(staging.stageMarked(0, slab, 20), 0);
  assert.equal(marked(mem, 0), all.slice(20));
  // A higher limit takes the next ones; no limit the rest.
  assert.is(staging.stageMarked(0, slab, 30), 10);
  assert.equal(marked(mem, 0), all.slice(30));
  assert.is(staging.stageMarked(0, slab), all.length - 30);
  assert.equal(marked(mem, 0), []);
  const s = staged(staging);
  assert.equal(s.keys.map(([, p]) => p), all, 'every page once, in order, across the three calls');
  s.keys.forEach(([, p], i) => assert.ok(same(s.data[i], pageBytes(mem, 0, p)), `page ${p}`));
});

test('a word cut just below its top bits gives back exactly those (bit 31 is the sign bit of the word)', () => {
  for (const limit of [1, 30, 31]) {
    const mem = guest([ram(0, 64)]);
    for (let p = 0; p < 32; p++) mark(mem, 0, p);
    mark(mem, 0, 40);
    const staging = new StagedPages(PS, 64 * PS);
    assert.is(staging.stageMarked(0, mem.slabsOf(0)[0], limit), limit, `limit ${limit}`);
    assert.equal(marked(mem, 0), [...Array.from({ length: 32 - limit }, (_, i) => limit + i), 40], `limit ${limit}`);
    assert.is(staging.stageMarked(0, mem.slabsOf(0)[0]), 33 - limit, `limit ${limit}: the rest`);
    assert.equal(staged(staging).keys.map(([, p]) => p), [...Array.from({ length: 32 }, (_, i) => i), 40], `limit ${limit}`);
  }
});

test('a mark past the last page of a slab is never staged', () => {
  const mem = guest([ram(0, 100)]); // one slab of 100 pages: bitmap words cover 128
  const slab = mem.slabsOf(0)[0];
  const words = new Int32Array(slab.memory.buffer, slab.layout.snapshot, slab.layout.bitmapWords * 2);
  Atomics.or(words, 3, (1 << 3) | (1 << 4) | (1 << 31)); // pages 99 (the last), 100 and 127
  mark(mem, 0, 5);
  const staging = new StagedPages(PS, 100 * PS);
  assert.is(staging.stageMarked(0, slab), 2);
  assert.equal(staged(staging).keys, [[0, 5], [0, 99]]);
});

test('stageMarked copies runs of consecutive pages whole: across bitmap words, cut at a slab\'s end, at a limit, and across staging growth', () => {
  const mem = guest([ram(0, 600)]); // slabs of 256, 256 and 88 pages
  const runs = [[0, 1], [30, 70], [250, 262], [300, 300], [511, 513], [590, 599]];
  const want: number[] = [];
  for (const [a, b] of runs) for (let p = a; p <= b; p++) want.push(p);
  for (const p of want) mark(mem, 0, p);
  const staging = new StagedPages(PS, 600 * PS);
  // A limit that ends inside a run: the run is copied up to it, the rest is staged by the next calls.
  assert.is(stageRegion(staging, mem, 0, 20), 20);
  assert.is(staging.count, 20);
  assert.is(stageRegion(staging, mem, 0), want.length - 20);
  assert.equal(marked(mem, 0), []);
  const s = staged(staging);
  assert.equal(s.keys.map(([, p]) => p), want);
  s.keys.forEach(([, p], i) => assert.ok(same(s.data[i], pageBytes(mem, 0, p)), `page ${p}`));
  // 5000 consecutive pages: one run through the doubling of the staging memory past 4096 pages.
  const big = guest([ram(1, 5000)], 1 << 30);
  for (let p = 0; p < 5000; p++) mark(big, 1, p);
  const grown = new StagedPages(PS, 5000 * PS);
  assert.is(grown.stageMarked(1, big.slabsOf(1)[0]), 5000);
  const g = staged(grown);
  assert.equal(g.keys.length, 5000);
  g.keys.forEach(([r, p], i) => {
    if (r !== 1 || p !== i || !same(g.data[i], pageBytes(big, 1, p))) assert.unreachable(`staged page ${i}: region ${r} page ${p}`);
  });
});

// ---- encodedRuns --------------------------------------------------------------------------------

test('encodedRuns(most): runs of one region each, at most `most` pages and cut only at `most` or a region change, with the page kernel\'s hashes; without a cache every page raw', () => {
  const mem = guest([ram(0, 300), ram(5, 200), ram(9, 64)]);
  const rng = seeded(5);
  const pick = { 0: distinctBelow(rng, 300, 23), 5: distinctBelow(rng, 200, 16), 9: [63] } as Record<number, number[]>;
  const staging = new StagedPages(PS, 600 * PS);
  // Staging order: region 0, then 5, then 9, then region 0 again.
  for (const p of pick[0].slice(0, 13)) mark(mem, 0, p);
  stageRegion(staging, mem, 0);
  for (const p of pick[5]) mark(mem, 5, p);
  stageRegion(staging, mem, 5);
  for (const p of pick[9]) mark(mem, 9, p);
  stageRegion(staging, mem, 9);
  for (const p of pick[0].slice(13)) mark(mem, 0, p);
  stageRegion(staging, mem, 0);
  assert.is(staging.count, 23 + 16 + 1);
  const order = staged(staging).keys;
  const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
  assert.equal(order.map(([r]) => r), [...Array(13).fill(0), ...Array(16).fill(5), 9, ...Array(10).fill(0)]);
  assert.equal(order.map(([, p]) => p), [...sorted(pick[0].slice(0, 13)), ...sorted(pick[5]), 63, ...sorted(pick[0].slice(13))]);
  for (const most of [1, 3, 7, 16, 1024]) {
    const runs = runsOf(staging, most);
    const flat: [number, number][] = [];
    runs.forEach((r, i) => {
      const what = `most ${most}, run ${i}`;
      assert.ok(r.pages.length >= 1 && r.pages.length <= most, what);
      assert.is(r.hashes.length, r.pages.length, what);
      assert.equal(r.sizes, r.pages.map(() => PS | (RAW << 24)), what);
      assert.is(r.deltas, 0, what);
      assert.is(r.payload.length, r.pages.length * PS, what);
      const next = runs[i + 1];
      assert.ok(r.pages.length === most || next === undefined || next.regionId !== r.regionId, `${what}: cut early`);
      r.pages.forEach((p, k) => {
        flat.push([r.regionId, p]);
        assert.ok(same(r.payload.subarray(k * PS, (k + 1) * PS), pageBytes(mem, r.regionId, p)), `${what}: page ${p} bytes`);
        assert.is(r.hashes[k], kernelHash(mem, r.regionId, p), `${what}: page ${p} hash`);
        assert.is(r.hashes[k], pageHash(pageBytes(mem, r.regionId, p)), `${what}: page ${p} hash (oracle)`);
      });
    });
    assert.equal(flat, order, `most ${most}: the runs cover staging in order`);
  }
  assert.is(runsOf(staging, 1024).length, 4);
  assert.is(runsOf(staging, 1).length, 40);
  // Without a cache encodedRuns only reads: the same runs come out again.
  assert.equal(runsOf(staging, 7), runsOf(staging, 7));
  staging.clear();
  assert.equal(runsOf(staging, 7), []);
});

// ---- acceptFrame, applyTo, writePage ------------------------------------------------------------

test('end to end through the codec: staged pages of one guest, encoded, framed, decoded and accepted into a second staging, applied to a second guest', () => {
  const specs = [ram(0, 700), ram(3, 130)];
  const source = guest(specs);
  const rng = seeded(8);
  const want0 = distinctBelow(rng, 700, 300);
  const want3 = distinctBelow(rng, 130, 40);
  for (const p of want0) mark(source, 0, p);
  for (const p of want3) mark(source, 3, p);
  const primary = new StagedPages(PS, 1000 * PS);
  stageRegion(primary, source, 0);
  stageRegion(primary, source, 3);
  const { runs, frames } = send(primary, 4);
  assert.ok(frames.length >= 2);
  assert.is(runs.reduce((n, r) => n + r.deltas, 0), 0, 'no cache: every page raw');
  const target = guest(specs, MiB, false);
  const standby = new StagedPages(PS, 1000 * PS);
  let received = 0;
  for (const f of frames) {
    const m = receive(standby, f, target);
    assert.is(m.epoch, 4);
    received += m.count;
    assert.is(standby.count, received);
  }
  assert.is(received, 340);
  assert.equal(staged(standby).keys, staged(primary).keys);
  // Kept, not yet written.
  for (const p of want0.slice(0, 10)) assert.ok(isZeroBytes(pageBytes(target, 0, p)));
  assert.is(standby.applyTo(target), 340);
  const set0 = new Set(want0);
  const set3 = new Set(want3);
  for (let p = 0; p < 700; p++) {
    if (set0.has(p)) assert.ok(same(pageBytes(target, 0, p), pageBytes(source, 0, p)), `region 0 page ${p}`);
    else assert.ok(isZeroBytes(pageBytes(target, 0, p)), `region 0 page ${p} untouched`);
  }
  for (let p = 0; p < 130; p++) {
    if (set3.has(p)) assert.ok(same(pageBytes(target, 3, p), pageBytes(source, 3, p)), `region 3 page ${p}`);
    else assert.ok(isZeroBytes(pageBytes(target, 3, p)), `region 3 page ${p} untouched`);
  }
});

test('with a cache, pages sent again go as xbzrle deltas against the version last sent (hash of the new page), a page changed past half raw; the second guest follows every epoch', () => {
  const rng = seeded(2026);
  const A = guest([ram(0, 256)]);
  const B = guest([ram(0, 256)], MiB, false);
  const primary = new StagedPages(PS, 256 * PS, 256 * PS);
  const standby = new StagedPages(PS, 256 * PS);
  // Epoch 0, every page: nothing cached yet, so every page raw.
  for (let p = 0; p < 256; p++) mark(A, 0, p);
  assert.is(stageRegion(primary, A, 0), 256);
  const base = ship(primary, standby, B, 0);
  assert.is(base.reduce((n, r) => n + r.deltas, 0), 0);
  assert.ok(base.every((r) => r.sizes.every((s) => s === (PS | (RAW << 24)))));
  assert.is(base.reduce((n, r) => n + r.payload.length, 0), 256 * PS);
  assertSameMemory(B, A, 'after the base');

  // Epoch 1: 20 pages with a few words changed, 2 sent again unchanged, 2 rewritten: one whole, one
  // its first 2600 bytes (a delta of some 2600 bytes: smaller than the page, larger than half of it).
  const picked = distinctBelow(rng, 256, 24);
  const small = picked.slice(0, 20);
  const unchanged = picked.slice(20, 22);
  const rewritten = picked.slice(22);
  const before = new Map(picked.map((p) => [p, Buffer.from(pageBytes(A, 0, p))]));
  for (const p of small) scribble(rng, A, 0, p, 1 + rng.below(4));
  rng.fill(pageBytes(A, 0, rewritten[0]));
  for (const [i, b] of pageBytes(A, 0, rewritten[1]).subarray(0, 2600).entries()) pageBytes(A, 0, rewritten[1])[i] = b ^ (1 + rng.below(255));
  for (const p of picked) mark(A, 0, p);
  assert.is(stageRegion(primary, A, 0), 24);
  const { runs, frames } = send(primary, 1);
  assert.is(runs.length, 1);
  const [run] = runs;
  assert.equal(run.pages, [...picked].sort((a, b) => a - b));
  assert.is(run.deltas, 22);
  let at = 0;
  run.pages.forEach((p, i) => {
    const what = `page ${p}`;
    const size = sizeOf(run.sizes[i]);
    assert.is(run.hashes[i], pageHash(pageBytes(A, 0, p)), `${what}: the hash of the new page`);
    const body = run.payload.subarray(at, at + size);
    at += size;
    if (rewritten.includes(p)) {
      assert.is(run.sizes[i], PS | (RAW << 24), `${what}: rewritten, raw`);
      assert.ok(same(body, pageBytes(A, 0, p)), what);
      return;
    }
    assert.is(encodingOf(run.sizes[i]), XBZRLE, what);
    assert.ok(size <= PS / 2, `${what}: a delta of ${size}`);
    if (unchanged.includes(p)) assert.is(size, 0, `${what}: unchanged, an empty delta`);
    else assert.ok(size > 0 && size <= 4 * (2 + 1 + 4), `${what}: a delta of ${size} bytes for at most 4 words`);
    // The delta turns the version sent before into the page now (the reference decoder agrees).
    const page = Uint8Array.from(before.get(p)!);
    assert.is(refXbzrleDecode(body, page), 0, what);
    assert.ok(same(page, pageBytes(A, 0, p)), `${what}: delta applied`);
  });
  assert.is(at, run.payload.length);
  assert.ok(run.payload.length < 2 * PS + 22 * 30, `${run.payload.length} bytes for 24 pages`);
  assert.ok(differentPages(B, A).length > 0);
  for (const f of frames) receive(standby, f, B);
  assert.is(standby.count, 24);
  assert.ok(differentPages(B, A).length > 0, 'accepted, not yet applied');
  assert.is(standby.applyTo(B), 24);
  standby.clear();
  primary.clear();
  assertSameMemory(B, A, 'after epoch 1');

  // Epoch 2: the rewritten pages and 5 others changed a little again: all deltas, against epoch 1's versions.
  const again = [...rewritten, ...small.slice(0, 5)];
  for (const p of again) {
    scribble(rng, A, 0, p, 2);
    mark(A, 0, p);
  }
  stageRegion(primary, A, 0);
  const second = ship(primary, standby, B, 2);
  assert.is(second[0].deltas, 7);
  assert.ok(second[0].sizes.every((s) => encodingOf(s) === XBZRLE && sizeOf(s) > 0 && sizeOf(s) <= 2 * (2 + 1 + 4)));
  assertSameMemory(B, A, 'after epoch 2');
});

test('a cache smaller than the pages sent: a page whose slot another took goes raw; pages of two regions still round-trip', () => {
  const rng = seeded(99);
  const specs = [ram(0, 64), ram(1, 64)];
  const A = guest(specs);
  const B = guest(specs, MiB, false);
  const primary = new StagedPages(PS, 128 * PS, 8 * PS);
  const standby = new StagedPages(PS, 128 * PS);
  // The base: every page of both regions, raw.
  for (const r of [0, 1]) {
    for (let p = 0; p < 64; p++) mark(A, r, p);
    stageRegion(primary, A, r);
  }
  assert.is(ship(primary, standby, B, 0).reduce((n, r) => n + r.deltas, 0), 0);
  for (const r of [0, 1]) assertSameMemory(B, A, `the base, region ${r}`, r);
  let total = 0;
  for (let epoch = 1; epoch < 6; epoch++) {
    const pages = { 0: distinctBelow(rng, 64, 12), 1: distinctBelow(rng, 64, 12) } as Record<number, number[]>;
    for (const r of [0, 1]) {
      for (const p of pages[r]) {
        scribble(rng, A, r, p, 1);
        mark(A, r, p);
      }
      stageRegion(primary, A, r);
    }
    const runs = ship(primary, standby, B, epoch);
    assert.equal(runs.map((r) => r.regionId), [0, 1]);
    const deltas = runs.reduce((n, r) => n + r.deltas, 0);
    assert.ok(deltas <= 8, `epoch ${epoch}: ${deltas} deltas from a cache of 8 pages`);
    total += deltas;
    for (const r of [0, 1]) assertSameMemory(B, A, `epoch ${epoch}, region ${r}`, r);
  }
  assert.ok(total > 0, 'some pages found their last version in the cache');
  // All 128 pages with a word changed: at most 8 cached versions to delta against.
  for (const r of [0, 1]) {
    for (let p = 0; p < 64; p++) {
      scribble(rng, A, r, p, 1);
      mark(A, r, p);
    }
    stageRegion(primary, A, r);
  }
  const all = ship(primary, standby, B, 9);
  const deltas = all.reduce((n, r) => n + r.deltas, 0);
  assert.ok(deltas <= 8, `${deltas} deltas`);
  for (const r of [0, 1]) assertSameMemory(B, A, `all pages, region ${r}`, r);
  // Direct-mapped: region 1's pages 56..63, sent last, fill the 8 slots. Sent again first they go as
  // deltas and take the slots; region 0's pages 0..7 after them find other pages there and go raw.
  for (const [r, pages] of [[1, [56, 57, 58, 59, 60, 61, 62, 63]], [0, [0, 1, 2, 3, 4, 5, 6, 7]]] as const) {
    for (const p of pages) {
      scribble(rng, A, r, p, 1);
      mark(A, r, p);
    }
    stageRegion(primary, A, r);
  }
  const last = ship(primary, standby, B, 10);
  assert.equal(last.map((r) => [r.regionId, r.deltas]), [[1, 8], [0, 0]]);
  assert.ok(last[1].sizes.every((x) => x === (PS | (RAW << 24))));
  for (const r of [0, 1]) assertSameMemory(B, A, `last, region ${r}`, r);
});

test('a delta decoded against a holder page that is not what the primary last sent: MS_ERR_PAGE_HASH_MISMATCH, nothing of the frame kept, the holder untouched', () => {
  const rng = seeded(321);
  const A = guest([ram(0, 64)]);
  const B = guest([ram(0, 64)], MiB, false);
  const primary = new StagedPages(PS, 64 * PS, 64 * PS);
  const standby = new StagedPages(PS, 64 * PS);
  for (let p = 0; p < 64; p++) mark(A, 0, p);
  stageRegion(primary, A, 0);
  ship(primary, standby, B, 0);
  assertSameMemory(B, A, 'after the base');
  // Something already staged for the epoch: page 20, raw from a staging without a cache.
  const other = guest([ram(0, 64)]);
  other.pageView(0, 20).fill(0x5a);
  mark(other, 0, 20);
  const plain = new StagedPages(PS, 64 * PS);
  stageRegion(plain, other, 0);
  receive(standby, send(plain, 1).frames[0], B);
  assert.is(standby.count, 1);
  // Pages 5 and 9 changed a little (bytes 100..111): deltas.
  for (const p of [5, 9]) {
    const page = pageBytes(A, 0, p);
    for (let i = 100; i < 112; i++) page[i] ^= 1 + rng.below(255);
    mark(A, 0, p);
  }
  stageRegion(primary, A, 0);
  const { runs, frames } = send(primary, 1);
  assert.is(runs[0].deltas, 2);
  // The standby's page 9 differs from the base at a byte the delta does not touch (or page 5, the first).
  for (const p of [9, 5]) {
    const held = pageBytes(B, 0, p);
    held[3000] ^= 0x01;
    const snapshot = Buffer.from(held);
    const e = expectCode(() => receive(standby, frames[0], B), 'MS_ERR_PAGE_HASH_MISMATCH', `holder page ${p}`);
    assert.match(e.message, new RegExp(`page ${p} of region 0 does not match its hash: not kept`));
    assert.equal([detailsOf(e).page, detailsOf(e).regionId], [p, 0]);
    assert.is(standby.count, 1, `holder page ${p}: nothing of the frame kept`);
    assert.ok(same(pageBytes(B, 0, p), snapshot), 'the holder is only read');
    held[3000] ^= 0x01;
  }
  // The holder as the primary last sent it: the same frame is accepted.
  receive(standby, frames[0], B);
  assert.is(standby.count, 3);
  assert.is(standby.applyTo(B), 3);
  for (const p of [5, 9]) assert.ok(same(pageBytes(B, 0, p), pageBytes(A, 0, p)), `page ${p}`);
  assert.ok(same(pageBytes(B, 0, 20), pageBytes(other, 0, 20)), 'page 20');
  assert.equal(differentPages(B, A), [20]);
});

test('a raw page with one flipped byte: MS_ERR_PAGE_HASH_MISMATCH naming it, and nothing of the frame kept', () => {
  const source = guest([ram(0, 256)]);
  for (let p = 0; p < 40; p++) mark(source, 0, p * 5);
  const primary = new StagedPages(PS, 256 * PS);
  stageRegion(primary, source, 0);
  const [good] = send(primary, 2).frames;
  const other = guest([ram(0, 256)]);
  other.pageView(0, 1).fill(1);
  other.pageView(0, 2).fill(2);
  for (const p of [1, 2]) mark(other, 0, p);
  const second = new StagedPages(PS, 256 * PS);
  stageRegion(second, other, 0);
  const [first] = send(second, 2).frames;

  const target = guest([ram(0, 256)], MiB, false);
  const standby = new StagedPages(PS, 256 * PS);
  receive(standby, first, target);
  assert.is(standby.count, 2);
  const h = readFrameHeader(good, 0, good.length)!;
  const m = decodeEpochPages(good, FRAME_HEADER_BYTES, h.bodyLength, h.checkedLength, target.regions);
  for (const [i, byte] of [[0, 0], [17, 4095], [39, 1234]] as const) {
    const bad = good.slice();
    bad[m.payloadOffset + i * PS + byte] ^= 0x20;
    verifyFrame(bad, 0, h); // the CRC does not cover the payload
    const e = expectCode(() => receive(standby, bad, target), 'MS_ERR_PAGE_HASH_MISMATCH', `page ${i}`);
    assert.match(e.message, new RegExp(`page ${i * 5} of region 0 does not match`), e.message);
    assert.equal([detailsOf(e).page, detailsOf(e).regionId], [i * 5, 0]);
    assert.is(standby.count, 2, `page ${i}: nothing of the bad frame kept`);
  }
  // The pages staged before the bad frames are intact, and the good frame is still taken whole after them.
  receive(standby, good, target);
  assert.is(standby.count, 42);
  assert.is(standby.applyTo(target), 42);
  for (const p of [1, 2]) assert.ok(same(pageBytes(target, 0, p), pageBytes(other, 0, p)), `page ${p}`);
  for (let p = 0; p < 40; p++) assert.ok(same(pageBytes(target, 0, p * 5), pageBytes(source, 0, p * 5)), `page ${p * 5}`);
});

test('a malformed delta (a run past the page end, cut, empty, over-long): MS_ERR_DELTA_MALFORMED naming the page; a flipped delta byte is refused too; nothing kept', () => {
  const holder = guest([ram(0, 16)]);
  const heldBefore = Buffer.from(pageBytes(holder, 0, 2));
  const page1 = new Uint8Array(PS).fill(7);
  const cases: [string, number[]][] = [
    ['a run past the page end', [0xff, 0x1f, 0x02, 0xaa, 0xbb]], // skip 4095, then 2 bytes
    ['a run ending one past the page end', [0xfe, 0x1f, 0x03, 1, 2, 3]],
    ['a run cut short', [0x00, 0x05, 0x01]],
    ['cut inside a number', [0x80]],
    ['an empty changed run', [0x00, 0x00]],
    ['an empty unchanged run after the first pair', [0x00, 0x01, 0xaa, 0x00, 0x01, 0xbb]],
    ['an over-long number', [0x80, 0x80, 0x80, 0x01, 0x01, 0xaa]],
  ];
  const standby = new StagedPages(PS, 16 * PS);
  const plain = guest([ram(0, 16)]);
  mark(plain, 0, 9);
  const pre = new StagedPages(PS, 16 * PS);
  stageRegion(pre, plain, 0);
  receive(standby, send(pre, 3).frames[0], holder);
  assert.is(standby.count, 1);
  for (const [what, bytes] of cases) {
    const d = Uint8Array.from(bytes);
    assert.is.not(refXbzrleValidate(d, PS), 0, `${what}: malformed by the reference`);
    // Page 1 raw and good, then page 2 as the malformed delta.
    const head = encodeEpochPagesHead(3, 0, PS, [1, 2], [PS | (RAW << 24), d.length | (XBZRLE << 24)], BigUint64Array.from([pageHash(page1), 0n]));
    const frame = concat([head, page1, d]);
    const e = expectCode(() => receive(standby, frame, holder), 'MS_ERR_DELTA_MALFORMED', what);
    assert.match(e.message, /epoch 3: the delta of page 2 of region 0 is malformed \(-\d\): not kept/, `${what}: ${e.message}`);
    assert.equal([detailsOf(e).page, detailsOf(e).regionId], [2, 0], what);
    assert.is(standby.count, 1, `${what}: nothing kept`);
    assert.ok(same(pageBytes(holder, 0, 2), heldBefore), `${what}: the holder untouched`);
  }
  // A valid delta with the right hash for comparison: accepted.
  const want = Uint8Array.from(heldBefore);
  want[4095] ^= 0xff;
  const okDelta = Uint8Array.from([0xff, 0x1f, 0x01, want[4095]]);
  const head = encodeEpochPagesHead(3, 0, PS, [1, 2], [PS | (RAW << 24), okDelta.length | (XBZRLE << 24)], BigUint64Array.from([pageHash(page1), pageHash(want)]));
  const okFrame = concat([head, page1, okDelta]);
  // Every single-bit flip in the delta bytes is refused, as malformed or by the hash.
  const m = decodeEpochPages(okFrame, FRAME_HEADER_BYTES, okFrame.length - FRAME_HEADER_BYTES, 16 + 32, holder.regions);
  const codes = new Set<string>();
  for (let bit = 0; bit < 8 * okDelta.length; bit++) {
    const bad = okFrame.slice();
    bad[m.payloadOffset + PS + (bit >>> 3)] ^= 1 << (bit & 7);
    let code = 'accepted';
    try {
      standby.acceptFrame(bad, m, holder, 'epoch 3');
    } catch (err) {
      code = (err as { code: string }).code;
    }
    assert.ok(code === 'MS_ERR_DELTA_MALFORMED' || code === 'MS_ERR_PAGE_HASH_MISMATCH', `bit ${bit}: ${code}`);
    assert.is(standby.count, 1, `bit ${bit}: nothing kept`);
    codes.add(code);
  }
  assert.equal([...codes].sort(), ['MS_ERR_DELTA_MALFORMED', 'MS_ERR_PAGE_HASH_MISMATCH']);
  receive(standby, okFrame, holder);
  assert.is(standby.count, 3);
  const target = guest([ram(0, 16)], MiB, false);
  standby.applyTo(target);
  assert.ok(same(pageBytes(target, 0, 1), page1));
  assert.ok(same(pageBytes(target, 0, 2), want));
  assert.ok(same(pageBytes(target, 0, 9), pageBytes(plain, 0, 9)));
});

test('staging grows past its first 4096 pages: 5000 pages of a 32 MiB guest, staged and received raw, then as deltas', () => {
  const source = guest([ram(0, 8192)], 1 << 30);
  const want = distinctBelow(seeded(32), 8192, 5000).sort((a, b) => a - b);
  for (const p of want) mark(source, 0, p);
  const primary = new StagedPages(PS, 32 * MiB, 32 * MiB);
  assert.is(primary.capacity, 8192);
  assert.is(primary.stageMarked(0, source.slabsOf(0)[0]), 5000);
  assert.is(primary.count, 5000);
  const { runs, frames } = send(primary, 1, 1 << 30);
  assert.equal(runs.map((r) => r.pages.length), [1024, 1024, 1024, 1024, 904], 'at most a frame\'s pages per run');
  assert.equal(runs.flatMap((r) => r.pages), want);
  assert.is(runs.reduce((n, r) => n + r.deltas, 0), 0);
  for (const k of [0, 1, 4095, 4096, 4097, 4999]) {
    const r = runs[Math.floor(k / 1024)];
    const i = k % 1024;
    assert.ok(same(r.payload.subarray(i * PS, (i + 1) * PS), pageBytes(source, 0, want[k])), `staged page ${k}`);
  }
  const target = guest([ram(0, 8192)], 1 << 30, false);
  const standby = new StagedPages(PS, 32 * MiB);
  for (const f of frames) receive(standby, f, target);
  assert.is(standby.count, 5000);
  assert.is(standby.applyTo(target), 5000);
  const wanted = new Set(want);
  for (let p = 0; p < 8192; p++) {
    const ok = wanted.has(p) ? same(pageBytes(target, 0, p), pageBytes(source, 0, p)) : isZeroBytes(pageBytes(target, 0, p));
    if (!ok) assert.unreachable(`page ${p} (${wanted.has(p) ? 'staged' : 'not staged'})`);
  }
  // The same 5000 pages, one word changed each: deltas, decoded into a fresh staging that grows as it goes.
  primary.clear();
  const rng = seeded(33);
  for (const p of want) {
    scribble(rng, source, 0, p, 1);
    mark(source, 0, p);
  }
  primary.stageMarked(0, source.slabsOf(0)[0]);
  const again = send(primary, 2);
  assert.is(again.runs.reduce((n, r) => n + r.deltas, 0), 5000);
  const bytes = again.runs.reduce((n, r) => n + r.payload.length, 0);
  assert.ok(bytes <= 5000 * 8, `${bytes} bytes for 5000 one-word deltas`);
  const fresh = new StagedPages(PS, 32 * MiB);
  for (const f of again.frames) receive(fresh, f, target);
  assert.is(fresh.count, 5000);
  assert.is(fresh.applyTo(target), 5000);
  assert.equal(differentPages(target, source), [...Array(8192).keys()].filter((p) => !wanted.has(p)), 'the 5000 pages as the source holds them now, the others still zero');
});

test('capacity: stageMarked stops there and leaves the other marks; acceptFrame past it throws MS_ERR_MEMORY_ALLOCATION and keeps nothing of the frame', () => {
  const source = guest([ram(0, 64)]);
  for (let p = 0; p < 12; p++) mark(source, 0, p);
  const staging = new StagedPages(PS, 10 * PS + 100);
  assert.is(staging.capacity, 10);
  assert.is(staging.full, false);
  assert.is(staging.stageMarked(0, source.slabsOf(0)[0], 1000), 10, 'a limit above capacity is capacity');
  assert.is(staging.full, true);
  assert.equal(marked(source, 0), [10, 11]);
  staging.clear();
  assert.is(staging.full, false);
  assert.is(staging.count, 0);
  assert.is(staging.stageMarked(0, source.slabsOf(0)[0]), 2);

  // 12 pages received into a staging of 10.
  for (let p = 0; p < 12; p++) mark(source, 0, p);
  const big = new StagedPages(PS, 64 * PS);
  big.stageMarked(0, source.slabsOf(0)[0]);
  const [frame] = send(big, 1).frames;
  const target = guest([ram(0, 64)], MiB, false);
  const standby = new StagedPages(PS, 10 * PS);
  const e = expectCode(() => receive(standby, frame, target), 'MS_ERR_MEMORY_ALLOCATION', '12 pages into 10');
  assert.match(e.message, /more than 10 pages/);
  assert.is(standby.count, 0, 'nothing of the frame kept');
  // Capacity counts what is already staged too: 12 staged, 12 more into 15.
  const partial = new StagedPages(PS, 15 * PS);
  receive(partial, frame, target);
  assert.is(partial.count, 12);
  expectCode(() => receive(partial, frame, target), 'MS_ERR_MEMORY_ALLOCATION', '12 more into 15');
  assert.is(partial.count, 12, 'nothing of the second frame kept');
  assert.is(partial.full, false);
  // Three more fit.
  for (const p of [40, 41, 42]) mark(source, 0, p);
  big.clear();
  big.stageMarked(0, source.slabsOf(0)[0]);
  receive(partial, send(big, 1).frames[0], target);
  assert.is(partial.count, 15);
  assert.is(partial.full, true);
  assert.is(partial.applyTo(target), 15);
  for (const p of [...Array.from({ length: 12 }, (_, i) => i), 40, 41, 42]) assert.ok(same(pageBytes(target, 0, p), pageBytes(source, 0, p)), `page ${p}`);
  assert.ok(isZeroBytes(pageBytes(target, 0, 12)));
});

test('writePage writes one page into the slab that holds it; a page in no slab is MS_ERR_BATCH_PAGE_RANGE', () => {
  const target = guest([ram(0, 600), ram(2, 64)], MiB, false);
  const src = new Uint8Array(3 * PS);
  for (let i = 0; i < src.length; i++) src[i] = (i * 31 + 7) & 0xff;
  writePage(target, 0, 0, src, 0, PS);
  writePage(target, 0, 300, src, PS, PS); // in the second slab
  writePage(target, 0, 599, src, 2 * PS, PS); // the last page of the last slab
  writePage(target, 2, 63, src, PS, PS);
  assert.ok(same(pageBytes(target, 0, 0), src.subarray(0, PS)));
  assert.ok(same(pageBytes(target, 0, 300), src.subarray(PS, 2 * PS)));
  assert.ok(same(pageBytes(target, 0, 599), src.subarray(2 * PS)));
  assert.ok(same(pageBytes(target, 2, 63), src.subarray(PS, 2 * PS)));
  for (const p of [1, 255, 256, 299, 301, 598]) assert.ok(isZeroBytes(pageBytes(target, 0, p)), `page ${p} untouched`);
  const e = expectCode(() => writePage(target, 0, 600, src, 0, PS), 'MS_ERR_BATCH_PAGE_RANGE', 'page 600 of 600');
  assert.match(e.message, /page 600 of region 0/);
  expectCode(() => writePage(target, 2, 64, src, 0, PS), 'MS_ERR_BATCH_PAGE_RANGE', 'page 64 of 64');
});

test.run();
