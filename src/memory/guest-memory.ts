// A guest's regions laid out over slabs. Used by both hosts: the source guest's RAM, the destination's
// receiving RAM, and the reference replay. Page access by (region, page) for integrators, tools and
// tests (read a page, mark it dirty, dump regions to a file); the data path works on slabs directly.

import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { ErrorCode, MemshiftError, invalidArgument } from '../errors.js';
import { allocateSlab, hashSlabPages, pageOffset, sessionDigest, viewsOfSlab, type Slab } from './slab.js';
import { closeRegionFiles, learnZeroPages } from './file-pages.js';
import { ScratchAgent } from './scratch-agents.js';
import { MAX_MEMORY_BYTES, MIN_PAGE_SIZE, isValidPageSize } from './slab-layout.js';
import type { GuestMemoryView, Region, RegionFile, RegionKind } from './types.js';

export interface RegionSpec {
  id: number;
  name: string;
  kind: RegionKind;
  pageSize: number;
  pageCount: number;
  /** The pages live in this file (types.ts): the slabs keep their bookkeeping and a window per thread. */
  file?: RegionFile;
}

export interface GuestMemoryOptions {
  /** Most RAM bytes in one slab (a multiple of 64 pages). Default 3 GiB; tests use small slabs. */
  maxSlabBytes?: number;
  /** Frame arena bytes per slab. */
  arenaBytes?: number;
  /** XBZRLE cache bytes for the whole guest (split over slabs by size); 0 disables the cache. */
  cacheBytes?: number;
}

export const DEFAULT_MAX_SLAB_BYTES = 3 * 2 ** 30;
export const DEFAULT_ARENA_BYTES = 32 * 2 ** 20;
/** A slab holds at least one 64-page bitmap word of the smallest pages (regions of larger pages need more). */
export const MIN_SLAB_BYTES = 64 * MIN_PAGE_SIZE;
/** Room for a slab's bookkeeping (bitmaps, hashes, scratch, arena, cache) below the 4 GiB of a wasm32 memory. */
export const MAX_SLAB_BYTES = MAX_MEMORY_BYTES - (1 << 28);
/** Bytes of a file-backed slab's window per thread: what one encode or apply task reads or writes at most. */
const FILE_WINDOW_BYTES = 2 * 2 ** 20;

export class GuestMemory implements GuestMemoryView {
  readonly regions: readonly Region[];
  private readonly slabs: Map<number, readonly Slab[]>;

  private constructor(regions: readonly Region[], slabs: Map<number, readonly Slab[]>) {
    this.regions = regions;
    this.slabs = slabs;
  }

  /** Checks options before anything is allocated (a tool can call it up front); errors name the option. */
  static checkOptions(options: GuestMemoryOptions): void {
    const { maxSlabBytes, arenaBytes, cacheBytes } = options;
    if (maxSlabBytes !== undefined && (!Number.isSafeInteger(maxSlabBytes) || maxSlabBytes < MIN_SLAB_BYTES || maxSlabBytes > MAX_SLAB_BYTES)) {
      throw invalidArgument('maxSlabBytes', `must be from ${MIN_SLAB_BYTES} (64 pages of 4 KiB) to ${MAX_SLAB_BYTES} bytes (room for bookkeeping below 4 GiB)`, maxSlabBytes);
    }
    if (arenaBytes !== undefined && (!Number.isSafeInteger(arenaBytes) || arenaBytes < 0)) throw invalidArgument('arenaBytes', 'must be a non-negative integer', arenaBytes);
    if (cacheBytes !== undefined && (!Number.isSafeInteger(cacheBytes) || cacheBytes < 0)) throw invalidArgument('cacheBytes', 'must be a non-negative integer', cacheBytes);
  }

