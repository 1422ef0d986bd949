// The export surface of the memshift kernels. Every export takes addresses in the imported shared
// memory, never allocates and never throws; src/wasm/kernels.ts is the only module that loads it.

export { bitmapSet, bitmapClear, bitmapTest, bitmapCount, bitmapNextSet, bitmapSyncAndClear, bitmapMerge, bitmapAndNot, bitmapFill, bitmapZero } from './bitmap';
export { isZeroPage, scanZeroPages } from './zero-page';
export { hashPage, copyAndHash, hashPages, recordPageHash, fillU64, digestOfHashes } from './hash';
export { zeroPageHash } from './zero-hash';
export { crc32c } from './crc32c';
export { markChangedPages } from './hash-scan';
export {
  xorDeltaEncode, xorDeltaDecode, xorDeltaValidate,
  XBZRLE_OVERFLOW, XBZRLE_ERR_TRUNCATED, XBZRLE_ERR_OVERRUN, XBZRLE_ERR_VARINT, XBZRLE_ERR_EMPTY_RUN,
} from './xbzrle';
export { encodePages } from './batch-encode';
export {
  applyPages, applyScratchPage,
  APPLY_ERR_PAGE_RANGE, APPLY_ERR_SIZE, APPLY_ERR_HASH, APPLY_ERR_ENCODING, APPLY_NEEDS_HOST,
} from './batch-apply';
export { fillGuestPages } from './guest-fill';
import { ENTRY_BYTES } from './layout';

/** Bit 0: built with SIMD. Bit 1: built with threads (always). */
export function features(): u32 {
  return (ASC_FEATURE_SIMD ? 1 : 0) | (ASC_FEATURE_THREADS ? 2 : 0);
}

/** The page-batch entry size this build writes (checked against the TS codec at load time). */
export function entryBytes(): u32 {
  return <u32>ENTRY_BYTES;
}
