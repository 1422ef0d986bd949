// LZ4 page payloads (lz4-wasm: an LZ4 block after a u32 LE uncompressed size). Only pays on links
// slower than the compressor (~0.3 GB/s on text-like pages here), so the source uses it only when
// asked, after the zero test, and keeps the result only when it saves at least an eighth of the page.
// Decoding checks the size prefix before the library allocates anything, and turns the library's
// string errors and traps into MS_ERR_LZ4_MALFORMED. Both ends run on the host thread, not in a
// kernel: the encoder compresses the raw pages of a batch after the encode kernel, and the apply
// kernel stops at an LZ4 entry (APPLY_NEEDS_HOST) for the applier to decode it into scratch.
//
//   entry: page  size=5..pageSize | 3 << 24  hash        payload: u32 LE pageSize ‖ LZ4 block

import lz4 from 'lz4-wasm-nodejs';
import { ErrorCode, MemshiftError } from '../../errors.js';
import { Capability, PageEncoding } from '../constants.js';
import type { EncodingOps } from './index.js';

/** The u32 LE uncompressed size in front of every LZ4 block. */
export const LZ4_PREFIX_BYTES = 4;

/** Compressed payload when it is at most `limit` bytes, else null (send raw). `page` is copied first. */
export function lz4Encode(page: Uint8Array, limit: number): Uint8Array | null {
  const out = lz4.compress(page);
  return out.length <= limit ? out : null;
}

/** Decompresses one page; throws MS_ERR_LZ4_MALFORMED unless it yields exactly `pageSize` bytes. */
export function lz4Decode(payload: Uint8Array, pageSize: number): Uint8Array {
  if (payload.length <= LZ4_PREFIX_BYTES) throw malformedLz4(`payload of ${payload.length} bytes has no block`);
  const declared = payload[0] | (payload[1] << 8) | (payload[2] << 16) | (payload[3] << 24);
  if (declared >>> 0 !== pageSize) throw malformedLz4(`size prefix ${declared >>> 0} is not the page size ${pageSize}`);
  let page: Uint8Array;
  try {
    page = lz4.decompress(payload);
  } catch (cause) {
    throw malformedLz4(typeof cause === 'string' ? cause : (cause as Error)?.message ?? String(cause), cause);
  }
  if (page.length !== pageSize) throw malformedLz4(`decompressed to ${page.length} bytes, expected ${pageSize}`);
  return page;
}

function malformedLz4(why: string, cause?: unknown): MemshiftError {
  return new MemshiftError(ErrorCode.LZ4_MALFORMED, `lz4 page payload: ${why}`, { cause });
}

const sizeError = (size: number, pageSize: number): string | null =>
  (size <= LZ4_PREFIX_BYTES || size > pageSize ? `lz4 payload of ${size} bytes outside (${LZ4_PREFIX_BYTES}, ${pageSize}]` : null);
const keepLimit = (pageSize: number): number => pageSize - pageSize / 8;

export const lz4Ops = {
  id: PageEncoding.LZ4,
  name: 'lz4',
  capability: Capability.LZ4,
  perPage: 'host',
  maxEncodedSize: (pageSize: number) => pageSize,
  sizeError,
  /** Largest payload the encoder keeps; a page that does not compress below it is sent raw. */
  keepLimit,
  /** The payload for one page, or null when it does not save an eighth of the page (send raw). */
  encode: (page: Uint8Array, pageSize: number): Uint8Array | null => {
    const packed = lz4Encode(page, keepLimit(pageSize));
    return packed !== null && sizeError(packed.length, pageSize) === null ? packed : null;
  },
  decode: lz4Decode,
} as const satisfies EncodingOps;
