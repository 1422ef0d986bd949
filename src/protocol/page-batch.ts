// PAGE_BATCH: pages of one region, each with its encoding, payload size and content hash.
//
//   body    := region:u16 reserved:u16(0) count:u32 payloadBytes:u32 iteration:u32 entry{count} payload
//   entry   := page:u32  sizeAndEncoding:u32  hash:u64          (16 bytes)
//              sizeAndEncoding = payload bytes (bits 0..23) | encoding << 24
//   payload := the entries' payloads, concatenated in entry order
//
//   encoding  size                      payload
//   0 zero    0                         —
//   1 raw     page size                 the page
//   2 xbzrle  0 .. page size            delta against the page's previous content (assembly/xbzrle.ts)
//   3 lz4     5 .. page size            u32 LE uncompressed size (= page size), then an LZ4 block
//
// `hash` is mxh64 of the page *after* decoding, so it checks the payload, the decoder and (for
// xbzrle) that both sides agreed on the previous content. The frame CRC covers only the metadata
// (header + entries: checked length = 16 + 16·count). Rules the decoder enforces: 1 ≤ count ≤
// MAX_PAGES_PER_BATCH; pages strictly increasing and inside the region; sizes as in the table (each
// encoding's rule and negotiation bit come from its ops, encodings/index.ts); the sizes add up to
// payloadBytes ≤ MAX_BATCH_PAYLOAD_BYTES; body length = 16 + 16·count + payloadBytes.
//
// On the source the encode kernel (assembly/batch-encode.ts) writes entries and payload into a chunk
// laid out as below; `sealBatch` adds the headers. The wire frame is the head segment followed by the
// payload segment (two writes, no copy).
//
//   chunk: [frame header 16][batch header 16][entries: maxEntries × 16][payload …]
//           └──────── head segment: 32 + 16·count ────────┘            └ payload segment ┘

import { ErrorCode, MemshiftError } from '../errors.js';
import { malformed } from './codec-util.js';
import { FrameType, Limits } from './constants.js';
import { encodingName, encodingOf } from './encodings/index.js';
import { FRAME_HEADER_BYTES, frameCrc } from './frame.js';

export { LZ4_PREFIX_BYTES } from './encodings/lz4.js';
export const BATCH_HEADER_BYTES = 16;
export const ENTRY_BYTES = 16;
const SIZE_MASK = 0xffffff;

/** What the decoder needs to know about a region. */
export interface BatchRegion {
  readonly pageSize: number;
  readonly pageCount: number;
}

/** A validated batch inside a receive buffer; offsets are absolute in `buf`. */
export interface BatchView {
  readonly buf: Uint8Array;
  /** Entries per encoding (index = PageEncoding value). */
  readonly encodings: readonly [number, number, number, number];
  readonly regionId: number;
  readonly iteration: number;
  readonly count: number;
  readonly entriesOffset: number;
  readonly payloadOffset: number;
  readonly payloadBytes: number;
  readonly pageSize: number;
}

export interface BatchEntry {
  page: number;
  encoding: number;
  size: number;
  hash: bigint;
}

/** Bytes a chunk needs for `maxEntries` entries plus `payloadBytes` of payload. */
export function chunkBytes(maxEntries: number, payloadBytes: number): number {
  return FRAME_HEADER_BYTES + BATCH_HEADER_BYTES + maxEntries * ENTRY_BYTES + payloadBytes;
}

export function chunkEntriesOffset(chunk: number): number {
  return chunk + FRAME_HEADER_BYTES + BATCH_HEADER_BYTES;
}

export function chunkPayloadOffset(chunk: number, maxEntries: number): number {
  return chunkEntriesOffset(chunk) + maxEntries * ENTRY_BYTES;
}

/**
 * Writes the batch and frame headers of a chunk whose entries and payload are in place, and returns
 * the two wire segments as [offset, length] pairs in `buf`.
 */
export function sealBatch(
  buf: Uint8Array, chunk: number, regionId: number, iteration: number, count: number, payloadBytes: number, maxEntries: number,
): { head: [number, number]; payload: [number, number] } {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const b = chunk + FRAME_HEADER_BYTES;
  dv.setUint16(b, regionId, true);
  dv.setUint16(b + 2, 0, true);
  dv.setUint32(b + 4, count, true);
  dv.setUint32(b + 8, payloadBytes, true);
  dv.setUint32(b + 12, iteration, true);
  const checked = BATCH_HEADER_BYTES + count * ENTRY_BYTES;
  dv.setUint32(chunk, checked + payloadBytes, true);
  dv.setUint8(chunk + 4, FrameType.PAGE_BATCH);
  dv.setUint8(chunk + 5, 0);
  dv.setUint16(chunk + 6, 0, true);
  dv.setUint32(chunk + 8, checked, true);
  dv.setUint32(chunk + 12, frameCrc(buf, chunk, buf, b, checked), true);
  return { head: [chunk, FRAME_HEADER_BYTES + checked], payload: [chunkPayloadOffset(chunk, maxEntries), payloadBytes] };
}

/** A whole PAGE_BATCH frame built in JS (tests, single-page answers): entries with their payloads. */
export function encodeBatchFrame(regionId: number, iteration: number, pages: ReadonlyArray<BatchEntry & { payload: Uint8Array }>): Uint8Array {
  const payloadBytes = pages.reduce((n, p) => n + p.payload.length, 0);
  const maxEntries = pages.length;
  const out = new Uint8Array(chunkBytes(maxEntries, payloadBytes));
  const dv = new DataView(out.buffer);
  let e = chunkEntriesOffset(0);
  let p = chunkPayloadOffset(0, maxEntries);
  for (const page of pages) {
    dv.setUint32(e, page.page, true);
    dv.setUint32(e + 4, (page.size & SIZE_MASK) | (page.encoding << 24), true);
    dv.setBigUint64(e + 8, page.hash, true);
    out.set(page.payload, p);
    e += ENTRY_BYTES;
    p += page.payload.length;
  }
  sealBatch(out, 0, regionId, iteration, pages.length, payloadBytes, maxEntries);
  return out;
}

