// Sends one pass: every page marked in the slabs' snapshot bitmaps, as PAGE_BATCH frames that the
// encoder pool builds in arena chunks (chunk-ring.ts) and the writer sends straight from them.
//
//   slab:     [segment 0      ][segment 1      ] …       SEGMENT_PAGES each, whole bitmap words
//   segment:  [sent ……… cursor▲ still marked ……]         one task at a time walks it
//   tasks in flight ≤ min(pool's tasksInFlight, free chunks), and tasks + writes ≤ that + MAX_WRITES_AHEAD
//                                                        ← back-pressure: a slow socket keeps chunks busy
//
// A task stops when its chunk is full and the next one resumes at its cursor, so workers never share
// bitmap words or XBZRLE slots of the same pages. It must not decide what a pass contains (the driver
// synced the snapshot before) nor write to the socket itself (batch-writer.ts).

import { kernelsOf, type Slab } from '../memory/slab.js';
import { emptyPassResult, type BatchWriter, type OnBatch, type PassResult } from './batch-writer.js';
import { CHUNK_ENTRIES, type ChunkRing } from './chunk-ring.js';
import type { CacheUse, EncodeRequest, EncodeResult } from './messages.js';

export type { PassResult } from './batch-writer.js';

/**
 * Chunks written and not yet taken by the socket beyond those being encoded: enough to keep a fast link
 * busy, few enough that on a slow one pages are encoded shortly before they go (fresh for the dirty
 * log, and a compression decision taken mid-pass applies to what follows it, not after a full ring).
 */
export const MAX_WRITES_AHEAD = 2;

/** Pages per segment: 64 MiB of 4 KiB pages, a multiple of 64 so segments own whole bitmap words. */
export const SEGMENT_PAGES = 16384;

/** The part of the encoder pool (pool.ts EncoderPool) the schedulers use. */
export interface Encoder {
  readonly tasksInFlight: number;
  encode(req: EncodeRequest): Promise<EncodeResult>;
}

interface Segment {
  slab: number;
  cursor: number;
  end: number;
  busy: boolean;
}

export class PassScheduler {
  constructor(
    private readonly slabs: readonly Slab[],
    private readonly pool: Encoder,
    private readonly ring: ChunkRing,
    private readonly writer: BatchWriter,
    /** `lz4()`: whether to try LZ4 on raw pages, asked at each task (the source may switch mid-pass). */
    private readonly options: { lz4: () => boolean },
  ) {}

  /**
   * Sends every page in the snapshots. `onBatch` sees each batch once written. Resolves once the
   * socket has taken every frame of the pass; rejects with the first encode or write failure, once the
   * tasks and writes in flight have ended. Once
   * `stop()` says so (asked before each task), no task starts: the pass resolves when those in flight
   * are written, and the pages it did not reach stay marked in the snapshots.
   */
  sendPass(iteration: number, cache: CacheUse, onBatch?: OnBatch, stop?: () => boolean): Promise<PassResult> {
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
    const result = emptyPassResult();
    const maxTasks = this.pool.tasksInFlight;
    let tasks = 0;
    let writes = 0;
    let next = 0;
    let failure: { err: unknown } | null = null;
    return new Promise<PassResult>((resolve, reject) => {
      // The first failure is the pass's; it rejects once nothing is in flight any more, so that no
      // encoder of this pass still touches the snapshot, the hashes, the cache or a chunk after it.
      const settleFailure = (): void => {
        if (failure !== null && tasks === 0 && writes === 0) reject(failure.err);
      };
      const fail = (err: unknown): void => {
        failure ??= { err };
        settleFailure();
      };
      let stopped = false;
      const finishIfDone = (): void => {
        if (failure !== null || tasks > 0 || writes > 0) return;
        if (!stopped && segments.some((s) => s.cursor < s.end)) return;
        result.ms = performance.now() - t0;
        resolve(result);
      };
      const pump = (): void => {
        // Every task and write that ends comes through here (or through fail): the last one settles a failed pass.
        if (failure !== null) {
          settleFailure();
          return;
        }
        stopped ||= stop?.() === true;
        let scanned = stopped ? segments.length : 0;
        while (tasks < maxTasks && tasks + writes < maxTasks + MAX_WRITES_AHEAD && scanned < segments.length) {
          const seg = segments[next];
          next = (next + 1) % segments.length;
          scanned++;
          if (seg.busy || seg.cursor >= seg.end || this.ring.available(seg.slab) === 0) continue;
          start(seg);
          scanned = 0;
        }
        finishIfDone();
      };
      const start = (seg: Segment): void => {
        const chunk = this.ring.take(seg.slab)!;
        seg.busy = true;
        tasks++;
        this.pool.encode({
          slab: seg.slab, from: seg.cursor, to: seg.end, chunk, maxEntries: CHUNK_ENTRIES,
          payloadLimit: this.ring.payloadLimit(seg.slab), iteration, cache, lz4: this.options.lz4(),
        }).then((r) => {
          tasks--;
          seg.busy = false;
          seg.cursor = r.nextPage;
          if (r.entries === 0) {
            this.ring.release(seg.slab, chunk);
            pump();
            return;
          }
          writes++;
          this.ring.writing(seg.slab, chunk);
          this.writer.write(seg.slab, r, result, onBatch).then(() => {
            writes--;
            this.ring.release(seg.slab, chunk);
            pump();
          }, (err) => {
            writes--;
            this.ring.release(seg.slab, chunk);
            fail(err);
          });
          pump();
        }, (err) => {
          tasks--;
          this.ring.release(seg.slab, chunk);
          fail(err);
        });
      };
      pump();
    });
  }
}
