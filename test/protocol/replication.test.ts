// The replication codecs (src/protocol/replication.ts): EPOCH_PAGES (a partial frame whose CRC covers
// its head, page numbers and hashes, while each hash covers its page), EPOCH_END, EPOCH_ACK, and the
// empty HEARTBEAT and GOODBYE. Round trips keep every field; a bit flipped anywhere the CRC covers is
// caught before a body decodes to other values; every field a peer could lie about is refused with
// MS_ERR_FRAME_MALFORMED; and seeded random or cut bodies never make a decoder throw anything but a
// MemshiftError with an MS_ERR_ code.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemshiftError } from '../../src/errors.js';
import { FrameType, Limits } from '../../src/protocol/constants.js';
import {
  EPOCH_END_HEAD_BYTES, EPOCH_PAGES_HEAD_BYTES, FRAME_HEADER_BYTES, maxBodyBytes, readFrameHeader, verifyFrame,
} from '../../src/protocol/frame.js';
import {
  decodeEmpty, decodeEpochAck, decodeEpochEnd, decodeEpochPages, encodeEpochAck, encodeEpochEnd, encodeEpochPagesHead,
  encodeGoodbye, encodeHeartbeat, epochPagesHeadBytes, maxPagesPerEpochFrame, type EpochEnd, type EpochRegion,
} from '../../src/protocol/replication.js';
import { concat, expectCode, flipBit, headerOf, pageHash, randomBytes, randomSafe, refCrc32c } from '../_support/protocol-helpers.js';
import { distinctBelow, seeded, type Rng } from '../_support/seeded.js';

const MALFORMED = 'MS_ERR_FRAME_MALFORMED';
const REGIONS: EpochRegion[] = [
  { id: 0, pageSize: 4096, pageCount: 5000 },
  { id: 7, pageSize: 65536, pageCount: 300 },
  { id: 0xffff, pageSize: 16384, pageCount: 2 ** 32 - 1 },
];

interface BuiltPages {
  frame: Uint8Array;
  epoch: number;
  regionId: number;
  pageSize: number;
  pages: number[];
  hashes: BigUint64Array;
  data: Uint8Array;
}

/** A whole EPOCH_PAGES frame: the head segment from the encoder followed by `count` random pages. */
function buildPages(rng: Rng, region: EpochRegion, count: number, epoch = rng.u32()): BuiltPages {
  const pages = distinctBelow(rng, Math.min(region.pageCount, 20_000), count);
  const data = randomBytes(rng, count * region.pageSize);
  const hashes = new BigUint64Array(count);
  for (let i = 0; i < count; i++) hashes[i] = pageHash(data.subarray(i * region.pageSize, (i + 1) * region.pageSize));
  const head = encodeEpochPagesHead(epoch, region.id, region.pageSize, pages, hashes);
  return { frame: concat([head, data]), epoch, regionId: region.id, pageSize: region.pageSize, pages, hashes, data };
}

