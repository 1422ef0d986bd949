// The arena chunks of each slab: the buffers the encoder workers write PAGE_BATCH frames into and the
// channel writes to the socket straight from. A chunk is free, encoding (a worker fills it), or
// writing (the socket has not taken it yet). The ring is the back-pressure of the source's data path:
// no task starts without a free chunk, so when the socket is slow chunks stay in "writing" and the
// schedulers stop starting work. It must not decide what to send (pass-scheduler.ts, push-scheduler.ts).
//
//   slab arena: [chunk 0][chunk 1] … [chunk n-1]        (n = arenaBytes / chunk size, at least 2)
//   chunk:      free ──take──► encoding ──writing──► writing ──release──► free
//                                  └──────── release (empty batch) ───────┘

import { ErrorCode, MemshiftError } from '../errors.js';
import type { Slab } from '../memory/slab.js';
import { Limits } from '../protocol/constants.js';
import { chunkBytes } from '../protocol/page-batch.js';

/** Payload bytes per chunk; entries per chunk. */
export const CHUNK_PAYLOAD_BYTES = 2 * 2 ** 20;
export const CHUNK_ENTRIES = Limits.MAX_PAGES_PER_BATCH;

export type ChunkState = 'free' | 'encoding' | 'writing';

/** Bytes of one chunk of `slab`'s arena, whole 4 KiB pages (the ring's chunk size). */
function chunkSizeOf(slab: Slab): number {
  return Math.ceil(chunkBytes(CHUNK_ENTRIES, payloadLimitOf(slab)) / 4096) * 4096;
}

function payloadLimitOf(slab: Slab): number {
  return Math.max(CHUNK_PAYLOAD_BYTES, 16 * slab.layout.pageSize);
}

/**
 * Maps the pages of the first `count` chunks of `slab`'s arena (one write per 4 KiB; a chunk's bytes are
 * never read before they are written). The ring hands out chunk 0 first and takes back the last one
 * released first, so a scheduler that never holds more than `count` chunks uses exactly these. Mapped
 * beforehand, a first pass does not pay the first touches (a 6 MiB chunk took ~3 ms here).
 */
export function mapFirstChunks(slab: Slab, count: number): void {
  const bytes = Math.min(slab.layout.arenaBytes, count * chunkSizeOf(slab));
  const u8 = new Uint8Array(slab.memory.buffer, slab.layout.arena, bytes);
  for (let i = 0; i < bytes; i += 4096) u8[i] = 0;
}

export class ChunkRing {
  private readonly free: number[][];
  private readonly states: Map<number, ChunkState>[];
  private readonly limits: number[];
  private readonly counts: number[];

  constructor(slabs: readonly Slab[]) {
    this.limits = slabs.map(payloadLimitOf);
    this.free = slabs.map((s) => {
      const size = chunkSizeOf(s);
      const n = Math.floor(s.layout.arenaBytes / size);
      if (n < 2) throw new MemshiftError(ErrorCode.INVALID_ARGUMENT, `slab arena of ${s.layout.arenaBytes} bytes holds fewer than 2 chunks of ${size}`, { field: 'arenaBytes' });
      // Reversed so that take() hands out chunk 0 first.
      return Array.from({ length: n }, (_, k) => s.layout.arena + (n - 1 - k) * size);
    });
    this.counts = this.free.map((f) => f.length);
    this.states = this.free.map((f) => new Map(f.map((c) => [c, 'free' as ChunkState])));
  }

  /** Chunks in slab `slab`'s arena. */
  capacity(slab: number): number {
    return this.counts[slab];
  }

  /** Free chunks of slab `slab`. */
  available(slab: number): number {
    return this.free[slab].length;
  }

  /** Most payload bytes one chunk of slab `slab` takes. */
  payloadLimit(slab: number): number {
    return this.limits[slab];
  }

  /** A free chunk of slab `slab` (its byte offset in the slab's memory), now encoding; null when none is free. */
  take(slab: number): number | null {
    const chunk = this.free[slab].pop();
    if (chunk === undefined) return null;
    this.states[slab].set(chunk, 'encoding');
    return chunk;
  }

  /** The chunk's batch goes to the socket. */
  writing(slab: number, chunk: number): void {
    this.expect(slab, chunk, 'encoding');
    this.states[slab].set(chunk, 'writing');
  }

  /** The socket took the chunk's batch, or it held nothing: free again. */
  release(slab: number, chunk: number): void {
    const state = this.states[slab].get(chunk);
    if (state === undefined || state === 'free') throw new Error(`chunk ${chunk} of slab ${slab} released while ${state ?? 'unknown'}`);
    this.states[slab].set(chunk, 'free');
    this.free[slab].push(chunk);
  }

  stateOf(slab: number, chunk: number): ChunkState | undefined {
    return this.states[slab].get(chunk);
  }

  private expect(slab: number, chunk: number, state: ChunkState): void {
    const now = this.states[slab].get(chunk);
    if (now !== state) throw new Error(`chunk ${chunk} of slab ${slab} is ${now ?? 'unknown'}, expected ${state}`);
  }
}
