// Pages held outside guest memory for one epoch: on the primary, the copy taken while the guest is
// paused (so it runs again before the epoch is on the wire, Remus's staging copy); on the standby, the
// epoch as it arrives, checked page by page, until its END lets it be applied whole. A WebAssembly
// memory of its own, so the page kernel's mxh64 hashes pages where they lie.
//
//   memory := reserved 64 KiB | hashes u64 × MAX_PAGES_PER_EPOCH_FRAME (scratch) | page data × capacity
//   pages[i] = (region, page) of the i-th staged page, whose bytes are data[i × pageSize …]

import { ErrorCode, MemshiftError } from '../errors.js';
import { pageOffset, viewsOfSlab, type Slab } from '../memory/slab.js';
import type { GuestMemoryView } from '../memory/types.js';
import { Limits } from '../protocol/constants.js';
import { KERNEL_RESERVED_BYTES, Kernels, WASM_PAGE_BYTES } from '../wasm/kernels.js';

const SCRATCH_BYTES = 8 * Limits.MAX_PAGES_PER_EPOCH_FRAME;
const DATA = KERNEL_RESERVED_BYTES + Math.ceil(SCRATCH_BYTES / WASM_PAGE_BYTES) * WASM_PAGE_BYTES;
/** A wasm32 memory addresses 4 GiB; staging stays well inside it. */
export const MAX_STAGED_BYTES = 2 ** 31;

export class StagedPages {
  readonly pageSize: number;
  /** Most pages it will hold. */
  readonly capacity: number;
  private readonly memory: WebAssembly.Memory;
  private readonly kernels: Kernels;
  private bytes: Uint8Array;
  /** (region << 32 | page), packed as numbers, in staging order. */
  private keys: Float64Array;
  count = 0;

  constructor(pageSize: number, capacityBytes: number) {
    this.pageSize = pageSize;
    this.capacity = Math.max(1, Math.floor(Math.min(capacityBytes, MAX_STAGED_BYTES) / pageSize));
    const pages = Math.ceil((DATA + Math.min(this.capacity, 4096) * pageSize) / WASM_PAGE_BYTES);
    const maximum = Math.ceil((DATA + this.capacity * pageSize) / WASM_PAGE_BYTES);
    this.memory = new WebAssembly.Memory({ initial: pages, maximum, shared: true });
    this.kernels = new Kernels(this.memory);
    this.bytes = new Uint8Array(this.memory.buffer);
    this.keys = new Float64Array(Math.min(this.capacity, 4096));
  }

  get full(): boolean {
    return this.count >= this.capacity;
  }

  get stagedBytes(): number {
    return this.count * this.pageSize;
  }

  clear(): void {
    this.count = 0;
  }

