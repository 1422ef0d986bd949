// The source's send side of the data path, as the driver uses it: one chunk ring and one writer per
// channel, shared by the pre-copy pass scheduler and the post-copy push scheduler (never both at once).
// It only wires them together; what each does is in its own file.
//
//   PageSender ─┬─ PassScheduler  (pass-scheduler.ts) ─┐
//               └─ PushScheduler  (push-scheduler.ts) ─┼─► ChunkRing (chunk-ring.ts) ─► BatchWriter ─► channel
//                                                      └─► encoder pool (pool.ts)

import type { Slab } from '../memory/slab.js';
import type { CacheUse } from './messages.js';
import { BatchWriter, type ByteLimiter, type OnBatch, type PassResult, type SegmentSink } from './batch-writer.js';
import { ChunkRing } from './chunk-ring.js';
import { PassScheduler, type Encoder } from './pass-scheduler.js';
import { PushScheduler, type PushOptions } from './push-scheduler.js';

export type { PassResult } from './batch-writer.js';

export class PageSender {
  readonly ring: ChunkRing;
  private readonly passes: PassScheduler;
  private readonly pushes: PushScheduler;

  constructor(slabs: readonly Slab[], pool: Encoder, channel: SegmentSink, options: { lz4: () => boolean; limiter?: ByteLimiter | null }) {
    this.ring = new ChunkRing(slabs);
    const writer = new BatchWriter(slabs, channel, options.limiter ?? null);
    this.passes = new PassScheduler(slabs, pool, this.ring, writer, { lz4: options.lz4 });
    this.pushes = new PushScheduler(slabs, pool, this.ring, writer, { lz4: options.lz4 });
  }

  /** One pass over every page in the snapshots (pass-scheduler.ts). */
  sendPass(iteration: number, cache: CacheUse, onBatch?: OnBatch, stop?: () => boolean): Promise<PassResult> {
    return this.passes.sendPass(iteration, cache, onBatch, stop);
  }

  /** Pages still marked in the snapshots (not yet taken by a push or a fault answer). */
  pending(): number {
    return this.pushes.pending();
  }

  /** The post-copy push over every region (push-scheduler.ts). */
  push(options: PushOptions): Promise<PassResult> {
    return this.pushes.push(options);
  }

}
