// Frame headers (src/protocol/frame.ts): layout, the order of header checks, body limits per type at
// limit and limit+1, the checked length rule, and CRC sealing and verification. Reassembly from a
// stream, bit flips and truncation through FrameReader live in frame-reader.test.ts.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FrameType, Limits } from '../../src/protocol/constants.js';
import {
  encodeFrame, FRAME_HEADER_BYTES, frameCrc, frameTypeName, maxBodyBytes, readFrameHeader, sealFrame, verifyFrame,
} from '../../src/protocol/frame.js';
import { expectCode, headerOf, randomBytes, refCrc32c, sampleFrames } from '../_support/protocol-helpers.js';
import { seeded } from '../_support/seeded.js';

const KNOWN_TYPES = Object.values(FrameType);

/** A bare header (no body) with the given fields; the CRC field is whatever `crc` says. */
function header(fields: { bodyLength: number; type: number; flags?: number; reserved?: number; checkedLength?: number; crc?: number }): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, fields.bodyLength, true);
  dv.setUint8(4, fields.type);
  dv.setUint8(5, fields.flags ?? 0);
  dv.setUint16(6, fields.reserved ?? 0, true);
  dv.setUint32(8, fields.checkedLength ?? fields.bodyLength, true);
  dv.setUint32(12, fields.crc ?? 0, true);
  return out;
}

// ---- layout ---------------------------------------------------------------------------------

test('encodeFrame lays out length, type, zero flags, checked length and the CRC of header[0,12) + body', () => {
  const body = randomBytes(seeded(1), 37);
  const frame = encodeFrame(FrameType.DEVICE_STATE, body);
  assert.is(frame.length, 16 + 37);
  const h = headerOf(frame);
  assert.equal(h, { bodyLength: 37, type: 0x05, flags: 0, reserved: 0, checkedLength: 37, crc: refCrc32c(new Uint8Array([...frame.subarray(0, 12), ...body])) });
  assert.equal([...frame.subarray(16)], [...body]);
});

test('readFrameHeader returns the fields of a sealed header', () => {
  for (const s of sampleFrames(seeded(2))) {
    const raw = headerOf(s.bytes);
    const h = readFrameHeader(s.bytes, 0, s.bytes.length);
    assert.equal(h, { type: s.type, flags: 0, bodyLength: raw.bodyLength, checkedLength: raw.checkedLength, crc: raw.crc }, s.name);
  }
});

test('readFrameHeader reads at an offset inside a larger buffer and a view with a byteOffset', () => {
  const frame = encodeFrame(FrameType.COMPLETE, new Uint8Array(0));
  const big = new Uint8Array(100).fill(0xee);
  big.set(frame, 41);
  assert.is(readFrameHeader(big, 41, 57)?.type, FrameType.COMPLETE);
  const view = big.subarray(40);
  assert.is(readFrameHeader(view, 1, 17)?.crc, headerOf(frame).crc);
  verifyFrame(view, 1, readFrameHeader(view, 1, 17)!);
});

test('readFrameHeader returns null for every length below 16 bytes, whatever the bytes', () => {
  const frame = sampleFrames(seeded(3))[0].bytes;
  const junk = new Uint8Array(16).fill(0xff); // unknown type 0xff, huge length: still "need more" below 16
  for (let n = 0; n < FRAME_HEADER_BYTES; n++) {
    assert.is(readFrameHeader(frame, 0, n), null, `valid header, ${n} bytes`);
    assert.is(readFrameHeader(junk, 0, n), null, `junk header, ${n} bytes`);
    assert.is(readFrameHeader(frame, 5, 5 + n), null, `at offset 5, ${n} bytes`);
  }
});

test('frameTypeName names every known type and shows an unknown one in hex', () => {
  for (const [name, value] of Object.entries(FrameType)) assert.is(frameTypeName(value), name);
  assert.is(frameTypeName(0x20), '0x20');
  assert.is(frameTypeName(0), '0x00');
});

// ---- header checks --------------------------------------------------------------------------

