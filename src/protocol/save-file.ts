// The layout of a saved guest (`memshift save`): pure encode/decode of its header and trailer, and the
// offsets everything else sits at. Every page has a fixed offset (as QEMU's mapped-ram), so a writer
// can put a page wherever and whenever it is dirty, pages never written stay holes of a sparse file,
// and a reader can fetch any page (or many at once) without reading what precedes it.
//
//   0        header: magic, version, flags, regions (id, kind, page size, page count, data and hash offsets), crc32c
//   4096     region 0's pages: page p at dataOffset + p × pageSize          (holes where never written)
//   …        region 1's pages …
//   …        hash table: one u64 mxh64 per page of each region, in region order
//   …        device state (the vCPU state the source saved)
//   end-32   trailer: magic, digest of every page (the session digest), pages written, crc32c
//
// A truncated file misses its trailer; a page or hash that does not match fails the digest or its own
// hash. Every field is checked on decode before any offset computed from it is used.

import { ErrorCode, MemshiftError } from '../errors.js';
import { isValidPageSize } from '../memory/slab-layout.js';
import type { RegionKind } from '../memory/types.js';
import { Limits } from './constants.js';
import { crc32c } from './crc32c.js';

export const SAVE_MAGIC = 'MSHSAVE\0';
export const SAVE_TRAILER_MAGIC = 'MSHEND\0\0';
export const SAVE_VERSION = 1;
/** The header's room: the fixed part, one entry per region and the crc, padded so the pages start page-aligned. */
export const SAVE_HEADER_BYTES = 4096;
export const SAVE_TRAILER_BYTES = 32;
const FIXED_BYTES = 48;
const REGION_BYTES = 32;
/** Regions a header has room for. */
export const MAX_SAVED_REGIONS = Math.min(Limits.MAX_REGIONS, Math.floor((SAVE_HEADER_BYTES - FIXED_BYTES - 4) / REGION_BYTES));
/** Every region's pages start at a multiple of this (the largest page size). */
const DATA_ALIGN = 65536;

/** Header flags. */
export const SaveFlag = { LIVE: 1 } as const;

export interface SavedRegion {
  id: number;
  name: string;
  kind: RegionKind;
  pageSize: number;
  pageCount: number;
  /** Byte offset of page 0 in the file. */
  dataOffset: number;
  /** Byte offset of the region's first hash in the file. */
  hashOffset: number;
}

export interface SaveLayout {
  version: number;
  flags: number;
  regions: SavedRegion[];
  stateOffset: number;
  stateBytes: number;
  trailerOffset: number;
  /** The whole file's size. */
  fileBytes: number;
}

export interface SaveTrailer {
  digest: bigint;
  pagesWritten: number;
}

function invalid(message: string, details: { field?: string; value?: unknown; offset?: number } = {}): MemshiftError {
  return new MemshiftError(ErrorCode.SAVE_FILE_INVALID, message, details);
}

/** Where everything of a guest with `regions` and `stateBytes` of device state goes. */
export function planSaveLayout(regions: readonly { id: number; name: string; kind: RegionKind; pageSize: number; pageCount: number }[], stateBytes: number, flags = 0): SaveLayout {
  if (regions.length === 0 || regions.length > MAX_SAVED_REGIONS) throw invalid(`a save file holds 1 to ${MAX_SAVED_REGIONS} regions (got ${regions.length})`, { field: 'regions', value: regions.length });
  let at = SAVE_HEADER_BYTES;
  const placed: SavedRegion[] = regions.map((r) => {
    at = Math.ceil(at / DATA_ALIGN) * DATA_ALIGN;
    const dataOffset = at;
    at += r.pageCount * r.pageSize;
    return { id: r.id, name: r.name, kind: r.kind, pageSize: r.pageSize, pageCount: r.pageCount, dataOffset, hashOffset: 0 };
  });
  for (const r of placed) {
    r.hashOffset = at;
    at += 8 * r.pageCount;
  }
  const stateOffset = at;
  const trailerOffset = stateOffset + stateBytes;
  return { version: SAVE_VERSION, flags, regions: placed, stateOffset, stateBytes, trailerOffset, fileBytes: trailerOffset + SAVE_TRAILER_BYTES };
}