/** What a decoded EPOCH_PAGES says, read back from the buffer at the offsets it gives. */
function readBack(buf: Uint8Array, m: ReturnType<typeof decodeEpochPages>): { epoch: number; regionId: number; pages: number[]; hashes: bigint[]; data: Uint8Array } {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const pages: number[] = [];
  const hashes: bigint[] = [];
  for (let i = 0; i < m.count; i++) {
    pages.push(dv.getUint32(m.pagesOffset + 4 * i, true));
    hashes.push(dv.getBigUint64(m.hashesOffset + 8 * i, true));
  }
  return { epoch: m.epoch, regionId: m.regionId, pages, hashes, data: buf.subarray(m.dataOffset, m.dataOffset + m.count * m.pageSize) };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

// ---- EPOCH_PAGES --------------------------------------------------------------------------------

test('maxPagesPerEpochFrame: 1024 pages up to 16 KiB, 16 MiB of pages above; the largest frame fits the type\'s body limit', () => {
  assert.equal([4096, 8192, 16384, 32768, 65536].map(maxPagesPerEpochFrame), [1024, 1024, 1024, 512, 256]);
  for (const ps of [4096, 8192, 16384, 32768, 65536]) {
    const most = maxPagesPerEpochFrame(ps);
    const body = epochPagesHeadBytes(most) - FRAME_HEADER_BYTES + most * ps;
    assert.ok(body <= maxBodyBytes(FrameType.EPOCH_PAGES), `${most} pages of ${ps}: ${body} > ${maxBodyBytes(FrameType.EPOCH_PAGES)}`);
    assert.ok(most * ps <= Limits.MAX_BATCH_PAYLOAD_BYTES);
  }
  assert.is(epochPagesHeadBytes(1), FRAME_HEADER_BYTES + EPOCH_PAGES_HEAD_BYTES + 12);
  assert.is(epochPagesHeadBytes(1024), 16 + 16 + 12 * 1024);
});

test('EPOCH_PAGES round-trips seeded random runs: head + data is one sealed frame whose CRC covers head, numbers and hashes', () => {
  const rng = seeded(20261501);
  for (let trial = 0; trial < 60; trial++) {
    const region = REGIONS[trial % REGIONS.length];
    const count = trial < 3 ? maxPagesPerEpochFrame(region.pageSize) : 1 + rng.below(trial % 5 === 0 ? 200 : 9);
    const b = buildPages(rng, region, count);
    const what = `trial ${trial} (region ${region.id}, ${count} pages)`;
    const h = readFrameHeader(b.frame, 0, b.frame.length);
    assert.ok(h !== null, what);
    assert.is(h!.type, FrameType.EPOCH_PAGES, what);
    assert.is(h!.bodyLength, b.frame.length - FRAME_HEADER_BYTES, what);
    assert.is(h!.checkedLength, EPOCH_PAGES_HEAD_BYTES + 12 * count, what);
    assert.is(h!.crc, refCrc32c(b.frame.subarray(0, FRAME_HEADER_BYTES + h!.checkedLength).filter((_, i) => i < 12 || i >= 16)), what);
    verifyFrame(b.frame, 0, h!);
    const m = decodeEpochPages(b.frame, FRAME_HEADER_BYTES, h!.bodyLength, REGIONS);
    assert.equal([m.epoch, m.regionId, m.pageSize, m.count], [b.epoch, b.regionId, region.pageSize, count], what);
    // Offsets are absolute in the buffer decoded.
    assert.is(m.pagesOffset, FRAME_HEADER_BYTES + EPOCH_PAGES_HEAD_BYTES, what);
    assert.is(m.hashesOffset, m.pagesOffset + 4 * count, what);
    assert.is(m.dataOffset, m.pagesOffset + 12 * count, what);
    const back = readBack(b.frame, m);
    assert.equal(back.pages, b.pages, what);
    assert.equal(back.hashes, [...b.hashes], what);
    assert.ok(sameBytes(back.data, b.data), what);
    for (let i = 0; i < Math.min(count, 4); i++) assert.is(pageHash(back.data.subarray(i * m.pageSize, (i + 1) * m.pageSize)), back.hashes[i], `${what}: page ${i}`);
  }
});

test('EPOCH_PAGES decodes a body anywhere in a larger buffer, with offsets into that buffer', () => {
  const b = buildPages(seeded(3), REGIONS[0], 5, 42);
  const body = b.frame.subarray(FRAME_HEADER_BYTES);
  const buf = new Uint8Array(1000 + body.length + 77);
  buf.set(body, 1000);
  const m = decodeEpochPages(buf, 1000, body.length, REGIONS);
  assert.equal([m.epoch, m.count, m.pagesOffset, m.hashesOffset, m.dataOffset], [42, 5, 1016, 1036, 1076]);
  assert.equal(readBack(buf, m).pages, b.pages);
});

test('a bit flipped anywhere the EPOCH_PAGES CRC covers is caught; one flipped in a page only by that page\'s hash', () => {
  const rng = seeded(77);
  for (const [region, count] of [[REGIONS[0], 3], [REGIONS[1], 1], [REGIONS[2], 6]] as const) {
    const b = buildPages(rng, region, count, 0x01020304);
    const checked = EPOCH_PAGES_HEAD_BYTES + 12 * count;
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
        let m: ReturnType<typeof decodeEpochPages>;
        try {
          m = decodeEpochPages(bad, FRAME_HEADER_BYTES, Math.min(h!.bodyLength, bad.length - FRAME_HEADER_BYTES), REGIONS);
        } catch (err) {
          assert.is((err as { code?: string }).code, MALFORMED, what);
          continue;
        }
        const back = readBack(bad, m);
        assert.equal([back.epoch, back.regionId, back.pages, back.hashes], [b.epoch, b.regionId, b.pages, [...b.hashes]], `${what}: decoded to other values`);
        assert.unreachable(`${what}: a flipped bit passed the CRC`);
      }
    }
    assert.is(tried, 8 * (12 + checked));
    // A bit flipped in page data: outside the CRC (the frame still verifies), so that page's hash must differ.
    for (let i = 0; i < count; i++) {
      const at = FRAME_HEADER_BYTES + checked + i * region.pageSize + rng.below(region.pageSize);
      const bad = flipBit(b.frame, at * 8 + rng.below(8));
      const h = readFrameHeader(bad, 0, bad.length)!;
      verifyFrame(bad, 0, h);
      const m = decodeEpochPages(bad, FRAME_HEADER_BYTES, h.bodyLength, REGIONS);
      const back = readBack(bad, m);
      assert.is.not(pageHash(back.data.subarray(i * m.pageSize, (i + 1) * m.pageSize)), back.hashes[i], `page ${i}: hash did not see the flip`);
    }
  }
});

