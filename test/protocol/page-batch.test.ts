// PAGE_BATCH structure (src/protocol/page-batch.ts): the one-page fixture, random round trips through
// encodeBatchFrame / decodeBatch / batchEntry, the two wire segments of sealBatch, each validation
// rule with its code, every limit at limit and limit+1, and every truncation. Content (hashes,
// deltas, lz4 blocks) is checked when a batch is applied: see apply.test.ts.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Capability, FrameType, Limits, PageEncoding } from '../../src/protocol/constants.js';
import { FRAME_HEADER_BYTES, maxBodyBytes, readFrameHeader, verifyFrame } from '../../src/protocol/frame.js';
import {
  batchEntry, BATCH_HEADER_BYTES, chunkBytes, chunkEntriesOffset, chunkPayloadOffset, decodeBatch, encodeBatchFrame, ENTRY_BYTES,
  LZ4_PREFIX_BYTES, sealBatch, type BatchEntry, type BatchRegion, type BatchView,
} from '../../src/protocol/page-batch.js';
import { mxh64 } from '../_support/reference-kernels.js';
import {
  ALL_CAPABILITIES, assertBytes, concat, expectCode, pageHash, randomEntries, randomU64, readFixture,
} from '../_support/protocol-helpers.js';
import { seeded } from '../_support/seeded.js';

const PS = 4096;
const REGIONS = new Map<number, BatchRegion>([[0, { pageSize: PS, pageCount: 8192 }], [9, { pageSize: 65536, pageCount: 10 }]]);
const regionOf = (id: number): BatchRegion | undefined => REGIONS.get(id);

type Page = BatchEntry & { payload: Uint8Array };

/** Decodes a whole PAGE_BATCH frame after the header and CRC checks, as the destination does. */
function decodeFrame(frame: Uint8Array, caps = ALL_CAPABILITIES): BatchView {
  const h = readFrameHeader(frame, 0, frame.length);
  assert.ok(h !== null);
  assert.is(h.type, FrameType.PAGE_BATCH);
  verifyFrame(frame, 0, h);
  return decodeBatch(frame, FRAME_HEADER_BYTES, h.bodyLength, h.checkedLength, regionOf, caps);
}

function entriesOf(view: BatchView): BatchEntry[] {
  return Array.from({ length: view.count }, (_, i) => batchEntry(view, i));
}

const entry = (page: number, encoding: number, size: number, hash = 1n): Page => ({ page, encoding, size, hash, payload: new Uint8Array(size) });
const zero = (page: number): Page => entry(page, PageEncoding.ZERO, 0);
const raw = (page: number, size = PS): Page => entry(page, PageEncoding.RAW, size);

/** Decodes a batch of `pages` for region `regionId` with the given capabilities. */
function decodePages(pages: Page[], regionId = 0, caps = ALL_CAPABILITIES): BatchView {
  return decodeFrame(encodeBatchFrame(regionId, 1, pages), caps);
}

/** A frame whose body header fields are overwritten after encoding (then resealed where asked). */
function withBody(frame: Uint8Array, edit: (dv: DataView) => void): { buf: Uint8Array; bodyLength: number; checked: number } {
  const buf = frame.slice();
  const dv = new DataView(buf.buffer);
  edit(dv);
  return { buf, bodyLength: buf.length - FRAME_HEADER_BYTES, checked: dv.getUint32(8, true) };
}

// ---- fixture ----------------------------------------------------------------------------------

test('a one-page raw PAGE_BATCH encodes to the fixture and the fixture decodes to it', () => {
  const page = new Uint8Array(PS);
  page.set(Buffer.from('MEMSHIFT'));
  page[PS - 1] = 0xff;
  const hash = pageHash(page);
  assert.is(hash, 0x9906d5c464d84037n, 'kernel hash of the fixture page');
  assert.is(mxh64(page), hash, 'the TS reference agrees');
  const fixture = readFixture('page-batch-raw.hex');
  assertBytes(encodeBatchFrame(0, 2, [{ page: 3, encoding: PageEncoding.RAW, size: PS, hash, payload: page }]), fixture, 'encodeBatchFrame');
  const view = decodeFrame(fixture, 0);
  assert.equal(
    { regionId: view.regionId, iteration: view.iteration, count: view.count, entriesOffset: view.entriesOffset, payloadOffset: view.payloadOffset, payloadBytes: view.payloadBytes, pageSize: view.pageSize },
    { regionId: 0, iteration: 2, count: 1, entriesOffset: 32, payloadOffset: 48, payloadBytes: PS, pageSize: PS },
  );
  assert.equal(batchEntry(view, 0), { page: 3, encoding: PageEncoding.RAW, size: PS, hash });
  assertBytes(fixture.subarray(view.payloadOffset, view.payloadOffset + PS), page, 'payload');
});

