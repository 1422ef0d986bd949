// Sends one pass: every page marked in the slabs' snapshot bitmaps, as PAGE_BATCH frames built by the
// encoder pool in arena chunks and written to the channel straight from those chunks.
//
//   slab arena: [chunk 0][chunk 1] … [chunk n-1]      each chunk: free → encoding → writing → free
//
// A slab is cut into segments of SEGMENT_PAGES; one task at a time per segment walks it with a cursor
// (a task stops when its chunk is full and the next resumes there), so workers never share bitmap
// words or XBZRLE slots of the same pages. In-flight work is bounded by the chunks, which is the
// back-pressure: when the socket is slow, chunks stay in "writing" and no new task starts.

import { ErrorCode, MemshiftError } from '../../errors.js';
import { kernelsOf, type Slab } from '../../memory/slab.js';
import type { EncoderPool } from '../../pipeline/pool.js';
import type { EncodeResult } from '../../pipeline/messages.js';
import { chunkBytes } from '../../protocol/page-batch.js';
import { Limits } from '../../protocol/constants.js';
import { bufferOf } from '../../wasm/views.js';
import type { FrameLink } from '../../transport/channel.js';
import type { RateLimiter } from '../../transport/rate-limit.js';
import { emptyCounts, type EncodingCounts } from '../metrics.js';

/** Pages per segment: 64 MiB of 4 KiB pages, a multiple of 64 so segments own whole bitmap words. */
export const SEGMENT_PAGES = 16384;
/** Payload bytes per chunk; entries per chunk. */
export const CHUNK_PAYLOAD_BYTES = 4 * 2 ** 20;
export const CHUNK_ENTRIES = Limits.MAX_PAGES_PER_BATCH;

export interface PassResult {
  pages: number;
  bytes: number;
  ms: number;
  counts: EncodingCounts;
  batches: number;
}

interface Segment {
  slab: number;
  cursor: number;
  end: number;
  busy: boolean;
}

export class PageSender {
  private readonly slabs: readonly Slab[];
  private readonly pool: EncoderPool;
  private readonly channel: FrameLink;
  private readonly freeChunks: number[][];
  private readonly payloadLimit: number[];
  private readonly lz4: boolean;
  private readonly limiter: RateLimiter | null;

  constructor(slabs: readonly Slab[], pool: EncoderPool, channel: FrameLink, options: { lz4: boolean; limiter?: RateLimiter | null }) {
    this.slabs = slabs;
    this.pool = pool;
    this.channel = channel;
    this.lz4 = options.lz4;
    this.limiter = options.limiter ?? null;
    this.payloadLimit = slabs.map((s) => Math.max(CHUNK_PAYLOAD_BYTES, 16 * s.layout.pageSize));
    this.freeChunks = slabs.map((s, i) => {
      const size = Math.ceil(chunkBytes(CHUNK_ENTRIES, this.payloadLimit[i]) / 4096) * 4096;
      const n = Math.floor(s.layout.arenaBytes / size);
      if (n < 2) throw new MemshiftError(ErrorCode.INVALID_ARGUMENT, `slab arena of ${s.layout.arenaBytes} bytes holds fewer than 2 chunks of ${size}`, { field: 'arenaBytes' });
      return Array.from({ length: n }, (_, k) => s.layout.arena + k * size);
    });
  }

  /**
   * Sends every page in the snapshots. `onBatch` sees each batch once written. Resolves once the
   * socket has taken every frame of the pass.
   */
  sendPass(iteration: number, xbzrle: boolean, onBatch?: (r: EncodeResult, bytes: number) => void): Promise<PassResult> {
    const t0 = performance.now();
    const segments: Segment[] = [];
    this.slabs.forEach((s, i) => {
      const k = kernelsOf(s).raw;
      for (let from = 0; from < s.pageCount; from += SEGMENT_PAGES) {
        const end = Math.min(s.pageCount, from + SEGMENT_PAGES);
        // Skip segments with nothing to send without a worker round trip.
        if (k.bitmapCount(s.layout.snapshot + from / 8, Math.ceil((end - from) / 64)) > 0) segments.push({ slab: i, cursor: from, end, busy: false });
      }
    });
    const result: PassResult = { pages: 0, bytes: 0, ms: 0, counts: emptyCounts(), batches: 0 };
    const maxTasks = this.pool.size * 2;
    let tasks = 0;
    let writes = 0;
    let next = 0;
    let failed = false;
    return new Promise<PassResult>((resolve, reject) => {
      const fail = (err: unknown): void => {
        if (failed) return;
        failed = true;
        reject(err);
      };
      const finishIfDone = (): void => {
        if (failed || tasks > 0 || writes > 0) return;
        if (segments.some((s) => s.cursor < s.end)) return;
        result.ms = performance.now() - t0;
        resolve(result);
      };
      const pump = (): void => {
        if (failed) return;
        let scanned = 0;
        while (tasks < maxTasks && scanned < segments.length) {
          const seg = segments[next];
          next = (next + 1) % segments.length;
          scanned++;
          if (seg.busy || seg.cursor >= seg.end || this.freeChunks[seg.slab].length === 0) continue;
          start(seg);
          scanned = 0;
        }
        finishIfDone();
      };
      const start = (seg: Segment): void => {
        const chunk = this.freeChunks[seg.slab].pop()!;
        seg.busy = true;
        tasks++;
        this.pool.encode({
          slab: seg.slab, from: seg.cursor, to: seg.end, chunk, maxEntries: CHUNK_ENTRIES,
          payloadLimit: this.payloadLimit[seg.slab], iteration, xbzrle, lz4: this.lz4,
        }).then((r) => {
          tasks--;
          seg.busy = false;
          seg.cursor = r.nextPage;
          if (r.entries === 0) {
            this.freeChunks[seg.slab].push(chunk);
            pump();
            return;
          }
          writes++;
          this.write(seg.slab, r, result, onBatch).then(() => {
            writes--;
            this.freeChunks[seg.slab].push(chunk);
            pump();
          }, fail);
          pump();
        }, (err) => {
          tasks--;
          fail(err);
        });
      };
      pump();
    });
  }