test('rejects every unknown frame type with MS_ERR_FRAME_TYPE_UNKNOWN', () => {
  for (let type = 0; type < 256; type++) {
    if ((KNOWN_TYPES as number[]).includes(type)) continue;
    const e = expectCode(() => readFrameHeader(header({ bodyLength: 0, type }), 0, 16), 'MS_ERR_FRAME_TYPE_UNKNOWN', `type ${type}`);
    assert.ok(e.message.includes(`0x${type.toString(16).padStart(2, '0')}`), e.message);
  }
});

test('checks the type before the length: an unknown type with a huge length is TYPE_UNKNOWN', () => {
  expectCode(() => readFrameHeader(header({ bodyLength: 0xffffffff, type: 0x42 }), 0, 16), 'MS_ERR_FRAME_TYPE_UNKNOWN');
});

test('maxBodyBytes gives each type its limit', () => {
  assert.is(maxBodyBytes(FrameType.PAGE_BATCH), 16 + 4096 * 16 + 16 * 2 ** 20);
  assert.is(maxBodyBytes(FrameType.DEVICE_STATE), 16 * 2 ** 20);
  assert.is(maxBodyBytes(FrameType.MISSING_PAGES), (1 << 20) + 16);
  assert.is(maxBodyBytes(FrameType.BLOCKS), 16 + 64 * (8 + 65536), 'a run of 64 blocks of 64 KiB and their hashes');
  for (const t of [FrameType.HELLO, FrameType.HELLO_ACK, FrameType.ITERATION_END, FrameType.SWITCHOVER, FrameType.RESUMED,
    FrameType.COMPLETE, FrameType.ERROR, FrameType.PAGE_REQUEST, FrameType.POSTCOPY_DONE, FrameType.PAGE_HASHES, FrameType.DISKS]) {
    assert.is(maxBodyBytes(t), 64 * 1024, frameTypeName(t));
  }
});

test('accepts a body length at its type limit and rejects limit+1 with MS_ERR_FRAME_TOO_LARGE', () => {
  for (const type of KNOWN_TYPES) {
    const limit = maxBodyBytes(type);
    const checked = type === FrameType.PAGE_BATCH || type === FrameType.BLOCKS ? 16 : undefined;
    const at = readFrameHeader(header({ bodyLength: limit, type, checkedLength: checked }), 0, 16);
    assert.is(at?.bodyLength, limit, `${frameTypeName(type)} at the limit`);
    const e = expectCode(() => readFrameHeader(header({ bodyLength: limit + 1, type, checkedLength: checked }), 0, 16), 'MS_ERR_FRAME_TOO_LARGE', `${frameTypeName(type)} limit+1`);
    assert.equal([(e as unknown as { details: { limit: number; value: number } }).details.limit, (e as unknown as { details: { value: number } }).details.value], [limit, limit + 1]);
  }
});

test('rejects a length of 2^32-1 for every type with MS_ERR_FRAME_TOO_LARGE (before any allocation)', () => {
  for (const type of KNOWN_TYPES) expectCode(() => readFrameHeader(header({ bodyLength: 0xffffffff, type, checkedLength: 0 }), 0, 16), 'MS_ERR_FRAME_TOO_LARGE', frameTypeName(type));
});

test('rejects a non-zero flags byte or reserved field with MS_ERR_FRAME_MALFORMED', () => {
  for (let bit = 0; bit < 8; bit++) expectCode(() => readFrameHeader(header({ bodyLength: 0, type: FrameType.COMPLETE, flags: 1 << bit }), 0, 16), 'MS_ERR_FRAME_MALFORMED', `flags bit ${bit}`);
  for (let bit = 0; bit < 16; bit++) expectCode(() => readFrameHeader(header({ bodyLength: 0, type: FrameType.COMPLETE, reserved: 1 << bit }), 0, 16), 'MS_ERR_FRAME_MALFORMED', `reserved bit ${bit}`);
});

