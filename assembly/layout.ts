// Compile-time sizes shared by the kernels. JS owns the memory layout (src/memory/slab-layout.ts);
// kernels receive every address as an argument and never allocate.

/** Bits per bitmap word: bitmaps are arrays of little-endian u64 words. */
@inline export const WORD_BITS: u32 = 64;
@inline export const WORD_SHIFT: u32 = 6;
/** Bitmap atomics use 32-bit halves so that JS (Atomics on Int32Array) and WASM agree on access size. */
@inline export const HALF_BITS: u32 = 32;
/** Every page size a kernel accepts is a multiple of this (one SIMD block of four v128). */
@inline export const BLOCK_BYTES: usize = 64;

// ---- page-batch entries (the grammar lives in src/protocol/page-batch.ts; test/assembly/batch checks
// that these constants match it) ---------------------------------------------------------------------
//   0 u32 region page index | 4 u32 payload bytes (bits 0..23) + encoding (bits 24..31) | 8 u64 mxh64
@inline export const ENTRY_BYTES: usize = 16;
@inline export const ENCODING_ZERO: u32 = 0;
@inline export const ENCODING_RAW: u32 = 1;
@inline export const ENCODING_XBZRLE: u32 = 2;
@inline export const ENCODING_LZ4: u32 = 3;
@inline export const SIZE_MASK: u32 = 0xffffff;

/** XBZRLE cache tag: a slot being used by another encoder. Other tags are slab page + 1, or 0 = empty. */
@inline export const CACHE_TAG_BUSY: u32 = 0xffffffff;