// ---- round trips and layout ------------------------------------------------------------------

test('random batches round-trip: header fields, every entry, and each payload at its running offset', () => {
  const rng = seeded(41);
  for (let i = 0; i < 200; i++) {
    const count = i < 3 ? Limits.MAX_PAGES_PER_BATCH : 1 + rng.below(300);
    const pages = i < 3 ? randomEntries(rng, count, 8192, PS).map((p) => ({ ...p, encoding: 0, size: 0, payload: new Uint8Array(0) })) : randomEntries(rng, count, 8192, PS);
    const iteration = rng.u32();
    const frame = encodeBatchFrame(0, iteration, pages);
    const view = decodeFrame(frame);
    assert.equal([view.regionId, view.iteration, view.count, view.payloadBytes], [0, iteration, count, pages.reduce((n, p) => n + p.size, 0)], `case ${i}`);
    assert.equal(entriesOf(view), pages.map(({ page, encoding, size, hash }) => ({ page, encoding, size, hash })), `case ${i} entries`);
    let at = view.payloadOffset;
    for (const p of pages) {
      assertBytes(frame.subarray(at, at + p.size), p.payload, `case ${i} page ${p.page}`);
      at += p.size;
    }
    assert.is(at, frame.length, `case ${i}: payloads end the frame`);
  }
});

test('a batch decodes at an offset inside a larger buffer with offsets absolute in that buffer', () => {
  const frame = encodeBatchFrame(9, 7, [raw(2, 65536), zero(4)]);
  const big = new Uint8Array(frame.length + 300).fill(0xcc);
  big.set(frame, 123);
  const view = decodeBatch(big, 123 + 16, frame.length - 16, 16 + 32, regionOf, 0);
  assert.equal([view.entriesOffset, view.payloadOffset, view.pageSize], [123 + 32, 123 + 64, 65536]);
  assert.equal(batchEntry(view, 1), { page: 4, encoding: 0, size: 0, hash: 1n });
});

test('sealBatch: the head and payload segments of a chunk with spare entry slots are the frame encodeBatchFrame builds', () => {
  const rng = seeded(42);
  const pages = randomEntries(rng, 5, 8192, PS);
  const maxEntries = 12;
  const payloadBytes = pages.reduce((n, p) => n + p.size, 0);
  const chunk = 64; // not at 0: offsets must be relative to `chunk`
  const buf = new Uint8Array(chunk + chunkBytes(maxEntries, payloadBytes)).fill(0x5a);
  const dv = new DataView(buf.buffer);
  let e = chunkEntriesOffset(chunk);
  let p = chunkPayloadOffset(chunk, maxEntries);
  assert.is(e, chunk + 32);
  assert.is(p, chunk + 32 + maxEntries * ENTRY_BYTES);
  for (const pg of pages) {
    dv.setUint32(e, pg.page, true);
    dv.setUint32(e + 4, pg.size | (pg.encoding << 24), true);
    dv.setBigUint64(e + 8, pg.hash, true);
    buf.set(pg.payload, p);
    e += ENTRY_BYTES;
    p += pg.size;
  }
  const iteration = rng.u32();
  const seg = sealBatch(buf, chunk, 0, iteration, pages.length, payloadBytes, maxEntries);
  assert.equal(seg.head, [chunk, 16 + 16 + 5 * 16]);
  assert.equal(seg.payload, [chunkPayloadOffset(chunk, maxEntries), payloadBytes]);
  const wire = concat([buf.subarray(seg.head[0], seg.head[0] + seg.head[1]), buf.subarray(seg.payload[0], seg.payload[0] + seg.payload[1])]);
  assertBytes(wire, encodeBatchFrame(0, iteration, pages), 'head + payload');
  assert.is(buf[chunk - 1], 0x5a, 'nothing written before the chunk');
});

test('chunk geometry: chunkBytes covers frame header, batch header, entries and payload', () => {
  assert.is(BATCH_HEADER_BYTES, 16);
  assert.is(ENTRY_BYTES, 16);
  assert.is(chunkBytes(4096, 16 * 2 ** 20), 16 + Limits.MAX_FRAME_BODY_BYTES);
  assert.is(chunkBytes(1, 0), 48);
});

// ---- validation rules ----------------------------------------------------------------------------