test('rejects a control frame whose checked length differs from its body length', () => {
  for (const type of KNOWN_TYPES) {
    if (type === FrameType.PAGE_BATCH || type === FrameType.BLOCKS || type === FrameType.EPOCH_PAGES) continue;
    expectCode(() => readFrameHeader(header({ bodyLength: 40, type, checkedLength: 39 }), 0, 16), 'MS_ERR_FRAME_MALFORMED', `${frameTypeName(type)} checks less`);
    expectCode(() => readFrameHeader(header({ bodyLength: 40, type, checkedLength: 41 }), 0, 16), 'MS_ERR_FRAME_MALFORMED', `${frameTypeName(type)} checks more`);
  }
});

test('accepts a PAGE_BATCH, BLOCKS or EPOCH_PAGES that checks part of its body and rejects one that checks more than its body', () => {
  for (const type of [FrameType.PAGE_BATCH, FrameType.BLOCKS, FrameType.EPOCH_PAGES]) {
    assert.is(readFrameHeader(header({ bodyLength: 4128, type, checkedLength: 32 }), 0, 16)?.checkedLength, 32);
    assert.is(readFrameHeader(header({ bodyLength: 32, type, checkedLength: 32 }), 0, 16)?.checkedLength, 32);
    expectCode(() => readFrameHeader(header({ bodyLength: 32, type, checkedLength: 33 }), 0, 16), 'MS_ERR_FRAME_MALFORMED');
  }
});

// ---- CRC --------------------------------------------------------------------------------------

test('verifyFrame accepts every sealed sample frame and rejects a wrong CRC with MS_ERR_FRAME_CHECKSUM', () => {
  for (const s of sampleFrames(seeded(4))) {
    const h = readFrameHeader(s.bytes, 0, s.bytes.length)!;
    verifyFrame(s.bytes, 0, h);
    expectCode(() => verifyFrame(s.bytes, 0, { ...h, crc: (h.crc ^ 1) >>> 0 }), 'MS_ERR_FRAME_CHECKSUM', s.name);
  }
});

test('a PAGE_BATCH CRC covers header and metadata only: changing a payload byte keeps it valid', () => {
  const body = randomBytes(seeded(5), 80);
  const frame = new Uint8Array(16 + 80);
  frame.set(body, 16);
  sealFrame(frame, 0, FrameType.PAGE_BATCH, 80, 32);
  const h = readFrameHeader(frame, 0, frame.length)!;
  frame[16 + 32] ^= 0xff;
  frame[16 + 79] ^= 0x01;
  verifyFrame(frame, 0, h);
  frame[16 + 31] ^= 0x01;
  expectCode(() => verifyFrame(frame, 0, h), 'MS_ERR_FRAME_CHECKSUM', 'last checked byte');
});

test('sealFrame writes the header at an offset and returns the offset after the body', () => {
  const buf = new Uint8Array(200).fill(0xaa);
  buf.fill(0x11, 30 + 16, 30 + 16 + 24);
  const end = sealFrame(buf, 30, FrameType.ITERATION_END, 24);
  assert.is(end, 30 + 16 + 24);
  assert.is(buf[29], 0xaa, 'byte before the header untouched');
  assert.is(buf[end], 0xaa, 'byte after the body untouched');
  const h = readFrameHeader(buf, 30, end)!;
  assert.is(h.crc, frameCrc(buf, 30, buf, 46, 24));
  assert.is(h.crc, refCrc32c(new Uint8Array([...buf.subarray(30, 42), ...buf.subarray(46, 70)])));
});

test('frameCrc of a header and body in separate buffers equals the CRC of the contiguous frame', () => {
  const frame = sampleFrames(seeded(6))[0].bytes;
  const head = frame.slice(0, 16);
  const body = frame.slice(16);
  assert.is(frameCrc(head, 0, body, 0, body.length), headerOf(frame).crc);
});

test('the largest control body (64 KiB) seals and verifies', () => {
  const body = randomBytes(seeded(7), Limits.MAX_CONTROL_BODY_BYTES);
  const frame = encodeFrame(FrameType.HELLO, body);
  const h = readFrameHeader(frame, 0, frame.length)!;
  assert.is(h.bodyLength, 65536);
  verifyFrame(frame, 0, h);
});

test.run();
