// Typed envelopes between the source's driver and its encoder workers. A task names pages by slab
// and range, and a chunk of that slab's arena to write into; no page travels in a message. A response
// is `{ok: true, value}` or `{ok: false, code, message}`: errors cross the thread boundary as data
// with a stable code, never as a thrown class (structured clone drops prototypes).

import type { Slab } from '../memory/slab.js';

/**
 * Slots of the encoder pool's control board (memory/shared-board.ts):
 *   [0] NEXT_AGENT  scratch slot the next starting worker takes (Atomics.add)
 *   [1] NICENESS    niceness the workers take before their next task (0 = leave as is)
 */
export const EncoderBoard = { NEXT_AGENT: 0, NICENESS: 1, SLOTS: 2 } as const;

export interface EncoderWorkerData {
  /** Every slab of every region, in a fixed order: tasks refer to them by index. */
  slabs: Slab[];
  /** The pool's control board (slots in EncoderBoard). */
  control: SharedArrayBuffer;
  /** Zero-based region key base per slab (region id << 32), as a decimal string (bigint does not clone into workerData reliably across versions). */
  keyBases: string[];
}

/**
 * How a pass uses the XBZRLE cache: not at all (the first pass, or deltas off), deltas against it and
 * every page sent stored in it, or deltas against it and nothing stored (the final pass).
 */
export type CacheUse = 'off' | 'read-write' | 'read-only';

export interface EncodeRequest {
  slab: number;
  /** Slab-local page range [from, to) scanned in the slab's snapshot bitmap. */
  from: number;
  to: number;
  /** Byte offset of the output chunk in the slab's memory, and its capacity. */
  chunk: number;
  maxEntries: number;
  payloadLimit: number;
  iteration: number;
  /** The XBZRLE cache: not used (the first pass), used and updated, or read only (the final pass). */
  cache: CacheUse;
  /** Try LZ4 on raw pages. */
  lz4: boolean;
}

/** A hash-scan of a file-backed slab's pages [from, to) (slab-local). */
export interface ScanRequest {
  slab: number;
  from: number;
  to: number;
}

export interface EncodeResult {
  entries: number;
  /** Where the next task for this range starts (== to when the range is done). */
  nextPage: number;
  payloadBytes: number;
  zero: number;
  raw: number;
  xbzrle: number;
  lz4: number;
  /** The request asked for LZ4 (the batch went out the LZ4 way, even where no page of it compressed). */
  lz4Tried: boolean;
  cacheMisses: number;
  /** Wire segments in the slab's memory: [offset, length]. */
  head: [number, number];
  payload: [number, number];
  /** Page bytes the encoder read (entries × page size), for throughput accounting. */
  pageBytes: number;
}

export type Envelope<T> = { ok: true; value: T } | { ok: false; code: string; message: string };
