// The replication codecs (src/protocol/replication.ts): EPOCH_PAGES (a partial frame whose CRC covers
// its head and its 16-byte entries, page:u32 sizeAndEncoding:u32 hash:u64, while each hash covers its
// page after decoding; the payload holds raw pages and xbzrle deltas), EPOCH_END, EPOCH_ACK, and the
// empty HEARTBEAT and GOODBYE. Round trips keep every field; a bit flipped anywhere the CRC covers is
// caught before a body decodes to other values; a frame resealed to check less than head and entries
// is refused; every field a peer could lie about is refused with MS_ERR_FRAME_MALFORMED; and seeded
// random or cut bodies never make a decoder throw anything but a MemshiftError with an MS_ERR_ code.
// The codec does not decode deltas (the staging does, and checks the hash): here delta bytes are arbitrary.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemshiftError } from '../../src/errors.js';
import { FrameType, Limits } from '../../src/protocol/constants.js';
import {
  EPOCH_END_HEAD_BYTES, EPOCH_PAGES_HEAD_BYTES, FRAME_HEADER_BYTES, maxBodyBytes, readFrameHeader, verifyFrame,
} from '../../src/protocol/frame.js';
import {
  decodeEmpty, decodeEpochAck, decodeEpochEnd, decodeEpochPages, encodeEpochAck, encodeEpochEnd, encodeEpochPagesHead,
  encodeGoodbye, encodeHeartbeat, EpochEncoding, epochPagesHeadBytes, maxPagesPerEpochFrame, type EpochEnd, type EpochPages,
  type EpochRegion,
} from '../../src/protocol/replication.js';
import {
  concat, expectCode, flipBit, headerOf, pageHash, randomBytes, randomSafe, randomU64, refCrc32c, reseal,
} from '../_support/protocol-helpers.js';
import { distinctBelow, seeded, type Rng } from '../_support/seeded.js';

const MALFORMED = 'MS_ERR_FRAME_MALFORMED';
const MiB = 1 << 20;
const RAW = EpochEncoding.RAW;
const XBZRLE = EpochEncoding.XBZRLE;
const REGIONS: EpochRegion[] = [
  { id: 0, pageSize: 4096, pageCount: 5000 },
  { id: 7, pageSize: 65536, pageCount: 300 },
  { id: 0xffff, pageSize: 16384, pageCount: 2 ** 32 - 1 },
];

const raw = (pageSize: number): number => pageSize | (RAW << 24);
const delta = (size: number): number => size | (XBZRLE << 24);
/** checkedLength of an EPOCH_PAGES frame of `count` entries. */
const checkedOf = (count: number): number => EPOCH_PAGES_HEAD_BYTES + 16 * count;

interface BuiltPages {
  frame: Uint8Array;
  epoch: number;
  regionId: number;
  pageSize: number;
  pages: number[];
  sizes: number[];
  hashes: BigUint64Array;
  payload: Uint8Array;
  /** Where each entry's payload starts in `payload`. */
  starts: number[];
}

/**
 * A whole EPOCH_PAGES frame: the head segment from the encoder followed by the payload. A share
 * `deltas` of the entries (or those it picks) are xbzrle with arbitrary bytes (of random sizes 0 .. pageSize - 1) and a
 * random hash; the others raw random pages with their hash.
 */
function buildPages(rng: Rng, region: EpochRegion, count: number, epoch = rng.u32(), deltas: number | ((i: number) => boolean) = 0.4): BuiltPages {
  const ps = region.pageSize;
  const pages = distinctBelow(rng, Math.min(region.pageCount, 20_000), count);
  const sizes: number[] = [];
  const parts: Uint8Array[] = [];
  const starts: number[] = [];
  const hashes = new BigUint64Array(count);
  let at = 0;
  for (let i = 0; i < count; i++) {
    let part: Uint8Array;
    if (typeof deltas === 'number' ? rng.chance(deltas) : deltas(i)) {
      const n = rng.chance(0.15) ? [0, 1, ps - 1][rng.below(3)] : rng.below(Math.min(ps, 700));
      part = randomBytes(rng, n);
      sizes.push(delta(n));
      hashes[i] = randomU64(rng);
    } else {
      part = randomBytes(rng, ps);
      sizes.push(raw(ps));
      hashes[i] = pageHash(part);
    }
    parts.push(part);
    starts.push(at);
    at += part.length;
  }
  const payload = concat(parts);
  const head = encodeEpochPagesHead(epoch, region.id, ps, pages, sizes, hashes);
  return { frame: concat([head, payload]), epoch, regionId: region.id, pageSize: ps, pages, sizes, hashes, payload, starts };
}

