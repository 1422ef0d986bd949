// Pages held outside guest memory for one epoch: on the primary, the copy taken while the guest is
// paused (so it runs again before the epoch is on the wire, Remus's staging copy); on the standby, the
// epoch as it arrives, decoded and checked page by page, until its END lets it be applied whole. A
// WebAssembly memory of its own, so the page kernels hash, delta-encode and decode where pages lie.
//
//   memory := reserved 64 KiB | hashes u64 × MAX_PAGES_PER_EPOCH_FRAME | delta scratch | cache | staged pages
//   staged i: (region, page) keys[i], bytes at data + i × pageSize
//
// The primary's cache (direct-mapped by guest page, `cacheBytes`) holds each page as last sent: a
// staged page found there goes as an XOR delta against it (EPOCH_PAGES encoding 2) when that is
// smaller. The standby decodes a delta against the page as it holds it (its last committed epoch), so
// both sides agree on the base by construction; the page hash after decoding proves it.
//
// Encoding compacts each run's payload in place: the write point never passes the page being read,
// whose hash is taken and cache slot refreshed before its bytes may be overwritten.

import type { TouchRange } from '../memory/pretouch.js';
import { ErrorCode, MemshiftError } from '../errors.js';
import { pageOffset, viewsOfSlab, type Slab } from '../memory/slab.js';
import type { GuestMemoryView } from '../memory/types.js';
import { Limits } from '../protocol/constants.js';
import { EpochEncoding, type EpochPages } from '../protocol/replication.js';
import { KERNEL_RESERVED_BYTES, Kernels, WASM_PAGE_BYTES } from '../wasm/kernels.js';

const HASHES = KERNEL_RESERVED_BYTES;
const HASH_BYTES = 8 * Limits.MAX_PAGES_PER_EPOCH_FRAME;
const DELTA = HASHES + HASH_BYTES;
/** Room for one delta of the largest page (an over-long one is refused before it is written). */
const DELTA_BYTES = Limits.MAX_BLOCK_BYTES;
/** A wasm32 memory addresses 4 GiB; staging and cache stay well inside it. */
export const MAX_STAGED_BYTES = 2 ** 31;
export const MAX_CACHE_BYTES = 2 ** 30;

/** One run of staged pages of one region, encoded: what an EPOCH_PAGES frame carries. */
export interface EncodedRun {
  regionId: number;
  pages: Uint32Array;
  /** Payload size | encoding << 24, per page. */
  sizes: Uint32Array;
  hashes: BigUint64Array;
  /** The payloads, in order: a view into staging, valid until the next stage. */
  payload: Uint8Array;
  /** Pages that went as deltas. */
  deltas: number;
}

export class StagedPages {
  readonly pageSize: number;
  /** Most pages it will hold. */
  readonly capacity: number;
  private readonly memory: WebAssembly.Memory;
  private readonly kernels: Kernels;
  private bytes: Uint8Array;
  /** (region << 32 | page), packed as numbers, in staging order. */
  private keys: Float64Array;
  private readonly cache: number;
  private readonly cacheSlots: number;
  /** Per cache slot: key + 1 of the page it holds (0: empty). */
  private readonly cacheTags: Float64Array;
  private readonly data: number;
  count = 0;

  /**
   * Its delta cache and first staged pages, for a thread to touch before they are first written (in a
   * staging call that runs to its end: on hosts slow to fault memory in, ~200 ms without a frame sent).
   */
  freshMemory(): TouchRange[] {
    const HOST_PAGE = 4096;
    return [{ memory: this.memory, ram: this.cache, pageSize: HOST_PAGE, from: 0, to: Math.floor((this.memory.buffer.byteLength - this.cache) / HOST_PAGE) }];
  }

  /** `cacheBytes` > 0 (the primary): pages are delta-encoded against the version last sent. */
  constructor(pageSize: number, capacityBytes: number, cacheBytes = 0) {
    this.pageSize = pageSize;
    this.capacity = Math.max(1, Math.floor(Math.min(capacityBytes, MAX_STAGED_BYTES) / pageSize));
    this.cacheSlots = Math.floor(Math.min(cacheBytes, MAX_CACHE_BYTES) / pageSize);
    this.cacheTags = new Float64Array(this.cacheSlots);
    this.cache = DELTA + DELTA_BYTES;
    this.data = Math.ceil((this.cache + this.cacheSlots * pageSize) / WASM_PAGE_BYTES) * WASM_PAGE_BYTES;
    const pages = Math.ceil((this.data + Math.min(this.capacity, 4096) * pageSize) / WASM_PAGE_BYTES);
    const maximum = Math.ceil((this.data + this.capacity * pageSize) / WASM_PAGE_BYTES);
    this.memory = new WebAssembly.Memory({ initial: pages, maximum, shared: true });
    this.kernels = new Kernels(this.memory);
    this.bytes = new Uint8Array(this.memory.buffer);
    this.keys = new Float64Array(Math.min(this.capacity, 4096));
  }

