// The decode side of the pipeline (encode-worker.ts is the encode side): applies received PAGE_BATCH
// frames to the destination's slabs. The structure of a batch is validated by the pure decoder first
// (protocol/page-batch.ts); the apply kernel then verifies each page's content hash before writing it,
// so neither a malformed frame nor a corrupt payload writes a page. An encoding the kernel leaves to
// the host (lz4) is decoded with its ops from protocol/encodings/. The frame is decoded where it landed
// when that is the target slab's own memory (the receive ring lives in the first slab's arena); a batch
// for another slab is copied into that slab's arena once, because a kernel sees only its own memory.
//
//   frame ─► decodeBatch (structure) ─► applyPages (kernel: zero/raw/xbzrle, hash, write) ─┐
//                                          ▲ next entry          stops at a host entry ◄───┘
//                                          └─ ops.decode into scratch ─► applyScratchPage
//
// A file-backed slab (memory/file-pages.ts) is applied a window at a time: the kernel writes into this
// thread's window, and what it applied goes to the file at the pages' offsets.

import { ErrorCode, MemshiftError } from '../errors.js';
import { kernelsOf, type Slab } from '../memory/slab.js';
import { CONTROL_DIGEST, scratchSlot } from '../memory/slab-layout.js';
import type { GuestMemoryView } from '../memory/types.js';
import { applyWindow, writeAppliedPages } from '../memory/file-pages.js';
import { FrameType, PageEncoding } from '../protocol/constants.js';
import { addEncodingCounts, emptyEncodingCounts, encodingName, encodingOf, type EncodingCounts } from '../protocol/encodings/index.js';
import { ENTRY_BYTES, batchEntry, decodeBatch, type BatchRegion, type BatchView } from '../protocol/page-batch.js';
import { KernelCode } from '../wasm/kernels.js';
import { viewsOf } from '../wasm/views.js';

export interface ApplyTotals {
  pages: number;
  duplicates: number;
  bytes: number;
  counts: EncodingCounts;
}

export class BatchApplier {
  private readonly regions = new Map<number, { info: BatchRegion; slabs: readonly Slab[]; keyBase: bigint }>();
  readonly totals: ApplyTotals = { pages: 0, duplicates: 0, bytes: 0, counts: emptyEncodingCounts() };

  /**
   * `agent` is this thread's scratch slot; `claim` makes every write conditional on winning the page's
   * claim bit (post-copy, where two copies of a page may arrive). `placement` says where a batch that
   * is not already in the target slab's memory is copied: the slab's arena (the main thread, whose
   * receive ring is the first slab's arena) or this agent's scratch slot (the fault thread, whose
   * answers hold one page).
   */
  constructor(
    memory: GuestMemoryView, private readonly capabilities: number, private readonly agent: number,
    public claim = false, private readonly placement: 'arena' | 'scratch' = 'arena',
  ) {
    for (const r of memory.regions) {
      this.regions.set(r.id, { info: { pageSize: r.pageSize, pageCount: r.pageCount }, slabs: memory.slabsOf(r.id), keyBase: BigInt(r.id) << 32n });
    }
  }

