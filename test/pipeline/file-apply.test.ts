// BatchApplier on a file-backed region (memory/file-pages.ts): a batch is applied a window at a time
// into this thread's window and written to the file at each page's offset. The same batches applied to
// an in-memory guest are the reference: same bytes (the file against the slab pages), same digest. Bad
// input: a page outside the region, a payload that does not match its hash, leave the file's page as it was.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode } from '../../src/errors.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { ScratchAgent } from '../../src/memory/scratch-agents.js';
import { BatchApplier } from '../../src/pipeline/apply.js';
import { FrameType, PageEncoding } from '../../src/protocol/constants.js';
import { lz4Encode } from '../../src/protocol/encodings/lz4.js';
import { FRAME_HEADER_BYTES, readFrameHeader, verifyFrame } from '../../src/protocol/frame.js';
import { encodeBatchFrame, type BatchEntry } from '../../src/protocol/page-batch.js';
import { ALL_CAPABILITIES, expectCode, pageHash, randomBytes, ramSpec, regionSnapshot } from '../_support/protocol-helpers.js';
import { seeded } from '../_support/seeded.js';

const PS = 4096;
const PAGES = 3000;
type Page = BatchEntry & { payload: Uint8Array };
const raw = (page: number, content: Uint8Array): Page => ({ page, encoding: PageEncoding.RAW, size: PS, hash: pageHash(content), payload: content });
const zero = (page: number): Page => ({ page, encoding: PageEncoding.ZERO, size: 0, hash: pageHash(new Uint8Array(PS)), payload: new Uint8Array(0) });
function lz4(page: number, content: Uint8Array): Page {
  const payload = lz4Encode(content, PS)!;
  return { page, encoding: PageEncoding.LZ4, size: payload.length, hash: pageHash(content), payload };
}

let dir = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'memshift-file-apply-'));
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

/** A file-backed guest over a file that starts with `lead` bytes and then holds `initial` (the destination's old content). */
function fileGuest(initial: Uint8Array, lead = 0, learn = false): { mem: GuestMemory; path: string } {
  const path = join(dir, 'ram.img');
  const bytes = new Uint8Array(lead + initial.length);
  bytes.fill(0xee, 0, lead);
  bytes.set(initial, lead);
  writeFileSync(path, bytes);
  const mem = GuestMemory.allocate([{ ...ramSpec(PAGES), file: { path, offset: lead } }], { maxSlabBytes: 1 << 20, arenaBytes: 2 << 20 });
  if (learn) mem.learnZeroPagesInFiles();
  return { mem, path };
}

function apply(applier: BatchApplier, pages: Page[]): void {
  const frame = encodeBatchFrame(0, 1, pages);
  const h = readFrameHeader(frame, 0, frame.length)!;
  assert.is(h.type, FrameType.PAGE_BATCH);
  verifyFrame(frame, 0, h);
  applier.apply(frame, FRAME_HEADER_BYTES, h.bodyLength, h.checkedLength);
}

for (const learn of [false, true]) {
  test(`pages in any order, across slabs and windows, raw, lz4 and zero (over old content) land at their offsets; bytes and digest as in memory${learn ? ' (zero pages learnt first)' : ''}`, () => {
    const rng = seeded(11);
    const old = randomBytes(rng, PAGES * PS);
    const { mem, path } = fileGuest(old, 3 * PS, learn);
    const reference = GuestMemory.allocate([ramSpec(PAGES)], { maxSlabBytes: 1 << 20, arenaBytes: 2 << 20 });
    const target = new BatchApplier(mem, ALL_CAPABILITIES, ScratchAgent.MAIN);
    const inMemory = new BatchApplier(reference, ALL_CAPABILITIES, ScratchAgent.MAIN);
    const expected = new Uint8Array(PAGES * PS);
    const batches: Page[][] = [];
    // Every page once (so the reference, which starts at zero, and the file agree everywhere), in batches
    // of shuffled pages (ascending within a batch, as the grammar wants) that jump more than a window
    // (512 pages) and across slabs (256 pages each).
    const order = Array.from({ length: PAGES }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.below(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    for (let i = 0; i < order.length; i += 97) {
      batches.push(order.slice(i, i + 97).sort((a, b) => a - b).map((p) => {
        if (p % 5 === 0) return zero(p);
        const content = p % 7 === 0 ? new Uint8Array(PS).fill(p & 0xff) : randomBytes(rng, PS);
        expected.set(content, p * PS);
        return p % 7 === 0 ? lz4(p, content) : raw(p, content);
      }));
    }
    for (const b of batches) {
      apply(target, b);
      apply(inMemory, b);
    }
    const file = readFileSync(path);
    assert.ok(file.subarray(0, 3 * PS).every((b) => b === 0xee), 'bytes before the region untouched');
    assert.ok(Buffer.from(expected).equals(file.subarray(3 * PS)), 'the file holds every page at its offset');
    assert.ok(regionSnapshot(reference, 0).equals(file.subarray(3 * PS)), 'the same as an in-memory guest');
    assert.is(mem.digest(), reference.digest());
  });
}

test('a page outside the region, or a payload that does not match its hash: refused, and the file keeps its pages', () => {
  const rng = seeded(12);
  const old = randomBytes(rng, PAGES * PS);
  const { mem, path } = fileGuest(old);
  const target = new BatchApplier(mem, ALL_CAPABILITIES, ScratchAgent.MAIN);
  const content = randomBytes(rng, PS);
  const corrupt = { ...raw(10, content), hash: pageHash(content) ^ 1n };
  expectCode(() => apply(target, [corrupt]), ErrorCode.PAGE_HASH_MISMATCH, 'corrupt page');
  expectCode(() => apply(target, [raw(PAGES, content)]), ErrorCode.BATCH_PAGE_RANGE, 'page past the region');
  assert.ok(Buffer.from(old).equals(readFileSync(path)), 'no page of the file changed');
});

test('a file-backed page is recorded as unknown until read or written (a recovery must not take it for zero); learning marks the zero ones', () => {
  const old = new Uint8Array(PAGES * PS);
  old.fill(9, 0, PS); // page 0 holds data, page 1 and the rest are zero
  const { mem } = fileGuest(old);
  const slab = mem.slabsOf(0)[0];
  const hashes = new BigUint64Array(slab.memory.buffer, slab.layout.hashes, 2);
  const zeroHash = pageHash(new Uint8Array(PS));
  assert.is.not(hashes[0], zeroHash);
  assert.is.not(hashes[1], zeroHash);
  mem.learnZeroPagesInFiles();
  assert.is.not(hashes[0], zeroHash, 'the page with data stays unknown');
  assert.is(hashes[1], zeroHash, 'a zero page is known as zero');
  // The digest follows the table: applying page 0's content and zeroing nothing else gives the
  // in-memory guest's digest once every non-zero page is known.
  const target = new BatchApplier(mem, ALL_CAPABILITIES, ScratchAgent.MAIN);
  const reference = GuestMemory.allocate([ramSpec(PAGES)], { maxSlabBytes: 1 << 20, arenaBytes: 2 << 20 });
  const page0 = new Uint8Array(PS).fill(9);
  apply(target, [raw(0, page0)]);
  apply(new BatchApplier(reference, ALL_CAPABILITIES, ScratchAgent.MAIN), [raw(0, page0)]);
  assert.is(mem.digest(), reference.digest());
});

test.run();