/**
 *   0 magic (8) │ 8 version u32 │ 12 flags u32 │ 16 region count u32 │ 20 state bytes u32
 *   24 state offset u64 │ 32 trailer offset u64 │ 40 reserved (8)
 *   48 + 32 i: id u16, kind u8, reserved u8, page size u32, page count u32, reserved u32, data offset u64, hash offset u64
 *   then the crc32c of everything before it; names are not kept (regions are matched by id and shape).
 */
export function encodeSaveHeader(layout: SaveLayout): Uint8Array {
  const out = new Uint8Array(SAVE_HEADER_BYTES);
  const dv = new DataView(out.buffer);
  out.set(Buffer.from(SAVE_MAGIC, 'latin1'), 0);
  dv.setUint32(8, layout.version, true);
  dv.setUint32(12, layout.flags, true);
  dv.setUint32(16, layout.regions.length, true);
  dv.setUint32(20, layout.stateBytes, true);
  dv.setBigUint64(24, BigInt(layout.stateOffset), true);
  dv.setBigUint64(32, BigInt(layout.trailerOffset), true);
  layout.regions.forEach((r, i) => {
    const at = FIXED_BYTES + i * REGION_BYTES;
    dv.setUint16(at, r.id, true);
    dv.setUint8(at + 2, r.kind === 'ram' ? 0 : 1);
    dv.setUint32(at + 4, r.pageSize, true);
    dv.setUint32(at + 8, r.pageCount, true);
    dv.setBigUint64(at + 16, BigInt(r.dataOffset), true);
    dv.setBigUint64(at + 24, BigInt(r.hashOffset), true);
  });
  const end = FIXED_BYTES + layout.regions.length * REGION_BYTES;
  dv.setUint32(end, crc32c(out, 0, end), true);
  return out;
}

