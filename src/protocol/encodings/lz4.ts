// LZ4 page payloads (lz4-wasm: an LZ4 block after a u32 LE uncompressed size). Only pays on links
// slower than the compressor (~0.3 GB/s on text-like pages here), so the source uses it only when
// asked, after the zero test, and keeps the result only when it saves at least an eighth of the page.
// Decoding checks the size prefix before the library allocates anything, and turns the library's
// string errors and traps into MS_ERR_LZ4_MALFORMED.

import lz4 from 'lz4-wasm-nodejs';
import { ErrorCode, MemshiftError } from '../../errors.js';
import { LZ4_PREFIX_BYTES } from '../page-batch.js';

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