test('rejects a region the session does not have with MS_ERR_BATCH_REGION_UNKNOWN', () => {
  const e = expectCode(() => decodePages([zero(0)], 3), 'MS_ERR_BATCH_REGION_UNKNOWN');
  assert.is((e as unknown as { details: { regionId: number } }).details.regionId, 3);
});

test('accepts the last page of a region and rejects pageCount and beyond with MS_ERR_BATCH_PAGE_RANGE', () => {
  assert.is(batchEntry(decodePages([zero(8191)]), 0).page, 8191);
  for (const page of [8192, 8193, 0xffffffff]) {
    const e = expectCode(() => decodePages([zero(1), zero(page)]), 'MS_ERR_BATCH_PAGE_RANGE', `page ${page}`);
    assert.is((e as unknown as { details: { page: number } }).details.page, page);
  }
});

test('rejects a repeated or decreasing page with MS_ERR_FRAME_MALFORMED', () => {
  expectCode(() => decodePages([zero(5), zero(5)]), 'MS_ERR_FRAME_MALFORMED', 'repeated');
  expectCode(() => decodePages([zero(5), zero(4)]), 'MS_ERR_FRAME_MALFORMED', 'decreasing');
  expectCode(() => decodePages([zero(0), zero(9), zero(3)]), 'MS_ERR_FRAME_MALFORMED', 'decreasing later');
  assert.is(decodePages([zero(0), zero(1), zero(2)]).count, 3, 'page 0 first is fine');
});

test('rejects a zero page with a payload, a raw page of the wrong size and an unknown encoding with MS_ERR_BATCH_ENCODING', () => {
  expectCode(() => decodePages([entry(1, PageEncoding.ZERO, 1)]), 'MS_ERR_BATCH_ENCODING', 'zero with 1 byte');
  expectCode(() => decodePages([raw(1, PS - 1)]), 'MS_ERR_BATCH_ENCODING', 'raw of pageSize-1');
  expectCode(() => decodePages([raw(1, PS + 1)]), 'MS_ERR_BATCH_ENCODING', 'raw of pageSize+1');
  expectCode(() => decodePages([raw(1, 0)]), 'MS_ERR_BATCH_ENCODING', 'raw of 0');
  expectCode(() => decodePages([raw(1, 4096)], 9), 'MS_ERR_BATCH_ENCODING', 'raw of 4 KiB in a 64 KiB region');
  for (const enc of [4, 5, 0x7f, 0xff]) expectCode(() => decodePages([entry(1, enc, 0)]), 'MS_ERR_BATCH_ENCODING', `encoding ${enc}`);
});

test('rejects xbzrle and lz4 entries unless negotiated, each by its own capability bit', () => {
  const xb = [entry(1, PageEncoding.XBZRLE, 10)];
  const lz = [entry(1, PageEncoding.LZ4, 10)];
  expectCode(() => decodePages(xb, 0, 0), 'MS_ERR_BATCH_ENCODING', 'xbzrle, nothing negotiated');
  expectCode(() => decodePages(xb, 0, Capability.LZ4 | Capability.POSTCOPY), 'MS_ERR_BATCH_ENCODING', 'xbzrle, lz4 negotiated');
  expectCode(() => decodePages(lz, 0, 0), 'MS_ERR_BATCH_ENCODING', 'lz4, nothing negotiated');
  expectCode(() => decodePages(lz, 0, Capability.XBZRLE | Capability.POSTCOPY), 'MS_ERR_BATCH_ENCODING', 'lz4, xbzrle negotiated');
  assert.is(decodePages(xb, 0, Capability.XBZRLE).count, 1);
  assert.is(decodePages(lz, 0, Capability.LZ4).count, 1);
});

test('xbzrle sizes 0 .. pageSize are accepted and pageSize+1 is MS_ERR_BATCH_ENCODING', () => {
  for (const size of [0, 1, PS]) assert.is(batchEntry(decodePages([entry(1, PageEncoding.XBZRLE, size)]), 0).size, size);
  expectCode(() => decodePages([entry(1, PageEncoding.XBZRLE, PS + 1)]), 'MS_ERR_BATCH_ENCODING');
});

test('lz4 sizes 5 .. pageSize are accepted; 0..4 and pageSize+1 are MS_ERR_BATCH_ENCODING', () => {
  for (const size of [LZ4_PREFIX_BYTES + 1, PS]) assert.is(batchEntry(decodePages([entry(1, PageEncoding.LZ4, size)]), 0).size, size);
  for (const size of [0, 1, LZ4_PREFIX_BYTES, PS + 1]) expectCode(() => decodePages([entry(1, PageEncoding.LZ4, size)]), 'MS_ERR_BATCH_ENCODING', `size ${size}`);
});