/** Reads a header and checks it against a file of `fileBytes` (MS_ERR_SAVE_FILE_INVALID, or _TRUNCATED). */
export function decodeSaveHeader(bytes: Uint8Array, fileBytes: number): SaveLayout {
  if (bytes.length < FIXED_BYTES || Buffer.from(bytes.subarray(0, 8)).toString('latin1') !== SAVE_MAGIC) {
    throw invalid('not a memshift save file (no MSHSAVE magic at its start)', { offset: 0 });
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== SAVE_VERSION) throw invalid(`save file version ${version}; this build reads version ${SAVE_VERSION}`, { field: 'version', value: version });
  const flags = dv.getUint32(12, true);
  if ((flags & ~SaveFlag.LIVE) !== 0) throw invalid(`save file has flags 0x${flags.toString(16)} this build does not know`, { field: 'flags', value: flags });
  const count = dv.getUint32(16, true);
  if (count === 0 || count > MAX_SAVED_REGIONS) throw invalid(`save file names ${count} regions (1 to ${MAX_SAVED_REGIONS})`, { field: 'regions', value: count });
  const end = FIXED_BYTES + count * REGION_BYTES;
  if (bytes.length < end + 4) throw invalid('save file header is cut short', { offset: bytes.length });
  if (crc32c(bytes, 0, end) !== dv.getUint32(end, true)) throw invalid('save file header fails its checksum (corrupt)', { offset: end });
  const stateBytes = dv.getUint32(20, true);
  if (stateBytes > Limits.MAX_DEVICE_STATE_BYTES) throw invalid(`device state of ${stateBytes} bytes exceeds ${Limits.MAX_DEVICE_STATE_BYTES}`, { field: 'stateBytes', value: stateBytes });
  const regions: SavedRegion[] = [];
  const ids = new Set<number>();
  for (let i = 0; i < count; i++) {
    const at = FIXED_BYTES + i * REGION_BYTES;
    const id = dv.getUint16(at, true);
    const kindByte = dv.getUint8(at + 2);
    const pageSize = dv.getUint32(at + 4, true);
    const pageCount = dv.getUint32(at + 8, true);
    if (ids.has(id)) throw invalid(`save file names region ${id} twice`, { field: 'regionId', value: id });
    ids.add(id);
    if (kindByte > 1) throw invalid(`region ${id} has unknown kind ${kindByte}`, { field: 'kind', value: kindByte });
    if (!isValidPageSize(pageSize)) throw invalid(`region ${id} has page size ${pageSize}`, { field: 'pageSize', value: pageSize });
    if (pageCount === 0) throw invalid(`region ${id} has no pages`, { field: 'pageCount', value: pageCount });
    regions.push({ id, name: kindByte === 0 ? `ram${i}` : `disk${i}`, kind: kindByte === 0 ? 'ram' : 'disk', pageSize, pageCount, dataOffset: 0, hashOffset: 0 });
  }
  // Offsets are not trusted: the layout is recomputed from the shapes and must match what the file says.
  const expected = planSaveLayout(regions, stateBytes, flags);
  regions.forEach((r, i) => {
    const at = FIXED_BYTES + i * REGION_BYTES;
    const data = Number(dv.getBigUint64(at + 16, true));
    const hash = Number(dv.getBigUint64(at + 24, true));
    if (data !== expected.regions[i].dataOffset || hash !== expected.regions[i].hashOffset) {
      throw invalid(`region ${r.id}'s offsets (${data}, ${hash}) are not where its shape puts them`, { field: 'regions', value: r.id });
    }
  });
  if (Number(dv.getBigUint64(24, true)) !== expected.stateOffset || Number(dv.getBigUint64(32, true)) !== expected.trailerOffset) {
    throw invalid('save file state or trailer offset is not where the regions put it', { field: 'trailerOffset' });
  }
  if (fileBytes < expected.fileBytes) {
    throw new MemshiftError(ErrorCode.SAVE_FILE_TRUNCATED, `save file holds ${fileBytes} bytes of the ${expected.fileBytes} its header describes (truncated)`, { value: fileBytes, limit: expected.fileBytes });
  }
  return expected;
}

/** 0 magic (8) │ 8 digest u64 │ 16 pages written u64 │ 24 crc32c of [0, 24) │ 28 reserved. */
export function encodeSaveTrailer(t: SaveTrailer): Uint8Array {
  const out = new Uint8Array(SAVE_TRAILER_BYTES);
  const dv = new DataView(out.buffer);
  out.set(Buffer.from(SAVE_TRAILER_MAGIC, 'latin1'), 0);
  dv.setBigUint64(8, t.digest, true);
  dv.setBigUint64(16, BigInt(t.pagesWritten), true);
  dv.setUint32(24, crc32c(out, 0, 24), true);
  return out;
}

/** A trailer that is missing (a save that never finished) is MS_ERR_SAVE_FILE_TRUNCATED; a damaged one, _CORRUPT. */
export function decodeSaveTrailer(bytes: Uint8Array): SaveTrailer {
  if (bytes.length < SAVE_TRAILER_BYTES || Buffer.from(bytes.subarray(0, 8)).toString('latin1') !== SAVE_TRAILER_MAGIC) {
    throw new MemshiftError(ErrorCode.SAVE_FILE_TRUNCATED, 'save file has no trailer: the save did not finish (or the file was cut)');
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (crc32c(bytes, 0, 24) !== dv.getUint32(24, true)) throw new MemshiftError(ErrorCode.SAVE_FILE_CORRUPT, 'save file trailer fails its checksum');
  return { digest: dv.getBigUint64(8, true), pagesWritten: Number(dv.getBigUint64(16, true)) };
}
