// The one module that loads the WASM kernels (assembly/ → build/*.wasm). It picks the SIMD build when
// the engine validates it and the scalar build otherwise, instantiates one kernel set per shared memory
// (a slab of guest RAM, or an I/O arena), and types the exports.
//
// Two faces: `raw` is for hot paths whose layout was validated once (pipeline, apply): it does not
// check arguments, but every call still turns a trap into MS_ERR_WASM_TRAP naming the kernel (a
// try/catch around one call per batch or per page costs nothing measurable). The methods of `Kernels`
// check every address, length and index and throw MS_ERR_INVALID_ARGUMENT naming the argument, so a
// bad call never reaches the kernel as a trap.

import { readFileSync } from 'node:fs';
import { ErrorCode, MemshiftError, invalidArgument } from '../errors.js';
import { compileWasmEagerly } from '../import-eagerly.js';

/** The exports of assembly/index.ts, as JS sees them (i64 ↔ bigint, pointers are byte offsets). */
export interface KernelExports {
  features(): number;
  entryBytes(): number;
  bitmapSet(map: number, bit: number): number;
  bitmapClear(map: number, bit: number): number;
  bitmapTest(map: number, bit: number): number;
  bitmapCount(map: number, words: number): number;
  bitmapNextSet(map: number, bits: number, from: number): number;
  bitmapSyncAndClear(dirty: number, snapshot: number, words: number): number;
  bitmapMerge(target: number, source: number, words: number): number;
  bitmapAndNot(target: number, mask: number, words: number): number;
  bitmapFill(map: number, bits: number): void;
  bitmapZero(map: number, words: number): void;
  isZeroPage(ptr: number, len: number): number;
  scanZeroPages(ptr: number, pageSize: number, count: number, outMap: number): number;
  hashPage(ptr: number, len: number): bigint;
  copyAndHash(dst: number, src: number, len: number): bigint;
  hashPages(ptr: number, pageSize: number, count: number, out: number): void;
  recordPageHash(hashes: number, page: number, key: bigint, hash: bigint, digestPtr: number): bigint;
  fillU64(ptr: number, count: number, value: bigint): void;
  digestOfHashes(hashes: number, count: number, keyBase: bigint, zeroHash: bigint): bigint;
  zeroPageHash(pageSize: number): bigint;
  crc32c(ptr: number, len: number, crc: number): number;
  markChangedPages(pages: number, pageSize: number, count: number, first: number, hashes: number, dirty: number): number;
  xorDeltaEncode(prev: number, cur: number, len: number, out: number, limit: number): number;
  xorDeltaDecode(delta: number, deltaLen: number, page: number, len: number): number;
  xorDeltaValidate(delta: number, deltaLen: number, len: number): number;
  encodePages(
    ram: number, pageSize: number, snapshot: number, from: number, to: number,
    regionPageBase: number, keyBase: bigint, hashes: number, digestPtr: number,
    entries: number, maxEntries: number, payload: number, payloadLimit: number,
    cache: number, cacheTags: number, cacheSlots: number, cacheReadOnly: number, scratch: number, deltaLimit: number,
    result: number,
  ): number;
  applyPages(
    ram: number, pageSize: number, pageCount: number, regionPageBase: number, keyBase: bigint,
    entries: number, start: number, count: number, payload: number, payloadOffset: number,
    hashes: number, digestPtr: number, present: number, claim: number, scratch: number, result: number,
  ): number;
  applyScratchPage(
    ram: number, pageSize: number, pageCount: number, regionPageBase: number, keyBase: bigint, regionPage: number,
    expect: bigint, hashes: number, digestPtr: number, present: number, claim: number, scratch: number,
  ): number;
  fillGuestPages(ptr: number, pageSize: number, count: number, firstPage: number, seed: bigint, fill: number, dirty: number): number;
}

/** Result codes of the delta and apply kernels (mirrors assembly/xbzrle.ts and assembly/batch-apply.ts). */
export const KernelCode = {
  XBZRLE_OVERFLOW: -1,
  XBZRLE_ERR_TRUNCATED: -1,
  XBZRLE_ERR_OVERRUN: -2,
  XBZRLE_ERR_VARINT: -3,
  XBZRLE_ERR_EMPTY_RUN: -4,
  APPLY_ERR_PAGE_RANGE: -10,
  APPLY_ERR_SIZE: -11,
  APPLY_ERR_HASH: -12,
  APPLY_ERR_ENCODING: -13,
  APPLY_NEEDS_HOST: -14,
} as const;