test('rejects entry sizes that do not add up to payloadBytes with MS_ERR_FRAME_MALFORMED', () => {
  const frame = encodeBatchFrame(0, 1, [raw(1), zero(2)]);
  for (const delta of [-1, 1, -PS, PS]) {
    // payloadBytes and body length move together, so only the sum rule can fail (decodeBatch sees no CRC).
    const payload = PS + delta;
    const buf = new Uint8Array(16 + 16 + 32 + Math.max(payload, 0));
    buf.set(frame.subarray(0, Math.min(frame.length, buf.length)));
    const dv = new DataView(buf.buffer);
    dv.setUint32(16 + 8, payload, true);
    const e = expectCode(() => decodeBatch(buf, 16, buf.length - 16, 48, regionOf, ALL_CAPABILITIES), 'MS_ERR_FRAME_MALFORMED', `payload ${payload}`);
    assert.ok(/add up|does not equal/.test(e.message), e.message);
  }
});

test('rejects a body length other than header + entries + payloadBytes', () => {
  const frame = encodeBatchFrame(0, 1, [raw(1)]);
  const body = frame.length - 16;
  expectCode(() => decodeBatch(frame, 16, body - 1, 32, regionOf, 0), 'MS_ERR_FRAME_MALFORMED', 'one byte short');
  const longer = concat([frame, new Uint8Array(1)]);
  expectCode(() => decodeBatch(longer, 16, body + 1, 32, regionOf, 0), 'MS_ERR_FRAME_MALFORMED', 'one byte more');
});

test('rejects a checked length that does not cover exactly the header and entries', () => {
  const frame = encodeBatchFrame(0, 1, [zero(1), zero(2)]);
  for (const checked of [0, 16, 47, 49, frame.length - 16]) {
    if (checked === 48) continue;
    expectCode(() => decodeBatch(frame, 16, frame.length - 16, checked, regionOf, 0), 'MS_ERR_FRAME_MALFORMED', `checked ${checked}`);
  }
});

test('rejects a non-zero reserved field and a body shorter than the batch header', () => {
  const { buf, bodyLength } = withBody(encodeBatchFrame(0, 1, [zero(1)]), (dv) => dv.setUint16(16 + 2, 1, true));
  expectCode(() => decodeBatch(buf, 16, bodyLength, 32, regionOf, 0), 'MS_ERR_FRAME_MALFORMED', 'reserved');
  for (let n = 0; n < BATCH_HEADER_BYTES; n++) expectCode(() => decodeBatch(buf, 16, n, Math.min(n, 32), regionOf, 0), 'MS_ERR_FRAME_MALFORMED', `${n}-byte body`);
});

// ---- limits --------------------------------------------------------------------------------------

test('accepts MAX_PAGES_PER_BATCH entries and rejects 0 and MAX_PAGES_PER_BATCH+1', () => {
  const pages = Array.from({ length: Limits.MAX_PAGES_PER_BATCH + 1 }, (_, i) => zero(i));
  assert.is(decodePages(pages.slice(0, Limits.MAX_PAGES_PER_BATCH)).count, 4096);
  const e = expectCode(() => decodePages(pages), 'MS_ERR_FRAME_MALFORMED', '4097 entries');
  assert.ok(e.message.includes('4097'), e.message);
  const { buf, bodyLength } = withBody(encodeBatchFrame(0, 1, [zero(1)]), (dv) => dv.setUint32(16 + 4, 0, true));
  expectCode(() => decodeBatch(buf, 16, bodyLength, 16, regionOf, 0), 'MS_ERR_FRAME_MALFORMED', '0 entries');
});

test('the largest batch (4096 raw pages, 16 MiB of payload) fills MAX_FRAME_BODY_BYTES exactly and decodes', () => {
  const payload = new Uint8Array(PS);
  const pages = Array.from({ length: Limits.MAX_PAGES_PER_BATCH }, (_, i) => ({ page: i, encoding: PageEncoding.RAW, size: PS, hash: BigInt(i), payload }));
  const frame = encodeBatchFrame(0, 1, pages);
  assert.is(frame.length - 16, Limits.MAX_FRAME_BODY_BYTES);
  assert.is(frame.length - 16, maxBodyBytes(FrameType.PAGE_BATCH));
  const view = decodeFrame(frame);
  assert.equal([view.count, view.payloadBytes], [4096, Limits.MAX_BATCH_PAYLOAD_BYTES]);
});