  /** Room for one more page: grows the memory (and the key list) by doubling, up to the capacity. */
  private slot(): number {
    if (this.count >= this.capacity) throw new MemshiftError(ErrorCode.MEMORY_ALLOCATION, `an epoch of more than ${this.capacity} pages does not fit the staging memory`);
    const end = DATA + (this.count + 1) * this.pageSize;
    if (end > this.bytes.length) {
      const want = Math.min(Math.ceil((DATA + this.capacity * this.pageSize) / WASM_PAGE_BYTES), Math.ceil((DATA + 2 * this.count * this.pageSize) / WASM_PAGE_BYTES));
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
    return DATA + this.count * this.pageSize;
  }

  /**
   * Copies the pages marked in the slab's snapshot (taking their marks) until staging holds `limit`
   * pages (at most its capacity); a mark not taken stays for the next call. Returns the pages copied.
   */
  stageMarked(regionId: number, slab: Slab, limit = this.capacity): number {
    const most = Math.min(limit, this.capacity);
    const L = slab.layout;
    const words = new Int32Array(slab.memory.buffer, L.snapshot, L.bitmapWords * 2);
    const { u8 } = viewsOfSlab(slab);
    let copied = 0;
    for (let w = 0; w < words.length && this.count < most; w++) {
      if (words[w] === 0) continue;
      const bits = Atomics.exchange(words, w, 0);
      for (let b = 0; b < 32; b++) {
        if ((bits & (1 << b)) === 0) continue;
        const local = w * 32 + b;
        if (local >= slab.pageCount) break;
        if (this.count >= most) {
          // Out of room: the rest of this word's marks go back for the next call.
          Atomics.or(words, w, bits & ~((1 << b) - 1));
          break;
        }
        const at = this.slot();
        const from = pageOffset(slab, local);
        this.bytes.set(u8.subarray(from, from + this.pageSize), at);
        this.keys[this.count++] = regionId * 2 ** 32 + slab.firstPage + local;
        copied++;
      }
    }
    return copied;
  }

  /**
   * The staged pages as runs of one region each, at most `most` pages per run, with each page's hash:
   * what the EPOCH_PAGES frames carry. `data` is a view into staging (valid until the next stage).
   */
  *runs(most: number): Generator<{ regionId: number; pages: Uint32Array; hashes: BigUint64Array; data: Uint8Array }> {
    let i = 0;
    while (i < this.count) {
      const regionId = Math.floor(this.keys[i] / 2 ** 32);
      let n = 1;
      while (n < most && i + n < this.count && Math.floor(this.keys[i + n] / 2 ** 32) === regionId) n++;
      const pages = new Uint32Array(n);
      for (let k = 0; k < n; k++) pages[k] = this.keys[i + k] - regionId * 2 ** 32;
      const data = DATA + i * this.pageSize;
      this.kernels.raw.hashPages(data, this.pageSize, n, KERNEL_RESERVED_BYTES);
      const hashes = new BigUint64Array(this.memory.buffer, KERNEL_RESERVED_BYTES, n).slice();
      yield { regionId, pages, hashes, data: this.bytes.subarray(data, data + n * this.pageSize) };
      i += n;
    }
  }

  /**
   * Checks `count` received pages (`data` at `dataOffset`, hashes at `hashesOffset` of `buf`) and keeps
   * them when `keep` (the standby's epoch), or only checks them (the base, written at once). Throws
   * MS_ERR_PAGE_HASH_MISMATCH naming the first page that differs; nothing of the frame is kept then.
   */
  checkPages(buf: Uint8Array, hashesOffset: number, dataOffset: number, regionId: number, pages: ArrayLike<number>, keep: boolean, what: string): void {
    const n = pages.length;
    const first = this.count;
    let at = DATA;
    for (let k = 0; k < n; k++) {
      const to = keep ? this.slot() : DATA + k * this.pageSize;
      if (!keep && to + this.pageSize > this.bytes.length) throw new MemshiftError(ErrorCode.MEMORY_ALLOCATION, 'a base frame larger than the staging memory');
      if (k === 0) at = to;
      this.bytes.set(buf.subarray(dataOffset + k * this.pageSize, dataOffset + (k + 1) * this.pageSize), to);
      if (keep) this.keys[this.count++] = regionId * 2 ** 32 + pages[k];
    }
    this.kernels.raw.hashPages(at, this.pageSize, n, KERNEL_RESERVED_BYTES);
    const got = this.bytes.subarray(KERNEL_RESERVED_BYTES, KERNEL_RESERVED_BYTES + 8 * n);
    for (let i = 0; i < 8 * n; i++) {
      if (got[i] !== buf[hashesOffset + i]) {
        this.count = first;
        const page = pages[Math.floor(i / 8)];
        throw new MemshiftError(ErrorCode.PAGE_HASH_MISMATCH, `${what}: page ${page} of region ${regionId} does not match its hash: not kept`, { regionId, page });
      }
    }
  }

  /** Writes every staged page into `target`'s memory at its place; returns the pages written. */
  applyTo(target: GuestMemoryView): number {
    for (let i = 0; i < this.count; i++) {
      const regionId = Math.floor(this.keys[i] / 2 ** 32);
      const page = this.keys[i] - regionId * 2 ** 32;
      writePage(target, regionId, page, this.bytes, DATA + i * this.pageSize, this.pageSize);
    }
    return this.count;
  }
}

/** Writes one page (`pageSize` bytes of `from` at `offset`) into the guest page `page` of region `regionId`. */
export function writePage(target: GuestMemoryView, regionId: number, page: number, from: Uint8Array, offset: number, pageSize: number): void {
  const slab = target.slabsOf(regionId).find((s) => page >= s.firstPage && page < s.firstPage + s.pageCount);
  if (slab === undefined) throw new MemshiftError(ErrorCode.BATCH_PAGE_RANGE, `page ${page} of region ${regionId} is in no slab`, { regionId, page });
  const { u8 } = viewsOfSlab(slab);
  u8.set(from.subarray(offset, offset + pageSize), pageOffset(slab, page - slab.firstPage));
}