export type KernelVariant = 'simd' | 'scalar' | 'debug';

const FILES: Record<KernelVariant, string> = {
  simd: 'memshift-simd.wasm',
  scalar: 'memshift.wasm',
  debug: 'memshift-debug.wasm',
};

// dist/src/wasm/kernels.js → <package>/build/
const BUILD_DIR = new URL('../../../build/', import.meta.url);
const modules = new Map<KernelVariant, WebAssembly.Module>();

function moduleFor(variant: KernelVariant): WebAssembly.Module {
  let mod = modules.get(variant);
  if (mod === undefined) {
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = new Uint8Array(readFileSync(new URL(FILES[variant], BUILD_DIR)));
    } catch (cause) {
      throw new MemshiftError(ErrorCode.WASM_UNAVAILABLE, `kernel build ${FILES[variant]} not found (run npm run build)`, { cause });
    }
    if (!WebAssembly.validate(bytes)) {
      throw new MemshiftError(ErrorCode.WASM_UNAVAILABLE, `this engine cannot run the ${variant} kernels`);
    }
    // Every kernel compiled now, not on its first call (which a switchover's would pay in its downtime).
    mod = compileWasmEagerly(bytes);
    modules.set(variant, mod);
  }
  return mod;
}


let preferred: KernelVariant | undefined;

/** SIMD when the engine validates the SIMD build, else scalar; MEMSHIFT_KERNELS=simd|scalar|debug overrides. */
export function preferredVariant(): KernelVariant {
  if (preferred !== undefined) return preferred;
  const forced = process.env.MEMSHIFT_KERNELS;
  if (forced === 'simd' || forced === 'scalar' || forced === 'debug') {
    preferred = forced;
    return forced;
  }
  try {
    moduleFor('simd');
    preferred = 'simd';
  } catch {
    preferred = 'scalar';
  }
  return preferred;
}

/** The WASM page (64 KiB) count of a memory; exported for layout code. */
export const WASM_PAGE_BYTES = 65536;

/** Byte offset below which kernels may keep their own statics; JS layouts start above it. */
export const KERNEL_RESERVED_BYTES = 65536;

/** The page-batch entry size; must equal ENTRY_BYTES in src/protocol/page-batch.ts. */
export const KERNEL_ENTRY_BYTES = 16;

/** mxh64 hashes 128-byte blocks (assembly/hash.ts): hashed lengths are multiples of it. */
export const HASH_BLOCK_BYTES = 128;

function trap(name: string, cause: unknown): MemshiftError {
  return new MemshiftError(ErrorCode.WASM_TRAP, `kernel ${name} trapped: ${(cause as Error).message}`, { cause });
}

/** The exports with each function wrapped so that a trap surfaces as MS_ERR_WASM_TRAP. */
function guardTraps(exports: KernelExports): KernelExports {
  const guarded: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(exports)) {
    if (typeof value !== 'function') {
      guarded[name] = value;
      continue;
    }
    const fn = value as (...args: unknown[]) => unknown;
    guarded[name] = (...args: unknown[]): unknown => {
      try {
        return fn(...args);
      } catch (cause) {
        if (cause instanceof WebAssembly.RuntimeError) throw trap(name, cause);
        throw cause;
      }
    };
  }
  return guarded as unknown as KernelExports;
}

/** The kernels of each memory instantiated in this thread, by its buffer (a view's `buffer`). */
const byBuffer = new WeakMap<ArrayBufferLike, KernelExports>();

/** The kernels whose memory `buffer` is, if this thread instantiated them. */
export function kernelsHolding(buffer: ArrayBufferLike): KernelExports | undefined {
  return byBuffer.get(buffer);
}

/** A thread's own small kernel memory for checksums over bytes that lie outside kernel memory. */
export interface ScratchKernels {
  raw: KernelExports;
  u8: Uint8Array;
  /** Where the scratch bytes start, and how many there are. */
  at: number;
  room: number;
}

let scratch: ScratchKernels | null = null;

/**
 * This thread's scratch kernels: made with its first kernels of any memory, so that the first long
 * checksum of a migration (at a switchover, say) does not pay for an instance.
 */
export function scratchKernels(): ScratchKernels {
  if (scratch === null) {
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 2, shared: true });
    const k = new Kernels(memory);
    scratch = { raw: k.raw, u8: new Uint8Array(memory.buffer), at: KERNEL_RESERVED_BYTES, room: WASM_PAGE_BYTES };
  }
  return scratch;
}