  /** Validates then applies the batch whose body is at `bodyOffset` of `buf` (a view into some slab memory, or any buffer). */
  apply(buf: Uint8Array, bodyOffset: number, bodyLength: number, checkedLength: number): BatchView {
    const view = decodeBatch(buf, bodyOffset, bodyLength, checkedLength, (id) => this.regions.get(id)?.info, this.capabilities);
    const region = this.regions.get(view.regionId)!;
    const perSlab = region.slabs[0].pageCount;
    let i = 0;
    let payloadOffset = 0;
    // A file-backed slab's window, kept while the entries stay in it (an LZ4 entry splits a kernel call, not the window).
    let window: { slab: Slab; end: number; ram: number; first: number } | null = null;
    // Entries' page and encoding words, read without building entries (whose hash is a bigint).
    const entries = new DataView(view.buf.buffer, view.buf.byteOffset + view.entriesOffset, view.count * ENTRY_BYTES);
    while (i < view.count) {
      const first = batchEntry(view, i).page;
      const slab = region.slabs[Math.floor(first / perSlab)];
      const base = this.placeBody(slab, buf, bodyOffset, bodyLength);
      const L = slab.layout;
      const k = kernelsOf(slab).raw;
      const slot = scratchSlot(L, this.agent);
      // With scratch placement the body occupies the slot's pages; XBZRLE (which needs scratch) is not
      // negotiated on that path, and LZ4 decodes into the second page.
      const scratch = this.placement === 'scratch' ? { page: slot.page2, result: slot.result } : slot;
      const entriesPtr = base + (view.entriesOffset - bodyOffset);
      const payloadPtr = base + (view.payloadOffset - bodyOffset);
      let ram = L.ram;
      let end = view.count;
      let windowFirst = 0;
      if (slab.file !== null) {
        if (this.claim) throw new MemshiftError(ErrorCode.INVALID_ARGUMENT, `region ${view.regionId} lives in a file: no post-copy claims on it`, { regionId: view.regionId });
        if (window === null || window.slab !== slab || i >= window.end) window = { slab, ...applyWindow(slab, this.agent, (j) => entries.getUint32(j * ENTRY_BYTES, true), i, view.count) };
        ({ end, ram, first: windowFirst } = window);
      }
      payloadOffset = k.applyPages(
        ram, L.pageSize, slab.pageCount, slab.firstPage, region.keyBase,
        entriesPtr, i, end, payloadPtr, payloadOffset,
        L.hashes, L.control + CONTROL_DIGEST, L.present, this.claim ? L.claim : 0, scratch.page, scratch.result,
      );
      const { u32, i32, u8 } = viewsOf(slab.memory);
      const r = scratch.result >>> 2;
      this.totals.pages += u32[r];
      this.totals.duplicates += u32[r + 1];
      const stop = u32[r + 2];
      const code = i32[r + 3];
      if (slab.file !== null) this.writeToFile(slab, entries, windowFirst, i, stop);
      i = stop;
      // A file-backed slab's window ends the kernel's run before the batch ends.
      if (code === 0 && i < view.count) continue;
      if (code === 0) break;
      const entry = batchEntry(view, stop);
      if (code === KernelCode.APPLY_NEEDS_HOST) {
        // An encoding decoded on the host (lz4): decode on this thread, verify and write through the kernel.
        const decode = encodingOf(entry.encoding)?.decode;
        if (decode === undefined) {
          throw new MemshiftError(ErrorCode.BATCH_ENCODING, `page ${entry.page} of region ${view.regionId}: the kernel left ${encodingName(entry.encoding)} to the host, which has no decoder for it`, { frameType: FrameType.PAGE_BATCH, regionId: view.regionId, page: entry.page });
        }
        const payload = u8.subarray(payloadPtr + payloadOffset, payloadPtr + payloadOffset + entry.size);
        let page: Uint8Array;
        try {
          page = decode(payload, L.pageSize);
        } catch (err) {
          const e = err as MemshiftError;
          throw new MemshiftError(e.code, `page ${entry.page} of region ${view.regionId}: ${e.message}`, { frameType: FrameType.PAGE_BATCH, regionId: view.regionId, page: entry.page, cause: err });
        }
        u8.set(page, scratch.page);
        const rc = k.applyScratchPage(ram, L.pageSize, slab.pageCount, slab.firstPage, region.keyBase, entry.page, entry.hash,
          L.hashes, L.control + CONTROL_DIGEST, L.present, this.claim ? L.claim : 0, scratch.page);
        if (rc < 0) throw this.kernelError(rc, view, entry.page);
        if (slab.file !== null) this.writeToFile(slab, entries, windowFirst, stop, stop + 1);
        if (rc === 1) this.totals.pages++;
        else this.totals.duplicates++;
        payloadOffset += entry.size;
        i = stop + 1;
        continue;
      }
      if (code === KernelCode.APPLY_ERR_PAGE_RANGE && entry.page >= slab.firstPage + slab.pageCount) continue;
      throw this.kernelError(code, view, entry.page);
    }
    this.totals.bytes += bodyLength;
    addEncodingCounts(this.totals.counts, view.encodings);
    return view;
  }