test('encodeEpochPagesHead refuses no page, more than a frame carries, and hashes that do not match the pages', () => {
  const h1 = new BigUint64Array(1);
  expectCode(() => encodeEpochPagesHead(1, 0, 4096, [], new BigUint64Array(0)), MALFORMED, 'no page');
  expectCode(() => encodeEpochPagesHead(1, 0, 4096, new Uint32Array(1025), new BigUint64Array(1025)), MALFORMED, '1025 pages of 4 KiB');
  expectCode(() => encodeEpochPagesHead(1, 0, 65536, new Uint32Array(257), new BigUint64Array(257)), MALFORMED, '257 pages of 64 KiB');
  expectCode(() => encodeEpochPagesHead(1, 0, 4096, [1, 2], h1), MALFORMED, '2 pages, 1 hash');
  assert.is(encodeEpochPagesHead(1, 0, 65536, new Uint32Array(256), new BigUint64Array(256)).length, epochPagesHeadBytes(256));
});

/** A valid EPOCH_PAGES body (without its frame header) of `count` zero pages numbered 0..count-1. */
function zeroPagesBody(regionId: number, pageSize: number, count: number, first = 0): Uint8Array {
  const pages = Array.from({ length: count }, (_, i) => first + i);
  const hashes = new BigUint64Array(count).fill(pageHash(new Uint8Array(pageSize)));
  const head = encodeEpochPagesHead(9, regionId, pageSize, pages, hashes);
  return concat([head.subarray(FRAME_HEADER_BYTES), new Uint8Array(count * pageSize)]);
}