/** Kernels bound to one memory. */
export class Kernels {
  readonly raw: KernelExports;
  readonly memory: WebAssembly.Memory;
  readonly variant: KernelVariant;

  constructor(memory: WebAssembly.Memory, variant: KernelVariant = preferredVariant()) {
    this.memory = memory;
    this.variant = variant;
    let instance: WebAssembly.Instance;
    try {
      instance = new WebAssembly.Instance(moduleFor(variant), { env: { memory } });
    } catch (cause) {
      if (cause instanceof MemshiftError) throw cause;
      throw new MemshiftError(ErrorCode.WASM_UNAVAILABLE, `cannot instantiate ${variant} kernels: ${(cause as Error).message}`, { cause });
    }
    this.raw = guardTraps(instance.exports as unknown as KernelExports);
    if (this.raw.entryBytes() !== KERNEL_ENTRY_BYTES) {
      throw new MemshiftError(ErrorCode.WASM_UNAVAILABLE, `kernel entry size ${this.raw.entryBytes()} does not match the codec (${KERNEL_ENTRY_BYTES})`);
    }
    byBuffer.set(memory.buffer, this.raw);
    if (scratch === null && memory.buffer.byteLength > 2 * WASM_PAGE_BYTES) scratchKernels();
  }

  get simd(): boolean {
    return (this.raw.features() & 1) !== 0;
  }

  get byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  // ---- argument checks ----------------------------------------------------------------------

  /** Checks that [ptr, ptr+len) lies in memory (and above the kernels' reserved bytes). */
  checkRange(name: string, ptr: number, len: number, align = 1): void {
    if (!Number.isSafeInteger(ptr) || ptr < KERNEL_RESERVED_BYTES || ptr % align !== 0) {
      throw invalidArgument(name, `must be an offset ≥ ${KERNEL_RESERVED_BYTES} aligned to ${align}`, ptr);
    }
    if (!Number.isSafeInteger(len) || len < 0 || ptr + len > this.byteLength) {
      throw invalidArgument(name, `range [${ptr}, ${ptr}+${len}) must lie inside the ${this.byteLength}-byte memory`, len);
    }
  }

  private checkPageLength(name: string, len: number, multiple = 64): void {
    if (!Number.isSafeInteger(len) || len <= 0 || len % multiple !== 0 || len > 1 << 24) {
      throw invalidArgument(name, `must be a positive multiple of ${multiple} bytes, at most 16 MiB`, len);
    }
  }

  /** XBZRLE run lengths are at most 21 bits wide: deltas are for pages up to 64 KiB. */
  private checkDeltaPage(len: number): void {
    if (!Number.isInteger(len) || len <= 0 || len % 64 !== 0 || len > 65536) {
      throw invalidArgument('len', 'must be a page size: a positive multiple of 64 bytes, at most 64 KiB', len);
    }
  }

  private checkBit(name: string, bit: number, bits: number): void {
    if (!Number.isInteger(bit) || bit < 0 || bit >= bits) {
      throw invalidArgument(name, `must be an integer in [0, ${bits})`, bit);
    }
  }

  private checkBitmap(name: string, map: number, bits: number): number {
    // Bit indices come back as i32 (-1 = none), so a map holds fewer than 2^31 bits.
    if (!Number.isInteger(bits) || bits < 0 || bits > 0x7fffffff) {
      throw invalidArgument(`${name} bits`, 'must be an integer in [0, 2^31)', bits);
    }
    const words = Math.ceil(bits / 64);
    this.checkRange(name, map, words * 8, 8);
    return words;
  }

  // ---- checked wrappers -----------------------------------------------------------------------

  bitmapSet(map: number, bits: number, bit: number): boolean {
    this.checkBitmap('map', map, bits);
    this.checkBit('bit', bit, bits);
    return this.raw.bitmapSet(map, bit) === 1;
  }

  bitmapClear(map: number, bits: number, bit: number): boolean {
    this.checkBitmap('map', map, bits);
    this.checkBit('bit', bit, bits);
    return this.raw.bitmapClear(map, bit) === 1;
  }

  bitmapTest(map: number, bits: number, bit: number): boolean {
    this.checkBitmap('map', map, bits);
    this.checkBit('bit', bit, bits);
    return this.raw.bitmapTest(map, bit) === 1;
  }

  bitmapCount(map: number, bits: number): number {
    return this.raw.bitmapCount(map, this.checkBitmap('map', map, bits)) >>> 0;
  }