  /**
   * Writes an encoded batch's two segments straight from the slab's arena (after the rate limit, if
   * any) and accounts for it once the socket has taken them.
   */
  private async write(slab: number, r: EncodeResult, result: PassResult, onBatch?: (r: EncodeResult, bytes: number) => void): Promise<void> {
    const mem = this.slabs[slab].memory;
    const bytes = r.head[1] + r.payload[1];
    const parts = r.payload[1] > 0 ? [bufferOf(mem, r.head[0], r.head[1]), bufferOf(mem, r.payload[0], r.payload[1])] : [bufferOf(mem, r.head[0], r.head[1])];
    await this.limiter?.take(bytes);
    await this.channel.sendSegments(parts);
    result.pages += r.entries;
    result.bytes += bytes;
    result.batches++;
    result.counts.zero += r.zero;
    result.counts.raw += r.raw;
    result.counts.xbzrle += r.xbzrle;
    result.counts.lz4 += r.lz4;
    onBatch?.(r, bytes);
  }

  /** Pages still marked in the snapshots (not yet taken by a push or a fault answer). */
  pending(): number {
    let n = 0;
    for (const s of this.slabs) n += kernelsOf(s).raw.bitmapCount(s.layout.snapshot, s.layout.bitmapWords);
    return n;
  }

  /**
   * Post-copy push: sends the pages still in the snapshots, in the windows `next` proposes (region
   * pages; see push-planner.ts), until none are left. Each window becomes one task of at most its size,
   * so the first answers after a fault are small and fast; as many tasks are in flight as in a pass.
   */
  async pushWindows(regionId: number, next: () => { from: number; to: number; pages: number }, iteration: number,
    onBatch?: (r: EncodeResult, bytes: number) => void, stopped?: () => boolean): Promise<PassResult> {
    const t0 = performance.now();
    const result: PassResult = { pages: 0, bytes: 0, ms: 0, counts: emptyCounts(), batches: 0 };
    const indices = this.slabs.map((s, i) => (s.regionId === regionId ? i : -1)).filter((i) => i >= 0);
    const perSlab = this.slabs[indices[0]].pageCount;
    const inflight = new Set<Promise<void>>();
    let failure: unknown = null;
    while (failure === null && !(stopped?.() ?? false) && this.pending() > 0) {
      const w = next();
      const index = indices[Math.floor(w.from / perSlab)];
      const slab = this.slabs[index];
      const from = w.from - slab.firstPage;
      const to = Math.min(slab.pageCount, w.to - slab.firstPage);
      const k = kernelsOf(slab).raw;
      const empty = k.bitmapNextSet(slab.layout.snapshot, to, from) < 0;
      if (empty || this.freeChunks[index].length === 0 || inflight.size >= this.pool.size * 2) {
        if (inflight.size > 0) await Promise.race(inflight);
        if (empty) continue;
        if (this.freeChunks[index].length === 0) continue;
      }
      const chunk = this.freeChunks[index].pop()!;
      const maxEntries = Math.max(1, Math.min(CHUNK_ENTRIES, w.pages));
      const payloadLimit = Math.min(this.payloadLimit[index], Math.max(slab.layout.pageSize, w.pages * slab.layout.pageSize));
      const task: Promise<void> = (async () => {
        try {
          const r = await this.pool.encode({ slab: index, from, to, chunk, maxEntries, payloadLimit, iteration, xbzrle: false, lz4: this.lz4 });
          if (r.entries > 0) await this.write(index, r, result, onBatch);
        } catch (err) {
          failure = err;
        } finally {
          this.freeChunks[index].push(chunk);
        }
      })();
      inflight.add(task);
      void task.then(() => inflight.delete(task));
    }
    await Promise.all(inflight);
    if (failure !== null) throw failure;
    result.ms = performance.now() - t0;
    return result;
  }
}
