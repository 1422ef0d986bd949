// Writes encoded batches to the channel straight from their arena chunks, and counts what a pass or a
// push sent. Shared by the pass and push schedulers; it knows nothing of what to send next.
//
//   chunk in slab memory: [head: frame + batch header + entries][… unused entries …][payload]
//                          └─────── segment 1 ───────┘                              └ segment 2 ┘
//   → rate limit (if any) → channel.sendSegments([head, payload]) → resolve once the socket took both

import type { Slab } from '../memory/slab.js';
import { emptyEncodingCounts, type EncodingCounts } from '../protocol/encodings/index.js';
import { bufferOf } from '../wasm/views.js';
import type { EncodeResult } from './messages.js';

/** What a pass (or the post-copy push) sent. */
export interface PassResult {
  pages: number;
  bytes: number;
  ms: number;
  counts: EncodingCounts;
  batches: number;
}

export function emptyPassResult(): PassResult {
  return { pages: 0, bytes: 0, ms: 0, counts: emptyEncodingCounts(), batches: 0 };
}

/** The part of a channel the data path writes through (transport/channel.ts Channel). */
export interface SegmentSink {
  sendSegments(segments: readonly Uint8Array[]): Promise<void>;
}

/** The part of a rate limiter the data path waits on (transport/rate-limit.ts RateLimiter). */
export interface ByteLimiter {
  take(bytes: number): Promise<void> | null;
}

/** Called once per batch the socket has taken, with its wire bytes. */
export type OnBatch = (r: EncodeResult, bytes: number) => void;

export class BatchWriter {
  constructor(
    private readonly slabs: readonly Slab[],
    private readonly channel: SegmentSink,
    private readonly limiter: ByteLimiter | null = null,
  ) {}

  /**
   * Writes an encoded batch's two segments from slab `slab`'s memory (after the rate limit, if any)
   * and accounts for it in `result` once the socket has taken them.
   */
  async write(slab: number, r: EncodeResult, result: PassResult, onBatch?: OnBatch): Promise<void> {
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
}