/** What a decoded EPOCH_PAGES says, read back from the buffer at the offsets it gives. */
function readBack(buf: Uint8Array, m: EpochPages): { epoch: number; regionId: number; pages: number[]; sizes: number[]; hashes: bigint[]; payload: Uint8Array } {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const pages: number[] = [];
  const sizes: number[] = [];
  const hashes: bigint[] = [];
  for (let i = 0; i < m.count; i++) {
    pages.push(dv.getUint32(m.entriesOffset + 16 * i, true));
    sizes.push(dv.getUint32(m.entriesOffset + 16 * i + 4, true));
    hashes.push(dv.getBigUint64(m.entriesOffset + 16 * i + 8, true));
  }
  return { epoch: m.epoch, regionId: m.regionId, pages, sizes, hashes, payload: buf.subarray(m.payloadOffset, m.payloadOffset + m.payloadBytes) };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Header, CRC and decode, as the standby does. */
function decodeFrame(frame: Uint8Array, regions: readonly EpochRegion[] = REGIONS): EpochPages {
  const h = readFrameHeader(frame, 0, frame.length);
  assert.ok(h !== null);
  assert.is(h.type, FrameType.EPOCH_PAGES);
  verifyFrame(frame, 0, h);
  return decodeEpochPages(frame, FRAME_HEADER_BYTES, h.bodyLength, h.checkedLength, regions);
}

/**
 * An EPOCH_PAGES body written byte by byte from the layout in replication.ts (not by the encoder):
 * head, then one entry per [page, sizeAndEncoding, hash], then `payload` (zeros of the entries' sizes
 * unless given). `payloadBytes` defaults to the entries' sizes added up.
 */
function manualBody(epoch: number, regionId: number, entries: readonly [number, number, bigint][], payloadBytes?: number, payload?: Uint8Array): Uint8Array {
  const total = entries.reduce((n, [, s]) => n + (s & 0xffffff), 0);
  const data = payload ?? new Uint8Array(total);
  const out = new Uint8Array(16 + 16 * entries.length + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, epoch, true);
  dv.setUint16(4, regionId, true);
  dv.setUint32(8, entries.length, true);
  dv.setUint32(12, payloadBytes ?? total, true);
  entries.forEach(([page, size, hash], i) => {
    dv.setUint32(16 + 16 * i, page, true);
    dv.setUint32(20 + 16 * i, size, true);
    dv.setBigUint64(24 + 16 * i, hash, true);
  });
  out.set(data, 16 + 16 * entries.length);
  return out;
}

// ---- EPOCH_PAGES --------------------------------------------------------------------------------

test('maxPagesPerEpochFrame: 1024 pages up to 16 KiB, 16 MiB of pages above; the largest frame is exactly the type\'s body limit', () => {
  assert.equal([4096, 8192, 16384, 32768, 65536].map(maxPagesPerEpochFrame), [1024, 1024, 1024, 512, 256]);
  assert.is(maxBodyBytes(FrameType.EPOCH_PAGES), 16 + 16 * 1024 + 16 * MiB);
  for (const ps of [4096, 8192, 16384, 32768, 65536]) {
    const most = maxPagesPerEpochFrame(ps);
    const body = epochPagesHeadBytes(most) - FRAME_HEADER_BYTES + most * ps;
    assert.ok(body <= maxBodyBytes(FrameType.EPOCH_PAGES), `${most} pages of ${ps}: ${body} > ${maxBodyBytes(FrameType.EPOCH_PAGES)}`);
    assert.ok(most * ps <= Limits.MAX_BATCH_PAYLOAD_BYTES);
  }
  assert.is(epochPagesHeadBytes(1), FRAME_HEADER_BYTES + EPOCH_PAGES_HEAD_BYTES + 16);
  assert.is(epochPagesHeadBytes(1024), 16 + 16 + 16 * 1024);
  assert.equal([EpochEncoding.RAW, EpochEncoding.XBZRLE], [1, 2]);
});

test('encodeEpochPagesHead writes the layout of the header comment: head, then page, size | encoding << 24 and hash per entry', () => {
  const entries: [number, number, bigint][] = [[4999, raw(4096), 0x0123456789abcdefn], [0, delta(0), 0n], [17, delta(4095), 2n ** 64n - 1n]];
  const head = encodeEpochPagesHead(0xdeadbeef, 0, 4096, entries.map((e) => e[0]), entries.map((e) => e[1]), BigUint64Array.from(entries.map((e) => e[2])));
  assert.is(head.length, epochPagesHeadBytes(3));
  const want = manualBody(0xdeadbeef, 0, entries, undefined, new Uint8Array(0));
  assert.ok(sameBytes(head.subarray(FRAME_HEADER_BYTES), want), 'head and entries byte for byte');
  const dv = new DataView(head.buffer);
  assert.is(dv.getUint32(FRAME_HEADER_BYTES + 12, true), 4096 + 0 + 4095, 'payloadBytes: the entries\' sizes added up');
  assert.equal(headerOf(head), {
    bodyLength: checkedOf(3) + 8191, type: FrameType.EPOCH_PAGES, flags: 0, reserved: 0, checkedLength: checkedOf(3),
    crc: refCrc32c(concat([head.subarray(0, 12), head.subarray(FRAME_HEADER_BYTES)])),
  });
});

test('EPOCH_PAGES round-trips seeded random runs of raw pages and deltas: head + payload is one sealed frame whose CRC covers head and entries', () => {
  const rng = seeded(20261501);
  let rawSeen = 0;
  let deltaSeen = 0;
  for (let trial = 0; trial < 60; trial++) {
    const region = REGIONS[trial % REGIONS.length];
    // Trials 0-2: the most pages, all raw (16 MiB of payload above 8 KiB pages); 3-5: the most, all deltas.
    const count = trial < 6 ? maxPagesPerEpochFrame(region.pageSize) : 1 + rng.below(trial % 5 === 0 ? 200 : 9);
    const b = buildPages(rng, region, count, rng.u32(), trial < 3 ? 0 : trial < 6 ? 1 : 0.4);
    const what = `trial ${trial} (region ${region.id}, ${count} pages)`;
    const h = readFrameHeader(b.frame, 0, b.frame.length);
    assert.ok(h !== null, what);
    assert.is(h!.type, FrameType.EPOCH_PAGES, what);
    assert.is(h!.bodyLength, b.frame.length - FRAME_HEADER_BYTES, what);
    assert.is(h!.bodyLength, checkedOf(count) + b.payload.length, what);
    assert.is(h!.checkedLength, checkedOf(count), what);
    assert.is(h!.crc, refCrc32c(b.frame.subarray(0, FRAME_HEADER_BYTES + h!.checkedLength).filter((_, i) => i < 12 || i >= 16)), what);
    verifyFrame(b.frame, 0, h!);
    if (trial < 3 && region.pageSize === 16384) assert.is(h!.bodyLength, maxBodyBytes(FrameType.EPOCH_PAGES), `${what}: the largest frame`);
    const m = decodeEpochPages(b.frame, FRAME_HEADER_BYTES, h!.bodyLength, h!.checkedLength, REGIONS);
    assert.equal([m.epoch, m.regionId, m.pageSize, m.count, m.payloadBytes], [b.epoch, b.regionId, region.pageSize, count, b.payload.length], what);
    // Offsets are absolute in the buffer decoded.
    assert.is(m.entriesOffset, FRAME_HEADER_BYTES + EPOCH_PAGES_HEAD_BYTES, what);
    assert.is(m.payloadOffset, m.entriesOffset + 16 * count, what);
    assert.is(m.payloadOffset + m.payloadBytes, b.frame.length, what);
    const back = readBack(b.frame, m);
    assert.equal(back.pages, b.pages, what);
    assert.equal(back.sizes, b.sizes, what);
    assert.equal(back.hashes, [...b.hashes], what);
    assert.ok(sameBytes(back.payload, b.payload), what);
    let checkedRaw = 0;
    for (let i = 0; i < count; i++) {
      const enc = back.sizes[i] >>> 24;
      const size = back.sizes[i] & 0xffffff;
      if (enc === RAW) {
        rawSeen++;
        assert.is(size, region.pageSize, `${what}: entry ${i}`);
        if (checkedRaw++ < 4) assert.is(pageHash(back.payload.subarray(b.starts[i], b.starts[i] + size)), back.hashes[i], `${what}: page ${i}`);
      } else {
        deltaSeen++;
        assert.is(enc, XBZRLE, `${what}: entry ${i}`);
        assert.ok(size < region.pageSize, `${what}: entry ${i}`);
      }
    }
  }
  assert.ok(rawSeen > 2304 + 300 && deltaSeen > 2304 + 300, `${rawSeen} raw, ${deltaSeen} deltas`);
});

test('EPOCH_PAGES decodes a body anywhere in a larger buffer, with offsets into that buffer', () => {
  const b = buildPages(seeded(3), REGIONS[0], 5, 42);
  const body = b.frame.subarray(FRAME_HEADER_BYTES);
  const buf = new Uint8Array(1000 + body.length + 77);
  buf.set(body, 1000);
  const m = decodeEpochPages(buf, 1000, body.length, checkedOf(5), REGIONS);
  assert.equal([m.epoch, m.count, m.entriesOffset, m.payloadOffset, m.payloadBytes], [42, 5, 1016, 1096, b.payload.length]);
  const back = readBack(buf, m);
  assert.equal(back.pages, b.pages);
  assert.equal(back.sizes, b.sizes);
  assert.ok(sameBytes(back.payload, b.payload));
  // The 77 bytes after it are not its own: a length one more is refused.
  expectCode(() => decodeEpochPages(buf, 1000, body.length + 1, checkedOf(5), REGIONS), MALFORMED);
});

test('a bit flipped anywhere the EPOCH_PAGES CRC covers (head and entries) is caught; one flipped in a raw page only by that page\'s hash', () => {
  const rng = seeded(77);
  for (const [region, count] of [[REGIONS[0], 3], [REGIONS[1], 2], [REGIONS[2], 6]] as const) {
    const b = buildPages(rng, region, count, 0x01020304, (i) => i % 2 === 1);
    const checked = checkedOf(count);
    const spans: [number, number][] = [[0, 12], [FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + checked]];
    let tried = 0;
    for (const [from, to] of spans) {
      for (let bit = from * 8; bit < to * 8; bit++) {
        const bad = flipBit(b.frame, bit);
        const what = `region ${region.id}, bit ${bit} (byte ${bit >>> 3})`;
        tried++;
        let h: ReturnType<typeof readFrameHeader>;
        try {
          h = readFrameHeader(bad, 0, bad.length);
        } catch (err) {
          assert.ok((err as { code?: string }).code?.startsWith('MS_ERR_FRAME_'), `${what}: ${(err as Error).message}`);
          continue;
        }
        assert.ok(h !== null, what);
        let crcOk = true;
        try {
          verifyFrame(bad, 0, h!);
        } catch (err) {
          assert.is((err as { code?: string }).code, 'MS_ERR_FRAME_CHECKSUM', what);
          crcOk = false;
        }
        if (!crcOk) continue;
        // Past the CRC, the decoder must refuse it or decode exactly the values sent.
        let m: EpochPages;
        try {
          m = decodeEpochPages(bad, FRAME_HEADER_BYTES, Math.min(h!.bodyLength, bad.length - FRAME_HEADER_BYTES), h!.checkedLength, REGIONS);
        } catch (err) {
          assert.is((err as { code?: string }).code, MALFORMED, what);
          continue;
        }
        const back = readBack(bad, m);
        assert.equal([back.epoch, back.regionId, back.pages, back.sizes, back.hashes], [b.epoch, b.regionId, b.pages, b.sizes, [...b.hashes]], `${what}: decoded to other values`);
        assert.unreachable(`${what}: a flipped bit passed the CRC`);
      }
    }
    assert.is(tried, 8 * (12 + checked));
    // A bit flipped in the payload: outside the CRC (the frame still verifies and decodes to the same
    // entries), so a raw page's hash must differ; a delta's is checked after decoding (staged-pages.test).
    let raws = 0;
    for (let i = 0; i < count; i++) {
      const size = b.sizes[i] & 0xffffff;
      if (size === 0) continue;
      const at = FRAME_HEADER_BYTES + checked + b.starts[i] + rng.below(size);
      const bad = flipBit(b.frame, at * 8 + rng.below(8));
      const m = decodeFrame(bad);
      const back = readBack(bad, m);
      assert.equal([back.pages, back.sizes, back.hashes], [b.pages, b.sizes, [...b.hashes]], `entry ${i}`);
      assert.not.ok(sameBytes(back.payload, b.payload), `entry ${i}`);
      if (b.sizes[i] >>> 24 === RAW) {
        raws++;
        assert.is.not(pageHash(back.payload.subarray(b.starts[i], b.starts[i] + size)), back.hashes[i], `page ${i}: hash did not see the flip`);
      }
    }
    assert.is(raws, Math.ceil(count / 2), `region ${region.id}: every raw page was flipped`);
  }
});

test('a frame resealed to check other than its head and entries passes the CRC and is refused by decodeEpochPages', () => {
  const b = buildPages(seeded(15), REGIONS[0], 3, 5, (i) => i === 1);
  const bodyLength = b.frame.length - FRAME_HEADER_BYTES;
  assert.is(decodeFrame(b.frame).count, 3);
  for (const c of [16, 0, checkedOf(3) - 16, checkedOf(3) - 1, checkedOf(3) + 1, checkedOf(3) + 16, bodyLength]) {
    const bad = b.frame.slice();
    new DataView(bad.buffer).setUint32(8, c, true);
    reseal(bad);
    const h = readFrameHeader(bad, 0, bad.length)!;
    assert.is(h.checkedLength, c);
    verifyFrame(bad, 0, h);
    const e = expectCode(() => decodeEpochPages(bad, FRAME_HEADER_BYTES, h.bodyLength, h.checkedLength, REGIONS), MALFORMED, `checkedLength ${c}`);
    assert.match(e.message, new RegExp(`checksum covers ${c} bytes, not the head and 3 entries \\(${checkedOf(3)}\\)`), e.message);
  }
  // Why: resealed to check the head alone, the entries can be changed under a CRC that still verifies.
  const bad = b.frame.slice();
  const dv = new DataView(bad.buffer);
  dv.setUint32(8, 16, true);
  reseal(bad);
  dv.setUint32(FRAME_HEADER_BYTES + 16, 4321, true); // entry 0's page
  dv.setBigUint64(FRAME_HEADER_BYTES + 24, 99n, true); // and its hash
  const h = readFrameHeader(bad, 0, bad.length)!;
  verifyFrame(bad, 0, h);
  expectCode(() => decodeEpochPages(bad, FRAME_HEADER_BYTES, h.bodyLength, h.checkedLength, REGIONS), MALFORMED, 'entries changed under a 16-byte CRC');
});

test('encodeEpochPagesHead refuses no page, more than a frame carries, and hashes or sizes that do not match the pages', () => {
  const h1 = new BigUint64Array(1);
  expectCode(() => encodeEpochPagesHead(1, 0, 4096, [], [], new BigUint64Array(0)), MALFORMED, 'no page');
  expectCode(() => encodeEpochPagesHead(1, 0, 4096, new Uint32Array(1025), new Uint32Array(1025).fill(raw(4096)), new BigUint64Array(1025)), MALFORMED, '1025 pages of 4 KiB');
  expectCode(() => encodeEpochPagesHead(1, 0, 65536, new Uint32Array(257), new Uint32Array(257).fill(raw(65536)), new BigUint64Array(257)), MALFORMED, '257 pages of 64 KiB');
  expectCode(() => encodeEpochPagesHead(1, 0, 4096, [1, 2], [raw(4096), raw(4096)], h1), MALFORMED, '2 pages, 1 hash');
  expectCode(() => encodeEpochPagesHead(1, 0, 4096, [1, 2], [raw(4096)], new BigUint64Array(2)), MALFORMED, '2 pages, 1 size');
  expectCode(() => encodeEpochPagesHead(1, 0, 4096, [1], [raw(4096), raw(4096)], h1), MALFORMED, '1 page, 2 sizes');
  assert.is(encodeEpochPagesHead(1, 0, 65536, new Uint32Array(256), new Uint32Array(256).fill(raw(65536)), new BigUint64Array(256)).length, epochPagesHeadBytes(256));
  assert.is(encodeEpochPagesHead(1, 0, 4096, new Uint32Array(1024), new Uint32Array(1024).fill(delta(7)), new BigUint64Array(1024)).length, epochPagesHeadBytes(1024));
});

/** A valid EPOCH_PAGES body (without its frame header) of `count` raw zero pages numbered first..first+count-1. */
function zeroPagesBody(regionId: number, pageSize: number, count: number, first = 0): Uint8Array {
  const pages = Array.from({ length: count }, (_, i) => first + i);
  const hashes = new BigUint64Array(count).fill(pageHash(new Uint8Array(pageSize)));
  const head = encodeEpochPagesHead(9, regionId, pageSize, pages, new Uint32Array(count).fill(raw(pageSize)), hashes);
  return concat([head.subarray(FRAME_HEADER_BYTES), new Uint8Array(count * pageSize)]);
}

test('EPOCH_PAGES refuses an unknown region, a page outside it, a count out of range, a checksum not over head and entries, bad encodings and sizes, a body not exactly its entries and payload, reserved bits', () => {
  // Pages 4996 raw, 4997 a 10-byte delta, 4998 raw, 4999 an empty delta: 8202 bytes of payload.
  const entries: [number, number, bigint][] = [[4996, raw(4096), 1n], [4997, delta(10), 2n], [4998, raw(4096), 3n], [4999, delta(0), 4n]];
  const good = manualBody(9, 0, entries);
  const checked = checkedOf(4);
  assert.is(good.length, checked + 8202);
  const m = decodeEpochPages(good, 0, good.length, checked, REGIONS);
  assert.equal([m.regionId, m.count, m.entriesOffset, m.payloadOffset, m.payloadBytes], [0, 4, 16, 80, 8202]);
  const edit = (f: (dv: DataView) => void, from: Uint8Array = good): Uint8Array => {
    const bytes = from.slice();
    f(new DataView(bytes.buffer));
    return bytes;
  };
  const pageAt = (i: number): number => EPOCH_PAGES_HEAD_BYTES + 16 * i;
  const sizeAt = (i: number): number => EPOCH_PAGES_HEAD_BYTES + 16 * i + 4;
  const low = manualBody(9, 0, entries.map(([p, s, h]) => [p - 4996, s, h]));
  const cases: [string, Uint8Array, number, RegExp][] = [
    ['region 1 (not the guest\'s)', edit((dv) => dv.setUint16(4, 1, true)), checked, /region 1 is not the guest's/],
    ['region 0xfffe', edit((dv) => dv.setUint16(4, 0xfffe, true)), checked, /region 65534/],
    ['page = pageCount', edit((dv) => dv.setUint32(pageAt(3), 5000, true)), checked, /page 5000 outside region 0 of 5000 pages/],
    ['page 2^32 - 1', edit((dv) => dv.setUint32(pageAt(0), 0xffffffff, true)), checked, /page 4294967295 outside/],
    ['count 0', edit((dv) => dv.setUint32(8, 0, true)), EPOCH_PAGES_HEAD_BYTES, /0 pages \(1 to 1024\)/],
    ['count 2^32 - 1', edit((dv) => dv.setUint32(8, 0xffffffff, true)), checked, /4294967295 pages/],
    // The checkedLength the frame header gave.
    ['checkedLength 16 (the head alone)', good, 16, /the checksum covers 16 bytes, not the head and 4 entries \(80\)/],
    ['checkedLength 0', good, 0, /checksum covers 0 bytes/],
    ['checkedLength of 3 entries', good, checked - 16, /checksum covers 64 bytes/],
    ['checkedLength one short', good, checked - 1, /checksum covers 79 bytes/],
    ['checkedLength one over', good, checked + 1, /checksum covers 81 bytes/],
    ['checkedLength the whole body', good, good.length, /checksum covers 8282 bytes/],
    ['count 3 under a CRC of 4 entries', edit((dv) => dv.setUint32(8, 3, true)), checked, /checksum covers 80 bytes, not the head and 3 entries \(64\)/],
    // Body length against count and payloadBytes.
    ['count 3 for a body of 4 entries', edit((dv) => dv.setUint32(8, 3, true)), checkedOf(3), /8266 bytes for 3 entries and 8202 bytes of payload/],
    ['count 5 for a body of 4 entries', edit((dv) => dv.setUint32(8, 5, true)), checkedOf(5), /8266 bytes for 5 entries and 8202 bytes of payload/],
    ['payloadBytes one more', edit((dv) => dv.setUint32(12, 8203, true)), checked, /8266 bytes for 4 entries and 8203 bytes of payload/],
    ['payloadBytes one less', edit((dv) => dv.setUint32(12, 8201, true)), checked, /8266 bytes for 4 entries and 8201 bytes of payload/],
    ['payloadBytes 2^32 - 1', edit((dv) => dv.setUint32(12, 0xffffffff, true)), checked, /bytes for 4 entries and 4294967295 bytes of payload/],
    ['payloadBytes 0', edit((dv) => dv.setUint32(12, 0, true)), checked, /8266 bytes for 4 entries and 0 bytes of payload/],
    ['one byte short', good.slice(0, good.length - 1), checked, /8265 bytes for 4 entries and 8202 bytes/],
    ['one byte over', concat([good, new Uint8Array(1)]), checked, /8267 bytes for 4 entries and 8202 bytes/],
    ['one page short', good.slice(0, good.length - 4096), checked, /bytes for 4 entries/],
    ['entries only', good.slice(0, checked), checked, /64 bytes for 4 entries and 8202 bytes/],
    // Encodings and sizes.
    ['encoding 0', edit((dv) => dv.setUint32(sizeAt(1), 10, true)), checked, /page 4997 has encoding 0 \(1 raw, 2 xbzrle\)/],
    ['encoding 3', edit((dv) => dv.setUint32(sizeAt(1), 10 | (3 << 24), true)), checked, /page 4997 has encoding 3/],
    ['encoding 255', edit((dv) => dv.setUint32(sizeAt(0), 4096 | (255 << 24), true)), checked, /page 4996 has encoding 255/],
    ['encoding 0, size 0', edit((dv) => dv.setUint32(sizeAt(3), 0, true)), checked, /page 4999 has encoding 0/],
    ['a raw page of 4095 bytes', edit((dv) => dv.setUint32(sizeAt(0), raw(4095), true)), checked, /raw page 4996 of 4095 bytes \(the page size is 4096\)/],
    ['a raw page of 4097 bytes', edit((dv) => dv.setUint32(sizeAt(2), raw(4097), true)), checked, /raw page 4998 of 4097 bytes/],
    ['a raw page of 0 bytes', edit((dv) => dv.setUint32(sizeAt(3), raw(0), true)), checked, /raw page 4999 of 0 bytes/],
    ['a raw page of 10 bytes (a delta relabelled)', edit((dv) => dv.setUint32(sizeAt(1), raw(10), true)), checked, /raw page 4997 of 10 bytes/],
    ['a delta of the page size (a raw page relabelled)', edit((dv) => dv.setUint32(sizeAt(0), delta(4096), true)), checked, /a delta of 4096 bytes for page 4996 \(less than the page size 4096\)/],
    ['a delta of 2^24 - 1 bytes', edit((dv) => dv.setUint32(sizeAt(1), delta(0xffffff), true)), checked, /a delta of 16777215 bytes for page 4997/],
    ['a body of 4 pages read as 64 KiB pages', edit((dv) => dv.setUint16(4, 7, true), low), checked, /raw page 0 of 4096 bytes \(the page size is 65536\)/],
    // Entries whose sizes do not add up to payloadBytes (the body length agrees with the head).
    ['a delta one byte longer', edit((dv) => dv.setUint32(sizeAt(1), delta(11), true)), checked, /entries add up to 8203 bytes of payload, the head says 8202/],
    ['a delta one byte shorter', edit((dv) => dv.setUint32(sizeAt(1), delta(9), true)), checked, /entries add up to 8201 bytes of payload, the head says 8202/],
    ['the empty delta of 4095 bytes', edit((dv) => dv.setUint32(sizeAt(3), delta(4095), true)), checked, /entries add up to 12297 bytes/],
    // Reserved and cut.
    ['reserved u16 after the region', edit((dv) => dv.setUint16(6, 1, true)), checked, /reserved/],
    ['reserved u16, top bit', edit((dv) => dv.setUint16(6, 0x8000, true)), checked, /reserved/],
    ['a body cut in its head', good.slice(0, 10), checked, /truncated/],
    ['a body cut after its head', good.slice(0, 16), checked, /0 bytes for 4 entries/],
    ['an empty body', new Uint8Array(0), checked, /truncated/],
  ];
  for (const [what, bytes, checkedLength, message] of cases) {
    const e = expectCode(() => decodeEpochPages(bytes, 0, bytes.length, checkedLength, REGIONS), MALFORMED, what);
    assert.match(e.message, message, `${what}: ${e.message}`);
  }
  // Sizes moved from one delta to another still add up: the codec cannot tell (the CRC over the entries can).
  const moved = edit((dv) => {
    dv.setUint32(sizeAt(1), delta(4), true);
    dv.setUint32(sizeAt(3), delta(6), true);
  });
  assert.is(decodeEpochPages(moved, 0, moved.length, checked, REGIONS).payloadBytes, 8202);
  // The largest delta (page size - 1) is accepted, in a body that carries it.
  const big = manualBody(1, 0, [[0, delta(4095), 0n]]);
  assert.is(decodeEpochPages(big, 0, big.length, checkedOf(1), REGIONS).payloadBytes, 4095);
  // The last page of a region is inside it; a count at the frame limit is accepted, one above is not.
  decodeEpochPages(good, 0, good.length, checked, [{ id: 0, pageSize: 4096, pageCount: 5000 }]);
  expectCode(() => decodeEpochPages(good, 0, good.length, checked, [{ id: 0, pageSize: 4096, pageCount: 4999 }]), MALFORMED, 'page 4999 of 4999');
  expectCode(() => decodeEpochPages(good, 0, good.length, checked, []), MALFORMED, 'no region at all');
  const most = zeroPagesBody(7, 65536, 256);
  assert.is(decodeEpochPages(most, 0, most.length, checkedOf(256), REGIONS).count, 256);
  const over = manualBody(1, 7, Array.from({ length: 257 }, (_, i) => [i, raw(65536), 0n] as [number, number, bigint]));
  assert.is(over.length, EPOCH_PAGES_HEAD_BYTES + 257 * (16 + 65536), 'only the count is out of range');
  assert.match(expectCode(() => decodeEpochPages(over, 0, over.length, checkedOf(257), REGIONS), MALFORMED, '257 pages of 64 KiB').message, /257 pages \(1 to 256\)/);
  const most4k = zeroPagesBody(0, 4096, 1024);
  assert.is(decodeEpochPages(most4k, 0, most4k.length, checkedOf(1024), REGIONS).count, 1024);
  const over4k = manualBody(1, 0, Array.from({ length: 1025 }, (_, i) => [i, delta(1), 0n] as [number, number, bigint]));
  assert.match(expectCode(() => decodeEpochPages(over4k, 0, over4k.length, checkedOf(1025), REGIONS), MALFORMED, '1025 pages of 4 KiB').message, /1025 pages \(1 to 1024\)/);
});

// ---- EPOCH_END, EPOCH_ACK, HEARTBEAT, GOODBYE ---------------------------------------------------

test('EPOCH_END round-trips the base and seeded epochs; its frame is a sealed control frame', () => {
  const rng = seeded(1505);
  const ends: EpochEnd[] = [
    { epoch: 0, pages: 0, blocks: 0, steps: 0, state: new Uint8Array(0) },
    { epoch: 0, pages: 0xffffffff, blocks: 0xffffffff, steps: Number.MAX_SAFE_INTEGER, state: new Uint8Array(0) },
    { epoch: 0xffffffff, pages: 1, blocks: 7, steps: 2 ** 32 + 1, state: new Uint8Array([1]) },
  ];
  for (let i = 0; i < 40; i++) {
    ends.push({ epoch: 1 + rng.below(2 ** 32 - 1), pages: rng.u32(), blocks: rng.u32(), steps: randomSafe(rng), state: randomBytes(rng, 1 + rng.below(i % 8 === 0 ? 70_000 : 300)) });
  }
  for (const [i, m] of ends.entries()) {
    const frame = encodeEpochEnd(m);
    const h = readFrameHeader(frame, 0, frame.length)!;
    assert.is(h.type, FrameType.EPOCH_END, `end ${i}`);
    assert.is(h.bodyLength, EPOCH_END_HEAD_BYTES + m.state.length, `end ${i}`);
    assert.is(h.checkedLength, h.bodyLength, `end ${i}`);
    verifyFrame(frame, 0, h);
    const back = decodeEpochEnd(frame, FRAME_HEADER_BYTES, h.bodyLength);
    assert.equal([back.epoch, back.pages, back.blocks, back.steps], [m.epoch, m.pages, m.blocks, m.steps], `end ${i}`);
    assert.ok(sameBytes(back.state, m.state), `end ${i}: state`);
    // The state is a copy: the receive buffer may be reused.
    if (m.state.length > 0) {
      frame[FRAME_HEADER_BYTES + EPOCH_END_HEAD_BYTES] ^= 0xff;
      assert.is(back.state[0], m.state[0], `end ${i}: state is a copy`);
    }
  }
});

test('encodeEpochEnd refuses a state larger than a device state may be', () => {
  expectCode(() => encodeEpochEnd({ epoch: 1, pages: 0, blocks: 0, steps: 0, state: new Uint8Array(Limits.MAX_DEVICE_STATE_BYTES + 1) }), MALFORMED);
});

test('EPOCH_END refuses a state length that is not the rest of the body, state on the base, none on an epoch', () => {
  const body = (m: EpochEnd): Uint8Array => encodeEpochEnd(m).slice(FRAME_HEADER_BYTES);
  const good = body({ epoch: 3, pages: 10, blocks: 6, steps: 12345, state: new Uint8Array([1, 2, 3, 4, 5]) });
  assert.is(decodeEpochEnd(good, 0, good.length).steps, 12345);
  assert.is(decodeEpochEnd(good, 0, good.length).blocks, 6, 'blocks at offset 20');
  const edit = (f: (dv: DataView) => void, from: Uint8Array = good): Uint8Array => {
    const bytes = from.slice();
    f(new DataView(bytes.buffer));
    return bytes;
  };
  const base = body({ epoch: 0, pages: 4, blocks: 0, steps: 0, state: new Uint8Array(0) });
  const cases: [string, Uint8Array, RegExp][] = [
    ['stateLength 4 of 5', edit((dv) => dv.setUint32(16, 4, true)), /state of 4 bytes in a body with 5 left/],
    ['stateLength 6 of 5', edit((dv) => dv.setUint32(16, 6, true)), /state of 6 bytes in a body with 5 left/],
    ['stateLength 2^32 - 1', edit((dv) => dv.setUint32(16, 0xffffffff, true)), /state of 4294967295 bytes/],
    ['a trailing byte', concat([good, new Uint8Array(1)]), /state of 5 bytes in a body with 6 left/],
    ['one state byte short', good.slice(0, good.length - 1), /state of 5 bytes in a body with 4 left/],
    ['epoch 0 with state', edit((dv) => dv.setUint32(0, 0, true)), /epoch 0 with 5 bytes of state/],
    ['epoch 1 without state', edit((dv) => dv.setUint32(0, 1, true), base), /epoch 1 with 0 bytes of state/],
    ['the base with a trailing byte', concat([base, new Uint8Array(1)]), /state of 0 bytes in a body with 1 left/],
    ['steps past 2^53', edit((dv) => dv.setBigUint64(8, 2n ** 53n, true)), /steps/],
    ['a body cut in its head', good.slice(0, EPOCH_END_HEAD_BYTES - 1), /truncated/],
    ['an empty body', new Uint8Array(0), /truncated/],
  ];
  for (const [what, bytes, message] of cases) {
    const e = expectCode(() => decodeEpochEnd(bytes, 0, bytes.length), MALFORMED, what);
    assert.match(e.message, message, `${what}: ${e.message}`);
  }
  assert.is(decodeEpochEnd(base, 0, base.length).pages, 4);
});

test('EPOCH_ACK round-trips every epoch; refuses reserved bits, trailing bytes and a cut body', () => {
  const rng = seeded(12);
  for (const epoch of [0, 1, 2 ** 31, 2 ** 32 - 1, ...Array.from({ length: 20 }, () => rng.u32())]) {
    const frame = encodeEpochAck(epoch);
    const h = readFrameHeader(frame, 0, frame.length)!;
    assert.equal([h.type, h.bodyLength, h.checkedLength], [FrameType.EPOCH_ACK, 8, 8]);
    verifyFrame(frame, 0, h);
    assert.is(decodeEpochAck(frame, FRAME_HEADER_BYTES, 8), epoch);
  }
  const good = encodeEpochAck(5).slice(FRAME_HEADER_BYTES);
  const reserved = good.slice();
  reserved[7] = 0x80;
  assert.match(expectCode(() => decodeEpochAck(reserved, 0, 8), MALFORMED, 'reserved').message, /reserved/);
  assert.match(expectCode(() => decodeEpochAck(concat([good, new Uint8Array(1)]), 0, 9), MALFORMED, 'trailing').message, /trailing/);
  assert.match(expectCode(() => decodeEpochAck(good, 0, 7), MALFORMED, 'cut').message, /truncated/);
  assert.match(expectCode(() => decodeEpochAck(good, 0, 0), MALFORMED, 'empty').message, /truncated/);
});

test('HEARTBEAT and GOODBYE are sealed frames with empty bodies; decodeEmpty refuses any byte', () => {
  for (const [frame, type, name] of [[encodeHeartbeat(), FrameType.HEARTBEAT, 'HEARTBEAT'], [encodeGoodbye(), FrameType.GOODBYE, 'GOODBYE']] as const) {
    assert.is(frame.length, FRAME_HEADER_BYTES, name);
    const h = readFrameHeader(frame, 0, frame.length)!;
    assert.equal(headerOf(frame), { bodyLength: 0, type, flags: 0, reserved: 0, checkedLength: 0, crc: refCrc32c(frame.subarray(0, 12)) }, name);
    verifyFrame(frame, 0, h);
    decodeEmpty(name, type, h.bodyLength);
    for (const n of [1, 8, 65536]) {
      const e = expectCode(() => decodeEmpty(name, type, n), MALFORMED, `${name} of ${n} bytes`);
      assert.match(e.message, new RegExp(`${name}: body of ${n} bytes`));
      assert.is((e as unknown as MemshiftError).details.frameType, type);
    }
    // Every bit of the header matters: a flip is refused by the header checks or by the CRC.
    for (let bit = 0; bit < 8 * FRAME_HEADER_BYTES; bit++) {
      const flipped = flipBit(frame, bit);
      let code: string | undefined;
      try {
        const fh = readFrameHeader(flipped, 0, flipped.length);
        if (fh !== null) verifyFrame(flipped, 0, fh);
      } catch (err) {
        code = (err as { code?: string }).code;
      }
      assert.ok(code?.startsWith('MS_ERR_FRAME_'), `${name}, bit ${bit}: ${code ?? 'accepted'}`);
    }
  }
  assert.is.not(encodeHeartbeat()[4], encodeGoodbye()[4]);
});

// ---- fuzz -----------------------------------------------------------------------------------

test('random, cut and bit-flipped bodies make the decoders throw only MemshiftErrors with MS_ERR_ codes; every accepted EPOCH_PAGES is inside its region and adds up', () => {
  const rng = seeded(20261503);
  const small: EpochRegion[] = [{ id: 0, pageSize: 4096, pageCount: 64 }, { id: 1, pageSize: 8192, pageCount: 3 }];
  const mixed = manualBody(3, 0, [[60, delta(5), 1n], [61, raw(4096), 2n], [62, delta(0), 3n], [63, delta(4095), 4n]], undefined, randomBytes(rng, 5 + 4096 + 4095));
  const deltasOnly = manualBody(4, 1, [[0, delta(3), 5n], [2, delta(1), 6n]], undefined, randomBytes(rng, 4));
  const valid: Uint8Array[] = [
    zeroPagesBody(0, 4096, 2, 60),
    zeroPagesBody(1, 8192, 3),
    mixed,
    deltasOnly,
    encodeEpochEnd({ epoch: 2, pages: 5, blocks: 3, steps: 99, state: randomBytes(rng, 40) }).slice(FRAME_HEADER_BYTES),
    encodeEpochEnd({ epoch: 0, pages: 5, blocks: 0, steps: 0, state: new Uint8Array(0) }).slice(FRAME_HEADER_BYTES),
    encodeEpochAck(17).slice(FRAME_HEADER_BYTES),
  ];
  for (const body of valid.slice(0, 4)) {
    const count = new DataView(body.buffer).getUint32(8, true);
    assert.is(decodeEpochPages(body, 0, body.length, checkedOf(count), small).count, count, 'the EPOCH_PAGES seeds are valid');
  }
  let pagesAccepted = 0;
  let checked = 0;
  const decoders: [string, (b: Uint8Array, off: number, len: number) => unknown][] = [
    ['EPOCH_PAGES', (b, off, len) => {
      const m = decodeEpochPages(b, off, len, checked, small);
      const region = small.find((r) => r.id === m.regionId)!;
      assert.ok(m.count >= 1 && m.count <= maxPagesPerEpochFrame(region.pageSize));
      assert.is(checked, checkedOf(m.count));
      assert.is(len, EPOCH_PAGES_HEAD_BYTES + 16 * m.count + m.payloadBytes);
      assert.is(m.entriesOffset, off + EPOCH_PAGES_HEAD_BYTES);
      assert.is(m.payloadOffset + m.payloadBytes, off + len);
      const back = readBack(b, m);
      let total = 0;
      back.pages.forEach((p, i) => {
        assert.ok(p < region.pageCount, `page ${p}`);
        const size = back.sizes[i] & 0xffffff;
        const enc = back.sizes[i] >>> 24;
        assert.ok(enc === RAW ? size === region.pageSize : enc === XBZRLE && size < region.pageSize, `entry ${i}: ${back.sizes[i].toString(16)}`);
        total += size;
      });
      assert.is(total, m.payloadBytes);
      pagesAccepted++;
    }],
    ['EPOCH_END', (b, off, len) => {
      const m = decodeEpochEnd(b, off, len);
      assert.is(EPOCH_END_HEAD_BYTES + m.state.length, len);
      assert.is(m.epoch === 0, m.state.length === 0);
    }],
    ['EPOCH_ACK', (b, off, len) => decodeEpochAck(b, off, len)],
    ['HEARTBEAT', (_b, _off, len) => decodeEmpty('HEARTBEAT', FrameType.HEARTBEAT, len)],
  ];
  let accepted = 0;
  let refused = 0;
  for (let i = 0; i < 12_000; i++) {
    let bytes: Uint8Array;
    const kind = i % 4;
    const from = valid[rng.below(valid.length)];
    if (kind === 0) {
      bytes = randomBytes(rng, rng.below(80));
      for (let k = 0; k < bytes.length; k++) if (rng.chance(0.6)) bytes[k] = rng.below(3);
    } else if (kind === 1) {
      bytes = from.slice(0, rng.below(from.length + 1));
    } else if (kind === 2) {
      bytes = from.slice();
      for (let f = 1 + rng.below(3); f > 0; f--) bytes[rng.below(Math.min(bytes.length, 96))] ^= 1 << rng.below(8);
    } else {
      bytes = concat([from, randomBytes(rng, 1 + rng.below(9))]);
      if (rng.chance(0.5)) bytes = bytes.slice(0, rng.below(bytes.length));
    }
    // Sometimes the body sits inside a larger buffer, and sometimes the length overstates what is there.
    const pad = rng.chance(0.3) ? rng.below(20) : 0;
    const buf = new Uint8Array(pad + bytes.length);
    buf.set(bytes, pad);
    const len = rng.chance(0.05) ? bytes.length + 1 + rng.below(8) : bytes.length;
    // The checkedLength a frame header would give: mostly the one its count asks for, else anything.
    const count = bytes.length >= 12 ? new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true) : rng.below(5);
    checked = rng.chance(0.8) ? checkedOf(count) : rng.chance(0.5) ? checkedOf(count) + rng.below(33) - 16 : rng.below(200);
    for (const [name, decode] of decoders) {
      try {
        decode(buf, pad, len);
        accepted++;
      } catch (err) {
        const what = `input ${i}, ${name}: ${(err as Error).message}`;
        assert.ok(err instanceof MemshiftError, `${what} (${(err as Error).constructor.name})`);
        assert.ok((err as MemshiftError).code.startsWith('MS_ERR_'), what);
        refused++;
      }
    }
  }
  assert.ok(accepted > 1000 && refused > 10_000, `${accepted} accepted, ${refused} refused: the fuzz reaches both outcomes`);
  assert.ok(pagesAccepted > 100, `${pagesAccepted} EPOCH_PAGES bodies accepted`);
});

test.run();