  static allocate(specs: readonly RegionSpec[], options: GuestMemoryOptions = {}): GuestMemory {
    GuestMemory.checkOptions(options);
    const maxSlabBytes = options.maxSlabBytes ?? DEFAULT_MAX_SLAB_BYTES;
    const arenaBytes = options.arenaBytes ?? DEFAULT_ARENA_BYTES;
    const cacheBytes = options.cacheBytes ?? 0;
    if (specs.length === 0) throw invalidArgument('regions', 'must name at least one region');
    const seen = new Set<number>();
    const slabs = new Map<number, readonly Slab[]>();
    const totalBytes = specs.reduce((n, r) => n + r.pageCount * r.pageSize, 0);
    for (const spec of specs) {
      if (!Number.isInteger(spec.id) || spec.id < 0 || spec.id > 0xffff) throw invalidArgument('region.id', 'must be an integer in [0, 65535]', spec.id);
      if (seen.has(spec.id)) throw invalidArgument('region.id', 'must be unique', spec.id);
      seen.add(spec.id);
      if (!isValidPageSize(spec.pageSize)) throw invalidArgument('region.pageSize', 'must be a power of two between 4 KiB and 64 KiB', spec.pageSize);
      if (!Number.isInteger(spec.pageCount) || spec.pageCount <= 0 || spec.pageCount > 0xffffffff) {
        throw invalidArgument('region.pageCount', 'must be an integer in [1, 2^32)', spec.pageCount);
      }
      if (spec.file !== undefined && (typeof spec.file.path !== 'string' || spec.file.path === '' || !Number.isSafeInteger(spec.file.offset) || spec.file.offset < 0)) {
        throw invalidArgument('region.file', 'must name a file path and a non-negative byte offset', spec.file);
      }
      const slabPages = Math.floor(maxSlabBytes / spec.pageSize / 64) * 64;
      if (slabPages <= 0) throw invalidArgument('maxSlabBytes', `must hold at least 64 pages of ${spec.pageSize} B (region ${spec.id})`, maxSlabBytes);
      const list: Slab[] = [];
      for (let first = 0, index = 0; first < spec.pageCount; first += slabPages, index++) {
        const count = Math.min(slabPages, spec.pageCount - first);
        const share = (count * spec.pageSize) / totalBytes;
        if (spec.file !== undefined) {
          // No XBZRLE cache: a delta's base would have to be read back from the file on both ends.
          const windowPages = Math.max(16, FILE_WINDOW_BYTES / spec.pageSize);
          list.push(allocateSlab(spec.id, index, first, spec.pageSize, count, { arenaBytes, cacheSlots: 0, windowPages }, { path: spec.file.path, offset: spec.file.offset + first * spec.pageSize }));
          continue;
        }
        const cacheSlots = cacheBytes > 0 ? Math.max(64, Math.floor((cacheBytes * share) / spec.pageSize)) : 0;
        list.push(allocateSlab(spec.id, index, first, spec.pageSize, count, { arenaBytes, cacheSlots }));
      }
      slabs.set(spec.id, list);
    }
    const regions = specs.map((s) => Object.freeze({
      id: s.id, name: s.name, kind: s.kind, pageSize: s.pageSize, pageCount: s.pageCount,
      ...(s.file !== undefined ? { file: Object.freeze({ path: s.file.path, offset: s.file.offset }) } : {}),
    }));
    return new GuestMemory(regions, slabs);
  }

  /** Rebuilds the view from descriptors another thread posted (no allocation, same memories). */
  static fromSlabs(regions: readonly Region[], slabs: readonly Slab[]): GuestMemory {
    const map = new Map<number, Slab[]>();
    for (const r of regions) map.set(r.id, []);
    for (const s of slabs) map.get(s.regionId)?.push(s);
    for (const list of map.values()) list.sort((a, b) => a.index - b.index);
    return new GuestMemory(regions, map);
  }

  region(id: number): Region {
    const r = this.regions.find((x) => x.id === id);
    if (r === undefined) throw invalidArgument('regionId', 'must name a region of this guest', id);
    return r;
  }

  slabsOf(regionId: number): readonly Slab[] {
    const s = this.slabs.get(regionId);
    if (s === undefined) throw invalidArgument('regionId', 'must name a region of this guest', regionId);
    return s;
  }

  allSlabs(): Slab[] {
    return this.regions.flatMap((r) => [...this.slabsOf(r.id)]);
  }

  /** The slab holding region page `page`, and the page's index within it. */
  locate(regionId: number, page: number): { slab: Slab; local: number } {
    const region = this.region(regionId);
    if (!Number.isInteger(page) || page < 0 || page >= region.pageCount) {
      throw invalidArgument('page', `must be in [0, ${region.pageCount}) for region ${regionId}`, page);
    }
    const slabs = this.slabsOf(regionId);
    const per = slabs[0].pageCount;
    const slab = slabs[Math.floor(page / per)];
    return { slab, local: page - slab.firstPage };
  }

  /** A live view of one page (not a copy: it changes as the guest writes). */
  pageView(regionId: number, page: number): Uint8Array {
    const { slab, local } = this.locate(regionId, page);
    return new Uint8Array(slab.memory.buffer, pageOffset(slab, local), slab.layout.pageSize);
  }

