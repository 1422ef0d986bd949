// Frame layout. Every message on a channel (after the 12-byte preface, handshake.ts) is one frame:
//
//    0          4      5       6        8                12            16
//   ┌──────────┬──────┬───────┬────────┬────────────────┬─────────────┐
//   │ body len │ type │ flags │ rsvd=0 │ checked length │ crc32c      │ body …
//   └──────────┴──────┴───────┴────────┴────────────────┴─────────────┘
//   u32 LE      u8     u8=0    u16      u32 LE            u32 LE
//
// crc32c covers header bytes [0, 12) and body bytes [0, checked length). Checked length equals body
// length for every type but PAGE_BATCH, BLOCKS and EPOCH_PAGES, whose page payload (after the entries)
// is covered by each entry's 64-bit page hash instead, checked after decoding (page-batch.ts). Limits are checked before
// a body is buffered: a header that announces more than its type allows is rejected at once.

import { ErrorCode, MemshiftError } from '../errors.js';
import { crc32c } from './crc32c.js';
import { FRAME_TYPE_NAMES, FrameType, Limits } from './constants.js';

export const FRAME_HEADER_BYTES = Limits.FRAME_HEADER_BYTES;

export interface FrameHeader {
  readonly type: number;
  readonly flags: number;
  readonly bodyLength: number;
  readonly checkedLength: number;
  readonly crc: number;
}

/** Largest body a frame of `type` may carry. */
export function maxBodyBytes(type: number): number {
  switch (type) {
    case FrameType.PAGE_BATCH:
      return Limits.MAX_FRAME_BODY_BYTES;
    case FrameType.DEVICE_STATE:
      return Limits.MAX_DEVICE_STATE_BYTES;
    case FrameType.MISSING_PAGES:
      return Limits.MAX_MISSING_BITMAP_BYTES + 16;
    case FrameType.BLOCKS:
      return BLOCKS_HEAD_BYTES + Limits.MAX_BLOCKS_PER_FRAME * (8 + Limits.MAX_BLOCK_BYTES);
    case FrameType.EPOCH_PAGES:
      return EPOCH_PAGES_HEAD_BYTES + Limits.MAX_PAGES_PER_EPOCH_FRAME * 16 + Limits.MAX_BATCH_PAYLOAD_BYTES;
    case FrameType.EPOCH_END:
      return EPOCH_END_HEAD_BYTES + Limits.MAX_DEVICE_STATE_BYTES;
    default:
      return Limits.MAX_CONTROL_BODY_BYTES;
  }
}

/** The head of a BLOCKS body before its blocks (blocks.ts). */
export const BLOCKS_HEAD_BYTES = 16;
/** The fixed heads of EPOCH_PAGES and EPOCH_END bodies (replication.ts). */
export const EPOCH_PAGES_HEAD_BYTES = 16;
export const EPOCH_END_HEAD_BYTES = 24;

export function frameTypeName(type: number): string {
  return FRAME_TYPE_NAMES[type] ?? `0x${type.toString(16).padStart(2, '0')}`;
}

/**
 * Reads a header at `offset`; returns null when fewer than 16 bytes are available before `end`.
 * Throws MS_ERR_FRAME_TYPE_UNKNOWN, MS_ERR_FRAME_TOO_LARGE or MS_ERR_FRAME_MALFORMED.
 */
export function readFrameHeader(buf: Uint8Array, offset: number, end: number): FrameHeader | null {
  if (end - offset < FRAME_HEADER_BYTES) return null;
  const dv = new DataView(buf.buffer, buf.byteOffset + offset, FRAME_HEADER_BYTES);
  const bodyLength = dv.getUint32(0, true);
  const type = dv.getUint8(4);
  const flags = dv.getUint8(5);
  const reserved = dv.getUint16(6, true);
  const checkedLength = dv.getUint32(8, true);
  const crc = dv.getUint32(12, true);
  if (FRAME_TYPE_NAMES[type] === undefined) {
    throw new MemshiftError(ErrorCode.FRAME_TYPE_UNKNOWN, `unknown frame type 0x${type.toString(16).padStart(2, '0')}`, { frameType: type });
  }
  const limit = maxBodyBytes(type);
  if (bodyLength > limit) {
    throw new MemshiftError(ErrorCode.FRAME_TOO_LARGE, `${frameTypeName(type)} frame of ${bodyLength} bytes exceeds the limit of ${limit}`, { frameType: type, limit, value: bodyLength });
  }
  if (flags !== 0 || reserved !== 0) {
    throw new MemshiftError(ErrorCode.FRAME_MALFORMED, `${frameTypeName(type)} frame has reserved bits set (flags 0x${flags.toString(16)}, reserved 0x${reserved.toString(16)})`, { frameType: type });
  }
  // Page batches, block runs and epoch pages check their head (and hashes) here; their payload is hashed per page or block.
  const partial = type === FrameType.PAGE_BATCH || type === FrameType.BLOCKS || type === FrameType.EPOCH_PAGES;
  if (checkedLength > bodyLength || (!partial && checkedLength !== bodyLength)) {
    throw new MemshiftError(ErrorCode.FRAME_MALFORMED, `${frameTypeName(type)} frame checks ${checkedLength} of ${bodyLength} body bytes`, { frameType: type, value: checkedLength });
  }
  return { type, flags, bodyLength, checkedLength, crc };
}

/** CRC of a frame whose header starts at `headerOffset` and whose body starts at `bodyOffset` of `body`. */
export function frameCrc(header: Uint8Array, headerOffset: number, body: Uint8Array, bodyOffset: number, checkedLength: number): number {
  const c = crc32c(header, headerOffset, headerOffset + 12);
  return crc32c(body, bodyOffset, bodyOffset + checkedLength, c);
}

/** Throws MS_ERR_FRAME_CHECKSUM unless the frame at `offset` (header then body, contiguous) matches its CRC. */
export function verifyFrame(buf: Uint8Array, offset: number, header: FrameHeader): void {
  const actual = frameCrc(buf, offset, buf, offset + FRAME_HEADER_BYTES, header.checkedLength);
  if (actual !== header.crc) {
    throw new MemshiftError(ErrorCode.FRAME_CHECKSUM, `${frameTypeName(header.type)} frame checksum 0x${header.crc.toString(16)} does not match its bytes (0x${actual.toString(16)})`, { frameType: header.type });
  }
}

/**
 * Writes a header at `offset` for a body that follows it directly in `buf` (already written), and
 * seals it with the CRC. Returns the offset after the body.
 */
export function sealFrame(buf: Uint8Array, offset: number, type: number, bodyLength: number, checkedLength = bodyLength): number {
  const dv = new DataView(buf.buffer, buf.byteOffset + offset, FRAME_HEADER_BYTES);
  dv.setUint32(0, bodyLength, true);
  dv.setUint8(4, type);
  dv.setUint8(5, 0);
  dv.setUint16(6, 0, true);
  dv.setUint32(8, checkedLength, true);
  dv.setUint32(12, frameCrc(buf, offset, buf, offset + FRAME_HEADER_BYTES, checkedLength), true);
  return offset + FRAME_HEADER_BYTES + bodyLength;
}

/** A whole frame (header + copy of `body`), for control messages. */
export function encodeFrame(type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  out.set(body, FRAME_HEADER_BYTES);
  sealFrame(out, 0, type, body.length);
  return out;
}
