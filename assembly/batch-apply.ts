// Applies validated page-batch entries (src/protocol/page-batch.ts checked the structure) to a slab's
// RAM. Content is verified before it is written: a raw payload is hashed in place and an XBZRLE page
// is rebuilt in scratch, and either is copied into RAM only when its mxh64 equals the entry's, so a
// corrupt or mis-based page never reaches guest memory.
//
// Post-copy: with `claim` != 0 a page is written only by whoever first sets its bit in `claim` (the
// bulk receiver and the fault handler may both hold a copy; the second must not overwrite a page the
// resumed guest has since written). After writing, the page's bit in `present` is set and every
// thread waiting on that 32-bit word (a vCPU blocked on a fault) is woken.

import { bitmapSet } from './bitmap';
import { hashPage, recordPageHash, storePageHash } from './hash';
import { ENCODING_LZ4, ENCODING_RAW, ENCODING_XBZRLE, ENCODING_ZERO, ENTRY_BYTES, SIZE_MASK } from './layout';
import { xorDeltaDecode } from './xbzrle';
import { zeroPageHash } from './zero-hash';

export const APPLY_ERR_PAGE_RANGE: i32 = -10;
export const APPLY_ERR_SIZE: i32 = -11;
export const APPLY_ERR_HASH: i32 = -12;
export const APPLY_ERR_ENCODING: i32 = -13;
/** Not an error: the entry is LZ4, which the host decompresses into scratch and applies with applyScratchPage. */
export const APPLY_NEEDS_HOST: i32 = -14;

@inline const R_APPLIED: usize = 0;
@inline const R_DUPLICATES: usize = 4;
@inline const R_STOP_INDEX: usize = 8;
@inline const R_CODE: usize = 12;

@inline function finishPage(
  page: u32, key: u64, hash: u64, hashes: usize, digestPtr: usize, present: usize,
): void {
  recordPageHash(hashes, page, key, hash, digestPtr);
  markPresent(present, page, <u32>1 << (page & 31));
}

/** Sets `bits` in page `page`'s word of `present` and wakes every vCPU waiting on that word. */
@inline function markPresent(present: usize, page: u32, bits: u32): void {
  const ptr = present + ((<usize>page >> 5) << 2);
  atomic.or<u32>(ptr, bits);
  atomic.notify(ptr, 0x7fffffff);
}

/**
 * Applies entries [start, count) whose payloads are packed from `payload`. `payloadOffset` is the
 * payload byte offset of entry `start`. Stops at the first error or LZ4 entry and reports it in
 * `result` (applied, duplicates, stop index, code). Returns the payload offset reached.
 */
export function applyPages(
  ram: usize, pageSize: u32, pageCount: u32, regionPageBase: u32, keyBase: u64,
  entries: usize, start: u32, count: u32, payload: usize, payloadOffset: u32,
  hashes: usize, digestPtr: usize, present: usize, claim: usize, scratch: usize, result: usize,
): u32 {
  const zeroHash = zeroPageHash(pageSize);
  let applied: u32 = 0, duplicates: u32 = 0, code: i32 = 0;
  // The digest change and the present bits are gathered and published once per call and once per
  // present word (32 consecutive pages), not with an atomic per page (see storePageHash). In post-copy
  // a vCPU may be waiting on a page: it sees it at most 31 page copies later, and is woken once per
  // word instead of once per page (it waits on the whole word, so each page of the word arriving
  // alone woke it for nothing: measured, context switches were a tenth of the destination's CPU).
  let digest: u64 = 0, presentWord: u32 = 0xffffffff, presentBits: u32 = 0;
  let off = payloadOffset;
  let i = start;
  for (; i < count; i++) {
    const e = entries + <usize>i * ENTRY_BYTES;
    const regionPage = load<u32>(e);
    const word = load<u32>(e, 4);
    const expect = load<u64>(e, 8);
    const encoding = word >> 24;
    const size = word & SIZE_MASK;
    const page = regionPage - regionPageBase;
    if (regionPage < regionPageBase || page >= pageCount) { code = APPLY_ERR_PAGE_RANGE; break; }
    if (encoding == ENCODING_LZ4) { code = APPLY_NEEDS_HOST; break; }
    const dst = ram + <usize>page * pageSize;
    const src = payload + off;
    if (encoding == ENCODING_ZERO) {
      if (size != 0) { code = APPLY_ERR_SIZE; break; }
      if (expect != zeroHash) { code = APPLY_ERR_HASH; break; }
    } else if (encoding == ENCODING_RAW) {
      if (size != pageSize) { code = APPLY_ERR_SIZE; break; }
      if (hashPage(src, pageSize) != expect) { code = APPLY_ERR_HASH; break; }
    } else if (encoding == ENCODING_XBZRLE) {
      if (size > pageSize) { code = APPLY_ERR_SIZE; break; }
      memory.copy(scratch, dst, pageSize);
      const rc = xorDeltaDecode(src, size, scratch, pageSize);
      if (rc != 0) { code = rc; break; }
      if (hashPage(scratch, pageSize) != expect) { code = APPLY_ERR_HASH; break; }
    } else {
      code = APPLY_ERR_ENCODING; break;
    }
    off += size;
    if (claim != 0 && !bitmapSet(claim, page)) {
      duplicates++;
      continue;
    }
    if (encoding == ENCODING_ZERO) {
      // A page whose recorded hash is the zero hash is still zero (fresh memory starts so): skip the
      // write, which on first touch costs as much as a copy.
      if (load<u64>(hashes + (<usize>page << 3)) != zeroHash) memory.fill(dst, 0, pageSize);
    } else if (encoding == ENCODING_RAW) {
      memory.copy(dst, src, pageSize);
    } else {
      memory.copy(dst, scratch, pageSize);
    }
    digest ^= storePageHash(hashes, page, keyBase + <u64>regionPage, expect);
    if (page >> 5 != presentWord) {
      if (presentBits != 0) markPresent(present, presentWord << 5, presentBits);
      presentWord = page >> 5;
      presentBits = 0;
    }
    presentBits |= <u32>1 << (page & 31);
    applied++;
  }
  if (presentBits != 0) markPresent(present, presentWord << 5, presentBits);
  if (digest != 0) atomic.xor<u64>(digestPtr, digest);
  store<u32>(result + R_APPLIED, applied);
  store<u32>(result + R_DUPLICATES, duplicates);
  store<u32>(result + R_STOP_INDEX, i);
  store<i32>(result + R_CODE, code);
  return off;
}

/**
 * Applies a page the host decoded into `scratch` (LZ4): verifies it, honours `claim`, writes it and
 * records it like applyPages. Returns 1 applied, 0 duplicate, or APPLY_ERR_HASH / APPLY_ERR_PAGE_RANGE.
 */
export function applyScratchPage(
  ram: usize, pageSize: u32, pageCount: u32, regionPageBase: u32, keyBase: u64, regionPage: u32,
  expect: u64, hashes: usize, digestPtr: usize, present: usize, claim: usize, scratch: usize,
): i32 {
  const page = regionPage - regionPageBase;
  if (regionPage < regionPageBase || page >= pageCount) return APPLY_ERR_PAGE_RANGE;
  if (hashPage(scratch, pageSize) != expect) return APPLY_ERR_HASH;
  if (claim != 0 && !bitmapSet(claim, page)) return 0;
  memory.copy(ram + <usize>page * pageSize, scratch, pageSize);
  finishPage(page, keyBase + <u64>regionPage, expect, hashes, digestPtr, present);
  return 1;
}