function bad(code: 'range' | 'encoding' | 'malformed', message: string, details: { regionId?: number; page?: number } = {}): MemshiftError {
  const c = code === 'range' ? ErrorCode.BATCH_PAGE_RANGE : code === 'encoding' ? ErrorCode.BATCH_ENCODING : ErrorCode.FRAME_MALFORMED;
  return new MemshiftError(c, `PAGE_BATCH: ${message}`, { frameType: FrameType.PAGE_BATCH, ...details });
}

/**
 * Validates a batch body (header, every entry, the payload total) before anything is applied.
 * `regionOf` returns undefined for a region the session does not have; `capabilities` are the
 * negotiated ones (xbzrle and lz4 entries are rejected unless negotiated).
 */
export function decodeBatch(
  buf: Uint8Array, bodyOffset: number, bodyLength: number, checkedLength: number,
  regionOf: (id: number) => BatchRegion | undefined, capabilities: number,
): BatchView {
  if (bodyOffset < 0 || bodyOffset + bodyLength > buf.length) throw malformed(`PAGE_BATCH: body of ${bodyLength} bytes at ${bodyOffset} runs past its ${buf.length}-byte buffer`, FrameType.PAGE_BATCH);
  if (bodyLength < BATCH_HEADER_BYTES) throw malformed(`PAGE_BATCH: body of ${bodyLength} bytes is shorter than its header`, FrameType.PAGE_BATCH);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const regionId = dv.getUint16(bodyOffset, true);
  const reserved = dv.getUint16(bodyOffset + 2, true);
  const count = dv.getUint32(bodyOffset + 4, true);
  const payloadBytes = dv.getUint32(bodyOffset + 8, true);
  const iteration = dv.getUint32(bodyOffset + 12, true);
  if (reserved !== 0) throw bad('malformed', `reserved field is 0x${reserved.toString(16)}`);
  if (count < 1 || count > Limits.MAX_PAGES_PER_BATCH) throw bad('malformed', `entry count ${count} outside [1, ${Limits.MAX_PAGES_PER_BATCH}]`);
  if (payloadBytes > Limits.MAX_BATCH_PAYLOAD_BYTES) throw bad('malformed', `payload of ${payloadBytes} bytes exceeds ${Limits.MAX_BATCH_PAYLOAD_BYTES}`);
  const metadata = BATCH_HEADER_BYTES + count * ENTRY_BYTES;
  if (checkedLength !== metadata) throw bad('malformed', `checked length ${checkedLength} must cover exactly the header and ${count} entries (${metadata})`);
  if (bodyLength !== metadata + payloadBytes) throw bad('malformed', `body of ${bodyLength} bytes does not equal header + entries + payload (${metadata + payloadBytes})`);
  const region = regionOf(regionId);
  if (region === undefined) {
    throw new MemshiftError(ErrorCode.BATCH_REGION_UNKNOWN, `PAGE_BATCH: region ${regionId} is not part of this session`, { frameType: FrameType.PAGE_BATCH, regionId });
  }
  const { pageSize, pageCount } = region;
  const entriesOffset = bodyOffset + BATCH_HEADER_BYTES;
  let total = 0;
  let previous = -1;
  const encodings: [number, number, number, number] = [0, 0, 0, 0];
  for (let i = 0; i < count; i++) {
    const e = entriesOffset + i * ENTRY_BYTES;
    const page = dv.getUint32(e, true);
    const word = dv.getUint32(e + 4, true);
    const encoding = word >>> 24;
    const size = word & SIZE_MASK;
    if (page >= pageCount) throw bad('range', `entry ${i}: page ${page} outside region ${regionId} (${pageCount} pages)`, { regionId, page });
    if (page <= previous) throw bad('malformed', `entry ${i}: page ${page} does not follow page ${previous} (pages must increase)`, { regionId, page });
    previous = page;
    const ops = encodingOf(encoding);
    if (ops === undefined) throw bad('encoding', `entry ${i}: unknown encoding ${encodingName(encoding)}`, { regionId, page });
    if (ops.capability !== 0 && (capabilities & ops.capability) === 0) throw bad('encoding', `entry ${i}: ${ops.name} was not negotiated`, { regionId, page });
    const wrongSize = ops.sizeError(size, pageSize);
    if (wrongSize !== null) throw bad('encoding', `entry ${i}: ${wrongSize}`, { regionId, page });
    total += size;
    encodings[encoding]++;
  }
  if (total !== payloadBytes) throw bad('malformed', `entry sizes add up to ${total}, header says ${payloadBytes}`);
  return { buf, encodings, regionId, iteration, count, entriesOffset, payloadOffset: entriesOffset + count * ENTRY_BYTES, payloadBytes, pageSize };
}

/** Entry `i` of a validated batch. */
export function batchEntry(view: BatchView, i: number): BatchEntry {
  const dv = new DataView(view.buf.buffer, view.buf.byteOffset, view.buf.byteLength);
  const e = view.entriesOffset + i * ENTRY_BYTES;
  const word = dv.getUint32(e + 4, true);
  return { page: dv.getUint32(e, true), encoding: word >>> 24, size: word & SIZE_MASK, hash: dv.getBigUint64(e + 8, true) };
}