  get full(): boolean {
    return this.count >= this.capacity;
  }

  clear(): void {
    this.count = 0;
  }

  private at(i: number): number {
    return this.data + i * this.pageSize;
  }

  /** Room for one more page: grows the memory (and the key list) by doubling, up to the capacity. */
  private slot(): number {
    if (this.count >= this.capacity) throw new MemshiftError(ErrorCode.MEMORY_ALLOCATION, `an epoch of more than ${this.capacity} pages does not fit the staging memory`);
    const end = this.at(this.count + 1);
    if (end > this.bytes.length) {
      const want = Math.min(Math.ceil(this.at(this.capacity) / WASM_PAGE_BYTES), Math.ceil(this.at(2 * this.count) / WASM_PAGE_BYTES));
      const have = this.bytes.length / WASM_PAGE_BYTES;
      try {
        this.memory.grow(Math.max(1, want - have));
      } catch (cause) {
        throw new MemshiftError(ErrorCode.MEMORY_ALLOCATION, `cannot grow the staging memory to ${want * WASM_PAGE_BYTES} bytes: ${(cause as Error).message}`, { cause });
      }
      this.bytes = new Uint8Array(this.memory.buffer);
    }
    if (this.count === this.keys.length) {
      const grown = new Float64Array(Math.min(this.capacity, this.keys.length * 2));
      grown.set(this.keys);
      this.keys = grown;
    }
    return this.at(this.count);
  }

  /**
   * Copies the pages marked in the slab's snapshot (taking their marks) until staging holds `limit`
   * pages (at most its capacity); a mark not taken stays for the next call. Runs of consecutive pages
   * are copied at once. Returns the pages copied.
   */
  stageMarked(regionId: number, slab: Slab, limit = this.capacity): number {
    const most = Math.min(limit, this.capacity);
    const L = slab.layout;
    const words = new Int32Array(slab.memory.buffer, L.snapshot, L.bitmapWords * 2);
    const { u8 } = viewsOfSlab(slab);
    const first = this.count;
    let run: { local: number; at: number; n: number } | null = null;
    const flush = (): void => {
      if (run === null) return;
      const from = pageOffset(slab, run.local);
      this.bytes.set(u8.subarray(from, from + run.n * this.pageSize), run.at);
      run = null;
    };
    for (let w = 0; w < words.length && this.count < most; w++) {
      if (words[w] === 0) {
        flush();
        continue;
      }
      const bits = Atomics.exchange(words, w, 0);
      for (let b = 0; b < 32; b++) {
        if ((bits & (1 << b)) === 0) {
          flush();
          continue;
        }
        const local = w * 32 + b;
        if (local >= slab.pageCount) break;
        if (this.count >= most) {
          // Out of room: the rest of this word's marks go back for the next call.
          Atomics.or(words, w, bits & ~((1 << b) - 1));
          break;
        }
        const at = this.slot();
        // A grown memory is a new buffer: a run copies into the one current at its flush.
        if (run !== null && run.local + run.n === local && run.at + run.n * this.pageSize === at) run.n++;
        else {
          flush();
          run = { local, at, n: 1 };
        }
        this.keys[this.count++] = regionId * 2 ** 32 + slab.firstPage + local;
      }
    }
    flush();
    return this.count - first;
  }

  /** Cache slot of a key: guest pages of one region map to consecutive slots. */
  private cacheSlot(key: number): number {
    return (key % this.cacheSlots + Math.floor(key / 2 ** 32) * 7919) % this.cacheSlots;
  }

  /**
   * The staged pages as encoded runs of one region each, at most `most` pages per run (at most
   * MAX_PAGES_PER_EPOCH_FRAME): each page hashed as staged, then sent as a delta against the cache when
   * one is there and smaller, else raw; the cache then holds the page as sent.
   */
  *encodedRuns(most: number): Generator<EncodedRun> {
    const per = Math.min(most, Limits.MAX_PAGES_PER_EPOCH_FRAME);
    const ps = this.pageSize;
    const k = this.kernels.raw;
    let i = 0;
    while (i < this.count) {
      const regionId = Math.floor(this.keys[i] / 2 ** 32);
      let n = 1;
      while (n < per && i + n < this.count && Math.floor(this.keys[i + n] / 2 ** 32) === regionId) n++;
      const start = this.at(i);
      k.hashPages(start, ps, n, HASHES);
      const hashes = new BigUint64Array(this.memory.buffer, HASHES, n).slice();
      const pages = new Uint32Array(n);
      const sizes = new Uint32Array(n);
      let w = start;
      let deltas = 0;
      for (let j = 0; j < n; j++) {
        const key = this.keys[i + j];
        pages[j] = key - regionId * 2 ** 32;
        const page = this.at(i + j);
        let size = -1;
        if (this.cacheSlots > 0) {
          const slot = this.cacheSlot(key);
          const cached = this.cache + slot * ps;
          // A delta only when it saves at least half the page (decoding one costs the standby a page read).
          if (this.cacheTags[slot] === key + 1) size = k.xorDeltaEncode(cached, page, ps, DELTA, ps >>> 1);
          this.bytes.copyWithin(cached, page, page + ps);
          this.cacheTags[slot] = key + 1;
        }
        if (size >= 0) {
          this.bytes.copyWithin(w, DELTA, DELTA + size);
          sizes[j] = size | (EpochEncoding.XBZRLE << 24);
          w += size;
          deltas++;
        } else {
          if (w !== page) this.bytes.copyWithin(w, page, page + ps);
          sizes[j] = ps | (EpochEncoding.RAW << 24);
          w += ps;
        }
      }
      yield { regionId, pages, sizes, hashes, payload: this.bytes.subarray(start, w), deltas };
      i += n;
    }
  }