  /** Writes entries [start, stop) of the batch, which the kernel applied into this thread's window, to the slab's file. */
  private writeToFile(slab: Slab, entries: DataView, windowFirst: number, start: number, stop: number): void {
    const pages: number[] = [];
    const zero: boolean[] = [];
    for (let j = start; j < stop; j++) {
      pages.push(entries.getUint32(j * ENTRY_BYTES, true));
      zero.push(entries.getUint32(j * ENTRY_BYTES + 4, true) >>> 24 === PageEncoding.ZERO);
    }
    writeAppliedPages(slab, this.agent, windowFirst, pages, zero);
  }

  /** Offset of the batch body in `slab`'s memory, copying it into the slab's arena if it lives elsewhere. */
  private placeBody(slab: Slab, buf: Uint8Array, bodyOffset: number, bodyLength: number): number {
    if (buf.buffer === slab.memory.buffer) return buf.byteOffset + bodyOffset;
    const at = this.placement === 'arena' ? slab.layout.arena : scratchSlot(slab.layout, this.agent).page;
    const room = this.placement === 'arena' ? slab.layout.arenaBytes : 2 * slab.layout.pageSize;
    if (bodyLength > room) {
      throw new MemshiftError(ErrorCode.FRAME_TOO_LARGE, `PAGE_BATCH of ${bodyLength} bytes does not fit slab ${slab.index}'s ${this.placement}`, { frameType: FrameType.PAGE_BATCH });
    }
    viewsOf(slab.memory).u8.set(buf.subarray(bodyOffset, bodyOffset + bodyLength), at);
    return at;
  }

  private kernelError(code: number, view: BatchView, page: number): MemshiftError {
    const where = { frameType: FrameType.PAGE_BATCH, regionId: view.regionId, page };
    switch (code) {
      case KernelCode.APPLY_ERR_HASH:
        return new MemshiftError(ErrorCode.PAGE_HASH_MISMATCH, `page ${page} of region ${view.regionId} does not match its hash after decoding (corrupt payload, or the sides disagree on its previous content)`, where);
      case KernelCode.APPLY_ERR_SIZE:
      case KernelCode.APPLY_ERR_ENCODING:
        return new MemshiftError(ErrorCode.BATCH_ENCODING, `page ${page} of region ${view.regionId} has an encoding or size the kernel rejects (${code})`, where);
      case KernelCode.APPLY_ERR_PAGE_RANGE:
        return new MemshiftError(ErrorCode.BATCH_PAGE_RANGE, `page ${page} is outside region ${view.regionId}`, where);
      case KernelCode.XBZRLE_ERR_TRUNCATED:
        return new MemshiftError(ErrorCode.DELTA_MALFORMED, `xbzrle delta of page ${page} is truncated`, where);
      case KernelCode.XBZRLE_ERR_OVERRUN:
        return new MemshiftError(ErrorCode.DELTA_MALFORMED, `xbzrle delta of page ${page} runs past the page end`, where);
      case KernelCode.XBZRLE_ERR_VARINT:
        return new MemshiftError(ErrorCode.DELTA_MALFORMED, `xbzrle delta of page ${page} has an over-long run length`, where);
      case KernelCode.XBZRLE_ERR_EMPTY_RUN:
        return new MemshiftError(ErrorCode.DELTA_MALFORMED, `xbzrle delta of page ${page} has an empty run`, where);
      default:
        return new MemshiftError(ErrorCode.FRAME_MALFORMED, `page ${page}: apply kernel returned ${code}`, where);
    }
  }
}