test('EPOCH_PAGES refuses an unknown region, a page outside it, a count out of range, a body not exactly its pages, reserved bits', () => {
  const good = zeroPagesBody(0, 4096, 4, 4996);
  const m = decodeEpochPages(good, 0, good.length, REGIONS);
  assert.equal([m.regionId, m.count], [0, 4]);
  const edit = (f: (dv: DataView) => void, from: Uint8Array = good): Uint8Array => {
    const bytes = from.slice();
    f(new DataView(bytes.buffer));
    return bytes;
  };
  const pageAt = (i: number): number => EPOCH_PAGES_HEAD_BYTES + 4 * i;
  const cases: [string, Uint8Array, RegExp][] = [
    ['region 1 (not the guest\'s)', edit((dv) => dv.setUint16(4, 1, true)), /region 1 is not the guest's/],
    ['region 0xfffe', edit((dv) => dv.setUint16(4, 0xfffe, true)), /region 65534/],
    ['page = pageCount', edit((dv) => dv.setUint32(pageAt(3), 5000, true)), /page 5000 outside region 0 of 5000 pages/],
    ['page 2^32 - 1', edit((dv) => dv.setUint32(pageAt(0), 0xffffffff, true)), /page 4294967295 outside/],
    ['count 0', edit((dv) => dv.setUint32(8, 0, true)), /0 pages \(1 to 1024\)/],
    ['count 2^32 - 1', edit((dv) => dv.setUint32(8, 0xffffffff, true)), /4294967295 pages/],
    ['count 3 for a body of 4 pages', edit((dv) => dv.setUint32(8, 3, true)), /bytes for 3 pages of 4096/],
    ['count 5 for a body of 4 pages', edit((dv) => dv.setUint32(8, 5, true)), /bytes for 5 pages of 4096/],
    ['one byte short', good.slice(0, good.length - 1), /bytes for 4 pages/],
    ['one byte over', concat([good, new Uint8Array(1)]), /bytes for 4 pages/],
    ['one page short', good.slice(0, good.length - 4096), /bytes for 4 pages/],
    ['a body of 4 pages read as 64 KiB pages', edit((dv) => dv.setUint16(4, 7, true)), /bytes for 4 pages of 65536/],
    ['reserved u16 after the region', edit((dv) => dv.setUint16(6, 1, true)), /reserved/],
    ['reserved u16, top bit', edit((dv) => dv.setUint16(6, 0x8000, true)), /reserved/],
    ['reserved u32 after the count', edit((dv) => dv.setUint32(12, 1, true)), /reserved/],
    ['reserved u32, top bit', edit((dv) => dv.setUint32(12, 0x80000000, true)), /reserved/],
    ['a body cut in its head', good.slice(0, 10), /truncated/],
    ['an empty body', new Uint8Array(0), /truncated/],
  ];
  for (const [what, bytes, message] of cases) {
    const e = expectCode(() => decodeEpochPages(bytes, 0, bytes.length, REGIONS), MALFORMED, what);
    assert.match(e.message, message, `${what}: ${e.message}`);
  }
  // The last page of a region is inside it; a count at the frame limit is accepted, one above is not.
  decodeEpochPages(good, 0, good.length, [{ id: 0, pageSize: 4096, pageCount: 5000 }]);
  expectCode(() => decodeEpochPages(good, 0, good.length, [{ id: 0, pageSize: 4096, pageCount: 4999 }]), MALFORMED, 'page 4999 of 4999');
  expectCode(() => decodeEpochPages(good, 0, good.length, []), MALFORMED, 'no region at all');
  const most = zeroPagesBody(7, 65536, 256);
  assert.is(decodeEpochPages(most, 0, most.length, REGIONS).count, 256);
  const over = concat([edit((dv) => dv.setUint32(8, 257, true), most), new Uint8Array(12 + 65536)]);
  assert.is(over.length, EPOCH_PAGES_HEAD_BYTES + 257 * (12 + 65536), 'only the count is out of range');
  assert.match(expectCode(() => decodeEpochPages(over, 0, over.length, REGIONS), MALFORMED, '257 pages of 64 KiB').message, /257 pages \(1 to 256\)/);
  const most4k = zeroPagesBody(0, 4096, 1024);
  assert.is(decodeEpochPages(most4k, 0, most4k.length, REGIONS).count, 1024);
  const over4k = concat([edit((dv) => dv.setUint32(8, 1025, true), most4k), new Uint8Array(12 + 4096)]);
  assert.match(expectCode(() => decodeEpochPages(over4k, 0, over4k.length, REGIONS), MALFORMED, '1025 pages of 4 KiB').message, /1025 pages \(1 to 1024\)/);
});

// ---- EPOCH_END, EPOCH_ACK, HEARTBEAT, GOODBYE ---------------------------------------------------

test('EPOCH_END round-trips the base and seeded epochs; its frame is a sealed control frame', () => {
  const rng = seeded(1505);
  const ends: EpochEnd[] = [
    { epoch: 0, pages: 0, steps: 0, state: new Uint8Array(0) },
    { epoch: 0, pages: 0xffffffff, steps: Number.MAX_SAFE_INTEGER, state: new Uint8Array(0) },
    { epoch: 0xffffffff, pages: 1, steps: 2 ** 32 + 1, state: new Uint8Array([1]) },
  ];
  for (let i = 0; i < 40; i++) {
    ends.push({ epoch: 1 + rng.below(2 ** 32 - 1), pages: rng.u32(), steps: randomSafe(rng), state: randomBytes(rng, 1 + rng.below(i % 8 === 0 ? 70_000 : 300)) });
  }
  for (const [i, m] of ends.entries()) {
    const frame = encodeEpochEnd(m);
    const h = readFrameHeader(frame, 0, frame.length)!;
    assert.is(h.type, FrameType.EPOCH_END, `end ${i}`);
    assert.is(h.bodyLength, EPOCH_END_HEAD_BYTES + m.state.length, `end ${i}`);
    assert.is(h.checkedLength, h.bodyLength, `end ${i}`);
    verifyFrame(frame, 0, h);
    const back = decodeEpochEnd(frame, FRAME_HEADER_BYTES, h.bodyLength);
    assert.equal([back.epoch, back.pages, back.steps], [m.epoch, m.pages, m.steps], `end ${i}`);
    assert.ok(sameBytes(back.state, m.state), `end ${i}: state`);
    // The state is a copy: the receive buffer may be reused.
    if (m.state.length > 0) {
      frame[FRAME_HEADER_BYTES + EPOCH_END_HEAD_BYTES] ^= 0xff;
      assert.is(back.state[0], m.state[0], `end ${i}: state is a copy`);
    }
  }
});

test('encodeEpochEnd refuses a state larger than a device state may be', () => {
  expectCode(() => encodeEpochEnd({ epoch: 1, pages: 0, steps: 0, state: new Uint8Array(Limits.MAX_DEVICE_STATE_BYTES + 1) }), MALFORMED);
});

test('EPOCH_END refuses a state length that is not the rest of the body, state on the base, none on an epoch, reserved bits', () => {
  const body = (m: EpochEnd): Uint8Array => encodeEpochEnd(m).slice(FRAME_HEADER_BYTES);
  const good = body({ epoch: 3, pages: 10, steps: 12345, state: new Uint8Array([1, 2, 3, 4, 5]) });
  assert.is(decodeEpochEnd(good, 0, good.length).steps, 12345);
  const edit = (f: (dv: DataView) => void, from: Uint8Array = good): Uint8Array => {
    const bytes = from.slice();
    f(new DataView(bytes.buffer));
    return bytes;
  };
  const base = body({ epoch: 0, pages: 4, steps: 0, state: new Uint8Array(0) });
  const cases: [string, Uint8Array, RegExp][] = [
    ['stateLength 4 of 5', edit((dv) => dv.setUint32(16, 4, true)), /state of 4 bytes in a body with 5 left/],
    ['stateLength 6 of 5', edit((dv) => dv.setUint32(16, 6, true)), /state of 6 bytes in a body with 5 left/],
    ['stateLength 2^32 - 1', edit((dv) => dv.setUint32(16, 0xffffffff, true)), /state of 4294967295 bytes/],
    ['a trailing byte', concat([good, new Uint8Array(1)]), /state of 5 bytes in a body with 6 left/],
    ['one state byte short', good.slice(0, good.length - 1), /state of 5 bytes in a body with 4 left/],
    ['epoch 0 with state', edit((dv) => dv.setUint32(0, 0, true)), /epoch 0 with 5 bytes of state/],
    ['epoch 1 without state', edit((dv) => dv.setUint32(0, 1, true), base), /epoch 1 with 0 bytes of state/],
    ['the base with a trailing byte', concat([base, new Uint8Array(1)]), /state of 0 bytes in a body with 1 left/],
    ['reserved', edit((dv) => dv.setUint32(20, 1, true)), /reserved/],
    ['reserved, top bit', edit((dv) => dv.setUint32(20, 0x80000000, true)), /reserved/],
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

test('random, cut and bit-flipped bodies make the decoders throw only MemshiftErrors with MS_ERR_ codes; every accepted EPOCH_PAGES is inside its region', () => {
  const rng = seeded(20261503);
  const small: EpochRegion[] = [{ id: 0, pageSize: 4096, pageCount: 64 }, { id: 1, pageSize: 8192, pageCount: 3 }];
  const valid: Uint8Array[] = [
    zeroPagesBody(0, 4096, 2, 60),
    zeroPagesBody(1, 8192, 3),
    encodeEpochEnd({ epoch: 2, pages: 5, steps: 99, state: randomBytes(rng, 40) }).slice(FRAME_HEADER_BYTES),
    encodeEpochEnd({ epoch: 0, pages: 5, steps: 0, state: new Uint8Array(0) }).slice(FRAME_HEADER_BYTES),
    encodeEpochAck(17).slice(FRAME_HEADER_BYTES),
  ];
  const decoders: [string, (b: Uint8Array, off: number, len: number) => unknown][] = [
    ['EPOCH_PAGES', (b, off, len) => {
      const m = decodeEpochPages(b, off, len, small);
      const region = small.find((r) => r.id === m.regionId)!;
      assert.ok(m.count >= 1 && m.count <= maxPagesPerEpochFrame(region.pageSize));
      assert.is(len, EPOCH_PAGES_HEAD_BYTES + m.count * (12 + region.pageSize));
      assert.is(m.dataOffset + m.count * m.pageSize, off + len);
      for (const p of readBack(b, m).pages) assert.ok(p < region.pageCount, `page ${p}`);
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
      for (let f = 1 + rng.below(3); f > 0; f--) bytes[rng.below(Math.min(bytes.length, 64))] ^= 1 << rng.below(8);
    } else {
      bytes = concat([from, randomBytes(rng, 1 + rng.below(9))]);
      if (rng.chance(0.5)) bytes = bytes.slice(0, rng.below(bytes.length));
    }
    // Sometimes the body sits inside a larger buffer, and sometimes the length overstates what is there.
    const pad = rng.chance(0.3) ? rng.below(20) : 0;
    const buf = new Uint8Array(pad + bytes.length);
    buf.set(bytes, pad);
    const len = rng.chance(0.05) ? bytes.length + 1 + rng.below(8) : bytes.length;
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
});

test.run();