  /**
   * Decodes the pages of a received EPOCH_PAGES frame into staging (a delta against the page as
   * `holder` holds it) and checks each against its hash. Throws MS_ERR_PAGE_HASH_MISMATCH or
   * MS_ERR_DELTA_MALFORMED naming the page; nothing of the frame is kept then.
   */
  acceptFrame(buf: Uint8Array, m: EpochPages, holder: GuestMemoryView, what: string): void {
    const first = this.count;
    const ps = this.pageSize;
    const dv = new DataView(buf.buffer, buf.byteOffset + m.entriesOffset, 16 * m.count);
    try {
      let payload = m.payloadOffset;
      for (let j = 0; j < m.count; j++) {
        const page = dv.getUint32(16 * j, true);
        const sizeAndEncoding = dv.getUint32(16 * j + 4, true);
        const size = sizeAndEncoding & 0xffffff;
        const to = this.slot();
        if (sizeAndEncoding >>> 24 === EpochEncoding.RAW) {
          this.bytes.set(buf.subarray(payload, payload + ps), to);
        } else {
          readPage(holder, m.regionId, page, this.bytes, to, ps);
          this.bytes.set(buf.subarray(payload, payload + size), DELTA);
          const status = this.kernels.raw.xorDeltaDecode(DELTA, size, to, ps);
          if (status !== 0) throw new MemshiftError(ErrorCode.DELTA_MALFORMED, `${what}: the delta of page ${page} of region ${m.regionId} is malformed (${status}): not kept`, { regionId: m.regionId, page });
        }
        this.keys[this.count++] = m.regionId * 2 ** 32 + page;
        payload += size;
      }
      this.kernels.raw.hashPages(this.at(first), ps, m.count, HASHES);
      const got = this.bytes.subarray(HASHES, HASHES + 8 * m.count);
      for (let j = 0; j < m.count; j++) {
        for (let b = 0; b < 8; b++) {
          if (got[8 * j + b] !== buf[m.entriesOffset + 16 * j + 8 + b]) {
            const page = dv.getUint32(16 * j, true);
            throw new MemshiftError(ErrorCode.PAGE_HASH_MISMATCH, `${what}: page ${page} of region ${m.regionId} does not match its hash: not kept`, { regionId: m.regionId, page });
          }
        }
      }
    } catch (err) {
      this.count = first;
      throw err;
    }
  }

  /** Writes every staged page into `target`'s memory at its place; returns the pages written. */
  applyTo(target: GuestMemoryView): number {
    for (let i = 0; i < this.count; i++) {
      const regionId = Math.floor(this.keys[i] / 2 ** 32);
      const page = this.keys[i] - regionId * 2 ** 32;
      writePage(target, regionId, page, this.bytes, this.at(i), this.pageSize);
    }
    return this.count;
  }
}

function slabOf(view: GuestMemoryView, regionId: number, page: number): Slab {
  const slab = view.slabsOf(regionId).find((s) => page >= s.firstPage && page < s.firstPage + s.pageCount);
  if (slab === undefined) throw new MemshiftError(ErrorCode.BATCH_PAGE_RANGE, `page ${page} of region ${regionId} is in no slab`, { regionId, page });
  return slab;
}

/** Writes one page (`pageSize` bytes of `from` at `offset`) into the guest page `page` of region `regionId`. */
export function writePage(target: GuestMemoryView, regionId: number, page: number, from: Uint8Array, offset: number, pageSize: number): void {
  const slab = slabOf(target, regionId, page);
  const { u8 } = viewsOfSlab(slab);
  u8.set(from.subarray(offset, offset + pageSize), pageOffset(slab, page - slab.firstPage));
}

/** Copies the guest page `page` of region `regionId` into `into` at `offset`. */
function readPage(view: GuestMemoryView, regionId: number, page: number, into: Uint8Array, offset: number, pageSize: number): void {
  const slab = slabOf(view, regionId, page);
  const { u8 } = viewsOfSlab(slab);
  const from = pageOffset(slab, page - slab.firstPage);
  into.set(u8.subarray(from, from + pageSize), offset);
}
