// A slab: one shared WebAssembly.Memory holding a run of a region's pages plus their bookkeeping.
// The descriptor is plain data plus the memory, so it crosses to worker threads by postMessage;
// each thread then binds its own kernel instance to the memory with `kernelsOf`.

import { ErrorCode, MemshiftError } from '../errors.js';
import { Kernels } from '../wasm/kernels.js';
import { viewsOf, type MemoryViews } from '../wasm/views.js';
import { CONTROL_DIGEST, computeSlabLayout, scratchSlot, type SlabLayout, type SlabLayoutOptions } from './slab-layout.js';
import { ScratchAgent } from './scratch-agents.js';
import { WASM_PAGE_BYTES } from '../wasm/kernels.js';

export interface Slab {
  readonly regionId: number;
  /** Position of this slab within its region. */
  readonly index: number;
  /** Region page index of the slab's first page. */
  readonly firstPage: number;
  readonly pageCount: number;
  readonly memory: WebAssembly.Memory;
  readonly layout: SlabLayout;
  /** File-backed: the file and the byte offset of the slab's first page in it (the pages are there, not in `memory`). */
  readonly file: SlabFile | null;
}

export interface SlabFile {
  readonly path: string;
  readonly offset: number;
}

export function allocateSlab(regionId: number, index: number, firstPage: number, pageSize: number, pageCount: number, options: SlabLayoutOptions, file: SlabFile | null = null): Slab {
  const layout = computeSlabLayout(pageSize, pageCount, options);
  const pages = layout.totalBytes / WASM_PAGE_BYTES;
  let memory: WebAssembly.Memory;
  try {
    memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  } catch (cause) {
    throw new MemshiftError(ErrorCode.MEMORY_ALLOCATION, `cannot allocate a ${layout.totalBytes}-byte slab: ${(cause as Error).message}`, { cause });
  }
  const slab: Slab = { regionId, index, firstPage, pageCount, memory, layout, file };
  // Nothing has been sent or received: every page's recorded hash is that of a zero page. A file's
  // pages are not known to be zero: they start as "unknown" (a value no page hashes to, but by a 2^-64
  // chance), with the digest kept consistent, so that a recovery never takes a page it lost on the way
  // for a zero page the file does not hold (file-pages.ts learnZeroPages marks the zero ones).
  const k = kernelsOf(slab);
  const zero = k.raw.zeroPageHash(pageSize);
  k.raw.fillU64(layout.hashes, pageCount, file === null ? zero : BigInt.asUintN(64, zero ^ UNKNOWN_PAGE));
  if (file !== null) {
    const digest = BigInt.asUintN(64, k.raw.digestOfHashes(layout.hashes, pageCount, (BigInt(regionId) << 32n) + BigInt(firstPage), zero));
    viewsOfSlab(slab).dv.setBigUint64(layout.control + CONTROL_DIGEST, digest, true);
  }
  return slab;
}

/**
 * Forgets what an earlier session sent from (or received into) this slab, as a new session's source
 * must: its destination holds nothing yet, so every page's recorded hash is a zero page's again, the
 * digest nothing, and the XBZRLE cache empty (a delta against a page the new destination never got
 * would not decode there). Without it a guest that had arrived by migration recorded its arrival's
 * hashes, and a post-copy switchover onwards, before any page went, carried their digest. A file's
 * slab keeps what was learnt of its pages (file-pages.ts): its first pass sends every page.
 */
export function forgetSentPages(slab: Slab): void {
  if (slab.file !== null) return;
  const k = kernelsOf(slab).raw;
  const L = slab.layout;
  k.fillU64(L.hashes, slab.pageCount, k.zeroPageHash(L.pageSize));
  const views = viewsOfSlab(slab);
  views.dv.setBigUint64(L.control + CONTROL_DIGEST, 0n, true);
  views.u32.fill(0, L.cacheTags >>> 2, (L.cacheTags >>> 2) + L.cacheSlots);
}

/** XORed into the zero page's hash: a file-backed page's recorded hash before it is known. */
const UNKNOWN_PAGE = 0x9e3779b97f4a7c15n;

const kernelCache = new WeakMap<WebAssembly.Memory, Kernels>();

/** This thread's kernel instance for the slab's memory. */
export function kernelsOf(slab: Slab): Kernels {
  let k = kernelCache.get(slab.memory);
  if (k === undefined) {
    k = new Kernels(slab.memory);
    kernelCache.set(slab.memory, k);
  }
  return k;
}

export function viewsOfSlab(slab: Slab): MemoryViews {
  return viewsOf(slab.memory);
}

/** Byte offset of local page `local` in the slab's memory (a slab that holds its pages). */
export function pageOffset(slab: Slab, local: number): number {
  if (slab.file !== null) throw new MemshiftError(ErrorCode.INVALID_ARGUMENT, `region ${slab.regionId}'s pages live in ${slab.file.path}, not in its slabs`, { regionId: slab.regionId });
  return slab.layout.ram + local * slab.layout.pageSize;
}

/**
 * The session digest of a guest: XOR of every slab's accumulator (see assembly/hash.ts), i.e. of what
 * was last sent (source) or applied (destination) for each page.
 */
export function sessionDigest(view: { regions: readonly { id: number }[]; slabsOf(regionId: number): readonly Slab[] }): bigint {
  let d = 0n;
  for (const r of view.regions) for (const s of view.slabsOf(r.id)) d ^= slabDigest(s);
  return d;
}

/** The slab's digest accumulator (XOR of page contributions). */
export function slabDigest(slab: Slab): bigint {
  const { dv } = viewsOfSlab(slab);
  return dv.getBigUint64(slab.layout.control + CONTROL_DIGEST, true);
}

/**
 * Hashes every page of `slab` (of region `regionId`) as memory holds it now, a run at a time into the
 * tools' scratch slot (ScratchAgent.TOOLS: only while no encoder pool runs), and gives each run to
 * `visit`: its first slab-local page, its hashes (a view valid until the next run) and its share of the
 * session digest. What a content digest, a save's hash table and a restore's check all need.
 */
export function hashSlabPages(slab: Slab, regionId: number, visit: (first: number, hashes: BigUint64Array, digest: bigint) => void): void {
  const k = kernelsOf(slab).raw;
  const L = slab.layout;
  const out = scratchSlot(L, ScratchAgent.TOOLS).page;
  const run = Math.floor((2 * L.pageSize) / 8);
  const zero = k.zeroPageHash(L.pageSize);
  for (let first = 0; first < slab.pageCount; first += run) {
    const n = Math.min(run, slab.pageCount - first);
    k.hashPages(pageOffset(slab, first), L.pageSize, n, out);
    const digest = BigInt.asUintN(64, k.digestOfHashes(out, n, (BigInt(regionId) << 32n) + BigInt(slab.firstPage + first), zero));
    visit(first, new BigUint64Array(slab.memory.buffer, out, n), digest);
  }
}