  /**
   * Marks region page `page` dirty, as a vCPU must after writing it: a 32-bit atomic OR of the page's
   * bit into its slab's `dirty` bitmap, so the next `DirtyTracker.sync()` sends it. Call after the write.
   */
  markDirty(regionId: number, page: number): void {
    const { slab, local } = this.locate(regionId, page);
    Atomics.or(new Int32Array(slab.memory.buffer), (slab.layout.dirty >>> 2) + (local >>> 5), 1 << (local & 31));
  }

  /** A copy of one page (read from its file for a file-backed region). */
  readPage(regionId: number, page: number): Uint8Array {
    const file = this.region(regionId).file;
    if (file === undefined) return this.pageView(regionId, page).slice();
    const { slab } = this.locate(regionId, page);
    const out = new Uint8Array(slab.layout.pageSize);
    readFileAt(file.path, out, file.offset + page * slab.layout.pageSize);
    return out;
  }

  /**
   * Destination with file-backed regions, before receiving (as a hypervisor pre-allocates): reads each
   * file once and notes which pages are zero, so that zero pages received cost no read or write where
   * the file is zero already. Call on the thread that will receive.
   */
  learnZeroPagesInFiles(): void {
    for (const s of this.allSlabs()) if (s.file !== null) learnZeroPages(s, ScratchAgent.MAIN);
  }

  /** Closes the file-backed regions' files this thread opened (reading or writing pages); they reopen when next used. */
  closeFiles(): void {
    closeRegionFiles(this.allSlabs());
  }

  /** The session digest over all regions (see sessionDigest in slab.ts). */
  digest(): bigint {
    return sessionDigest(this);
  }

  /**
   * Digest of what memory holds now, computed from scratch (hashes every page; ~10 GB/s). Equal to
   * `digest()` when every page's recorded hash is current.
   */
  contentDigest(): bigint {
    let d = 0n;
    for (const r of this.regions) {
      for (const s of this.slabsOf(r.id)) hashSlabPages(s, r.id, (_first, _hashes, digest) => { d ^= digest; });
    }
    return d;
  }

  /**
   * Writes the raw image of a region, or of several concatenated in the order given (exactly the sum of
   * their pageCount × pageSize bytes), to `path`.
   */
  writeImage(regionIds: number | readonly number[], path: string): void {
    const slabs = (typeof regionIds === 'number' ? [regionIds] : regionIds).flatMap((id) => [...this.slabsOf(id)]);
    let fd: number;
    try {
      fd = openSync(path, 'w');
    } catch (cause) {
      throw new MemshiftError(ErrorCode.IO, `cannot open ${path} for writing: ${(cause as Error).message}`, { cause });
    }
    try {
      for (const s of slabs) {
        if (s.file !== null) {
          copyFileRange(s.file.path, s.file.offset, s.pageCount * s.layout.pageSize, fd);
          continue;
        }
        const { u8 } = viewsOfSlab(s);
        const chunk = 64 << 20;
        for (let off = 0; off < s.layout.ramBytes; off += chunk) {
          const len = Math.min(chunk, s.layout.ramBytes - off);
          // writeSync from a SharedArrayBuffer view: copy through a Buffer (fs rejects shared views).
          writeSync(fd, Buffer.from(u8.subarray(s.layout.ram + off, s.layout.ram + off + len)));
        }
      }
    } catch (cause) {
      throw new MemshiftError(ErrorCode.IO, `cannot write ${path}: ${(cause as Error).message}`, { cause });
    } finally {
      closeSync(fd);
    }
  }
}

/** Reads exactly `into.length` bytes of `path` at `position` (a short file reads as zeros past its end). */
function readFileAt(path: string, into: Uint8Array, position: number): void {
  const fd = openSync(path, 'r');
  try {
    let done = 0;
    while (done < into.length) {
      const n = readSync(fd, into, done, into.length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    into.fill(0, done);
  } finally {
    closeSync(fd);
  }
}

/** Appends `bytes` of `path` from `offset` to the open file `out`. */
function copyFileRange(path: string, offset: number, bytes: number, out: number): void {
  const chunk = new Uint8Array(Math.min(bytes, 16 << 20));
  for (let at = 0; at < bytes; at += chunk.length) {
    const part = chunk.subarray(0, Math.min(chunk.length, bytes - at));
    readFileAt(path, part, offset + at);
    writeSync(out, part);
  }
}