test('rejects payloadBytes of MAX_BATCH_PAYLOAD_BYTES+1 before looking at entries or body length', () => {
  const { buf, bodyLength } = withBody(encodeBatchFrame(0, 1, [zero(1)]), (dv) => dv.setUint32(16 + 8, Limits.MAX_BATCH_PAYLOAD_BYTES + 1, true));
  const e = expectCode(() => decodeBatch(buf, 16, bodyLength, 32, regionOf, 0), 'MS_ERR_FRAME_MALFORMED');
  assert.ok(e.message.includes(String(Limits.MAX_BATCH_PAYLOAD_BYTES + 1)), e.message);
});

test('a 64 KiB-page region takes raw pages of 64 KiB, the largest size the 24-bit size field must hold', () => {
  const view = decodePages([raw(0, 65536), entry(3, PageEncoding.XBZRLE, 65536), entry(4, PageEncoding.LZ4, 65536)], 9);
  assert.equal(entriesOf(view).map((x) => x.size), [65536, 65536, 65536]);
  assert.is(view.payloadBytes, 3 * 65536);
});

// ---- truncation -----------------------------------------------------------------------------------

test('every truncation of a batch body throws MS_ERR_FRAME_MALFORMED and never returns a view', () => {
  const rng = seeded(43);
  const pages = randomEntries(rng, 3, 8192, 256).map((p) => ({ ...p, encoding: p.encoding === PageEncoding.RAW ? PageEncoding.ZERO : p.encoding, size: p.encoding === PageEncoding.RAW ? 0 : p.size, payload: p.encoding === PageEncoding.RAW ? new Uint8Array(0) : p.payload }));
  const frame = encodeBatchFrame(0, 1, pages);
  const body = frame.subarray(16);
  for (let k = 0; k < body.length; k++) {
    // As the header would say for a cut body: the checked length cannot exceed the body.
    const checked = Math.min(16 + 16 * pages.length, k);
    expectCode(() => decodeBatch(body.slice(0, k), 0, k, checked, regionOf, ALL_CAPABILITIES), 'MS_ERR_FRAME_MALFORMED', `cut to ${k} of ${body.length}`);
    expectCode(() => decodeBatch(body, 0, k, checked, regionOf, ALL_CAPABILITIES), 'MS_ERR_FRAME_MALFORMED', `cut to ${k}, rest in buffer`);
  }
});

// BUG (both tests below fail today): decodeBatch trusts `bodyOffset + bodyLength <= buf.length`.
// BodyReader (control.ts, handshake.ts) rejects a body that runs past its buffer; the batch decoder
// must too, rather than throw a RangeError from DataView or return a view whose payload is not there.

test('rejects a body whose entries run past the end of its buffer with MS_ERR_FRAME_MALFORMED', () => {
  const frame = encodeBatchFrame(0, 1, [zero(1), raw(2)]);
  const bodyLength = frame.length - 16;
  for (const have of [20, 40]) {
    const cut = frame.slice(16, 16 + have);
    expectCode(() => decodeBatch(cut, 0, bodyLength, 48, regionOf, ALL_CAPABILITIES), 'MS_ERR_FRAME_MALFORMED', `${have} of ${bodyLength} body bytes in the buffer`);
  }
});

test('rejects a body whose payload runs past the end of its buffer with MS_ERR_FRAME_MALFORMED', () => {
  const frame = encodeBatchFrame(0, 1, [zero(1), raw(2)]);
  const bodyLength = frame.length - 16;
  for (const have of [16 + 32, 16 + 32 + 1, bodyLength - 1]) {
    const cut = frame.slice(16, 16 + have);
    expectCode(() => decodeBatch(cut, 0, bodyLength, 48, regionOf, ALL_CAPABILITIES), 'MS_ERR_FRAME_MALFORMED', `${have} of ${bodyLength} body bytes in the buffer`);
  }
});

test('error details name the region and page of the bad entry', () => {
  const e = expectCode(() => decodePages([zero(1), entry(7, PageEncoding.RAW, 3)]), 'MS_ERR_BATCH_ENCODING');
  const d = (e as unknown as { details: { frameType: number; regionId: number; page: number } }).details;
  assert.equal([d.frameType, d.regionId, d.page], [FrameType.PAGE_BATCH, 0, 7]);
  assert.ok(e.message.includes('entry 1'), e.message);
});

test('random hashes survive the round trip bit for bit (u64, high bit set)', () => {
  const rng = seeded(44);
  const pages = Array.from({ length: 50 }, (_, i) => ({ ...zero(i), hash: randomU64(rng) | (1n << 63n) }));
  assert.equal(entriesOf(decodePages(pages)).map((x) => x.hash), pages.map((p) => p.hash));
});

test.run();
