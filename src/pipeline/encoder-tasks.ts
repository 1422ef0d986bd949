// The encoder's two tasks, run in an encoder worker (encode-worker.ts) or inline on the source's main
// thread (pool.ts), so where a task runs never changes what it does:
// - encodeInto: one PAGE_BATCH frame built in a chunk of a slab's arena: scan the slab's snapshot bitmap
//   over a page range, let the WASM kernel do the per-page work (zero test, copy + hash, XBZRLE against
//   the cache), add the frame headers and, when asked, LZ4 on the raw pages. What each encoding keeps
//   and how LZ4 compresses come from the encodings table. A file-backed slab's pages are read from the
//   file into this agent's window first (file-pages.ts).
// - scanInto: the hash-scan that finds which pages of a file-backed slab changed.

import { readMarkedPages, scanChangedPages } from '../memory/file-pages.js';
import { kernelsOf, type Slab } from '../memory/slab.js';
import { CONTROL_DIGEST, scratchSlot } from '../memory/slab-layout.js';
import { PageEncoding } from '../protocol/constants.js';
import { ENTRY_BYTES, chunkEntriesOffset, chunkPayloadOffset, sealBatch } from '../protocol/page-batch.js';
import { ENCODINGS } from '../protocol/encodings/index.js';
import { viewsOf } from '../wasm/views.js';
import type { EncodeRequest, EncodeResult, ScanRequest } from './messages.js';

const XBZRLE = ENCODINGS[PageEncoding.XBZRLE];
const LZ4 = ENCODINGS[PageEncoding.LZ4];

/** Hash-scans a file-backed slab's pages [from, to) with scratch slot `agent`; returns how many it marked dirty. */
export function scanInto(slabs: readonly Slab[], agent: number, req: ScanRequest): number {
  const slab: Slab | undefined = slabs[req.slab];
  if (slab === undefined || slab.file === null) throw new Error(`no file-backed slab ${req.slab}`);
  return scanChangedPages(slab, agent, req.from, req.to);
}

/** Encodes the task `req` with scratch slot `agent`; `keyBases[i]` is slab i's region key base (region id << 32). */
export function encodeInto(slabs: readonly Slab[], keyBases: readonly bigint[], agent: number, req: EncodeRequest): EncodeResult {
  const slab: Slab | undefined = slabs[req.slab];
  if (slab === undefined) throw new Error(`no slab ${req.slab}`);
  const L = slab.layout;
  let { from, to } = req;
  let ram = L.ram;
  if (slab.file !== null) {
    // Only as far as one window: the rest of the range is the next task's.
    const window = readMarkedPages(slab, agent, from, to);
    if (window === null) from = to;
    else ({ from, to, ram } = window);
  }
  const k = kernelsOf(slab).raw;
  const scratch = scratchSlot(L, agent);
  const entries = chunkEntriesOffset(req.chunk);
  const payload = chunkPayloadOffset(req.chunk, req.maxEntries);
  const useCache = req.cache !== 'off' && L.cacheSlots > 0;
  const n = k.encodePages(
    ram, L.pageSize, L.snapshot, from, to,
    slab.firstPage, keyBases[req.slab], L.hashes, L.control + CONTROL_DIGEST,
    entries, req.maxEntries, payload, req.payloadLimit,
    L.cache, L.cacheTags, useCache ? L.cacheSlots : 0, req.cache === 'read-only' ? 1 : 0, scratch.page, XBZRLE.keepLimit(L.pageSize),
    scratch.result,
  );
  const { u32, u8 } = viewsOf(slab.memory);
  const r = scratch.result >>> 2;
  let payloadBytes = u32[r + 2];
  let lz4 = 0;
  let raw = u32[r + 4];
  if (req.lz4 && raw > 0) {
    ({ payloadBytes, lz4 } = compressRawPages(u8, entries, n, payload, L.pageSize));
    raw -= lz4;
  }
  const sealed = n === 0
    ? { head: [req.chunk, 0] as [number, number], payload: [payload, 0] as [number, number] }
    : sealBatch(u8, req.chunk, slab.regionId, req.iteration, n, payloadBytes, req.maxEntries);
  return {
    entries: n,
    nextPage: u32[r + 1],
    payloadBytes,
    zero: u32[r + 3],
    raw,
    xbzrle: u32[r + 5],
    lz4,
    lz4Tried: req.lz4,
    cacheMisses: u32[r + 6],
    head: sealed.head,
    payload: sealed.payload,
    pageBytes: n * L.pageSize,
  };
}

/**
 * Replaces raw payloads with LZ4 where the table's lz4 encode keeps them, compacting the payload in
 * place (compressed data is never longer than what it replaces, so the write cursor stays behind the
 * read cursor).
 */
function compressRawPages(u8: Uint8Array, entries: number, n: number, payload: number, pageSize: number): { payloadBytes: number; lz4: number } {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  let read = payload;
  let write = payload;
  let lz4 = 0;
  for (let i = 0; i < n; i++) {
    const e = entries + i * ENTRY_BYTES;
    const word = dv.getUint32(e + 4, true);
    const encoding = word >>> 24;
    const size = word & 0xffffff;
    if (encoding === PageEncoding.RAW) {
      const packed = LZ4.encode(u8.slice(read, read + size), pageSize);
      if (packed !== null) {
        u8.set(packed, write);
        dv.setUint32(e + 4, packed.length | (LZ4.id << 24), true);
        read += size;
        write += packed.length;
        lz4++;
        continue;
      }
    }
    if (write !== read) u8.copyWithin(write, read, read + size);
    read += size;
    write += size;
  }
  return { payloadBytes: write - payload, lz4 };
}