  /** First set bit at or after `from`, or -1. */
  bitmapNextSet(map: number, bits: number, from: number): number {
    this.checkBitmap('map', map, bits);
    if (!Number.isInteger(from) || from < 0) throw invalidArgument('from', 'must be a non-negative integer', from);
    if (from >= bits) return -1;
    return this.raw.bitmapNextSet(map, bits, from);
  }

  bitmapSyncAndClear(dirty: number, snapshot: number, bits: number): number {
    const words = this.checkBitmap('dirty', dirty, bits);
    this.checkBitmap('snapshot', snapshot, bits);
    if (Math.abs(dirty - snapshot) < words * 8) throw invalidArgument('snapshot', 'must not overlap dirty', snapshot);
    return this.raw.bitmapSyncAndClear(dirty, snapshot, words) >>> 0;
  }

  bitmapMerge(target: number, source: number, bits: number): number {
    const words = this.checkBitmap('target', target, bits);
    this.checkBitmap('source', source, bits);
    if (bits % 64 !== 0) throw invalidArgument('bits', 'must be a multiple of 64 for merge (whole words)', bits);
    return this.raw.bitmapMerge(target, source, words) >>> 0;
  }

  /** Clears in `target` the bits set in `mask` (whole words, not atomic); returns how many `mask` has. */
  bitmapAndNot(target: number, mask: number, bits: number): number {
    const words = this.checkBitmap('target', target, bits);
    this.checkBitmap('mask', mask, bits);
    if (bits % 64 !== 0) throw invalidArgument('bits', 'must be a multiple of 64 (whole words)', bits);
    return this.raw.bitmapAndNot(target, mask, words) >>> 0;
  }

  bitmapFill(map: number, bits: number): void {
    this.checkBitmap('map', map, bits);
    this.raw.bitmapFill(map, bits);
  }

  bitmapZero(map: number, bits: number): void {
    this.raw.bitmapZero(map, this.checkBitmap('map', map, bits));
  }

  isZeroPage(ptr: number, len: number): boolean {
    this.checkPageLength('len', len);
    this.checkRange('ptr', ptr, len);
    return this.raw.isZeroPage(ptr, len) === 1;
  }

  scanZeroPages(ptr: number, pageSize: number, count: number, outMap: number): number {
    this.checkPageLength('pageSize', pageSize);
    if (!Number.isInteger(count) || count < 0 || count > 0x7fffffff) throw invalidArgument('count', 'must be an integer in [0, 2^31)', count);
    this.checkRange('ptr', ptr, pageSize * count);
    this.checkBitmap('outMap', outMap, count);
    return this.raw.scanZeroPages(ptr, pageSize, count, outMap) >>> 0;
  }

  hashPage(ptr: number, len: number): bigint {
    this.checkPageLength('len', len, HASH_BLOCK_BYTES);
    this.checkRange('ptr', ptr, len);
    return BigInt.asUintN(64, this.raw.hashPage(ptr, len));
  }

  copyAndHash(dst: number, src: number, len: number): bigint {
    this.checkPageLength('len', len, HASH_BLOCK_BYTES);
    this.checkRange('src', src, len);
    this.checkRange('dst', dst, len);
    if (dst < src + len && src < dst + len) throw invalidArgument('dst', 'must not overlap src', dst);
    return BigInt.asUintN(64, this.raw.copyAndHash(dst, src, len));
  }

  zeroPageHash(pageSize: number): bigint {
    this.checkPageLength('pageSize', pageSize, HASH_BLOCK_BYTES);
    return BigInt.asUintN(64, this.raw.zeroPageHash(pageSize));
  }

  /** Delta length, or -1 (KernelCode.XBZRLE_OVERFLOW) when it would exceed `limit`. */
  xorDeltaEncode(prev: number, cur: number, len: number, out: number, limit: number): number {
    this.checkDeltaPage(len);
    this.checkRange('prev', prev, len);
    this.checkRange('cur', cur, len);
    if (!Number.isInteger(limit) || limit < 0) throw invalidArgument('limit', 'must be a non-negative integer', limit);
    this.checkRange('out', out, limit);
    return this.raw.xorDeltaEncode(prev, cur, len, out, limit);
  }

  /** 0, or a negative XBZRLE_ERR_* code (the page is then untouched). */
  xorDeltaDecode(delta: number, deltaLen: number, page: number, len: number): number {
    this.checkDeltaPage(len);
    this.checkRange('page', page, len);
    this.checkRange('delta', delta, deltaLen);
    return this.raw.xorDeltaDecode(delta, deltaLen, page, len);
  }
}
