// Fixtures for the source's data path without a network: a small guest whose slabs hold two chunks
// each, a recording channel (optionally gated or failing), an encoder wrapper that counts tasks, and
// a check that applies what was sent to a fresh destination guest.

import * as assert from 'uvu/assert';
import { GuestMemory, type RegionSpec } from '../../src/memory/guest-memory.js';
import { kernelsOf } from '../../src/memory/slab.js';
import { BatchApplier } from '../../src/pipeline/apply.js';
import type { EncoderPool } from '../../src/pipeline/pool.js';
import type { EncodeRequest, EncodeResult } from '../../src/pipeline/messages.js';
import type { Encoder } from '../../src/pipeline/pass-scheduler.js';
import { FRAME_HEADER_BYTES, readFrameHeader } from '../../src/protocol/frame.js';
import { batchEntry, chunkBytes, decodeBatch } from '../../src/protocol/page-batch.js';
import { CHUNK_ENTRIES, CHUNK_PAYLOAD_BYTES } from '../../src/pipeline/chunk-ring.js';
import { seeded } from './seeded.js';

export const PS = 4096;
/** Bytes of one chunk of the ring (4 KiB pages: its payload and the entries of a full batch). */
export const CHUNK_BYTES = Math.ceil(chunkBytes(CHUNK_ENTRIES, CHUNK_PAYLOAD_BYTES) / 4096) * 4096;
/** Arena bytes that hold exactly two chunks. */
export const TWO_CHUNKS = 2 * CHUNK_BYTES + (CHUNK_BYTES >> 1);

export function spec(id: number, pageCount: number): RegionSpec {
  return { id, name: `r${id}`, kind: 'ram', pageSize: PS, pageCount };
}

/** A guest with slabs of `slabPages` pages and arenas of two chunks. */
export function smallGuest(specs: readonly RegionSpec[], slabPages = 1024): GuestMemory {
  return GuestMemory.allocate(specs, { maxSlabBytes: slabPages * PS, arenaBytes: TWO_CHUNKS });
}

/**
 * Gives `pages` of region `regionId` seeded content (every third one stays zero) and marks them in
 * the snapshot bitmaps, as a sync would. Returns the marked pages.
 */
export function markPages(mem: GuestMemory, regionId: number, pages: Iterable<number>, seed = 1): number[] {
  const rng = seeded(seed + regionId * 1000);
  const marked: number[] = [];
  for (const p of pages) {
    if (p % 3 !== 0) rng.fill(mem.pageView(regionId, p));
    const { slab, local } = mem.locate(regionId, p);
    kernelsOf(slab).bitmapSet(slab.layout.snapshot, slab.pageCount, local);
    marked.push(p);
  }
  return marked;
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/** Pages still marked in the snapshots of a region. */
export function stillMarked(mem: GuestMemory, regionId: number): number {
  let n = 0;
  for (const s of mem.slabsOf(regionId)) n += kernelsOf(s).bitmapCount(s.layout.snapshot, s.pageCount);
  return n;
}

/** A channel that keeps a copy of every frame; `gate` holds each send until the test releases it. */
export class RecordingChannel {
  readonly frames: Uint8Array[] = [];
  readonly waiting: Array<() => void> = [];
  failWith: Error | null = null;

  constructor(private readonly gate = false) {}

  sendSegments(segments: readonly Uint8Array[]): Promise<void> {
    if (this.failWith !== null) return Promise.reject(this.failWith);
    const frame = new Uint8Array(segments.reduce((n, s) => n + s.length, 0));
    let at = 0;
    for (const s of segments) {
      frame.set(s, at);
      at += s.length;
    }
    this.frames.push(frame);
    if (!this.gate) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Lets the oldest held send complete. */
  releaseOne(): boolean {
    const r = this.waiting.shift();
    r?.();
    return r !== undefined;
  }
}

/** Wraps the real pool, recording each request and how many tasks are outstanding. */
export class CountingEncoder implements Encoder {
  readonly requests: EncodeRequest[] = [];
  started = 0;

  constructor(private readonly pool: EncoderPool, private readonly onStart?: (req: EncodeRequest) => void) {}

  get tasksInFlight(): number {
    return this.pool.tasksInFlight;
  }

  encode(req: EncodeRequest): Promise<EncodeResult> {
    this.requests.push(req);
    this.started++;
    this.onStart?.(req);
    return this.pool.encode(req);
  }
}

/** Region id → pages, over every frame sent (asserts each frame is a valid PAGE_BATCH). */
export function pagesSent(mem: GuestMemory, frames: readonly Uint8Array[]): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const f of frames) {
    const h = readFrameHeader(f, 0, f.length);
    assert.ok(h !== null, 'a whole frame');
    const view = decodeBatch(f, FRAME_HEADER_BYTES, h.bodyLength, h.checkedLength, (id) => {
      const r = mem.regions.find((x) => x.id === id);
      return r === undefined ? undefined : { pageSize: r.pageSize, pageCount: r.pageCount };
    }, 0);
    const list = out.get(view.regionId) ?? [];
    for (let i = 0; i < view.count; i++) list.push(batchEntry(view, i).page);
    out.set(view.regionId, list);
  }
  return out;
}

/** Applies every frame to a fresh guest of the same shape and asserts `pages` of each region arrived bit for bit. */
export function assertDelivered(source: GuestMemory, frames: readonly Uint8Array[], pages: ReadonlyMap<number, readonly number[]>): void {
  const dest = GuestMemory.allocate(source.regions.map((r) => ({ ...r })), { maxSlabBytes: 64 << 20, arenaBytes: 5 << 20 });
  const applier = new BatchApplier(dest, 0, 0);
  for (const f of frames) {
    const h = readFrameHeader(f, 0, f.length)!;
    applier.apply(f, FRAME_HEADER_BYTES, h.bodyLength, h.checkedLength);
  }
  for (const [regionId, list] of pages) {
    for (const p of list) {
      assert.ok(Buffer.from(dest.pageView(regionId, p)).equals(Buffer.from(source.pageView(regionId, p))), `region ${regionId} page ${p} arrived intact`);
    }
  }
}

/** Asserts each expected page was sent exactly once, and nothing else. */
export function assertSentOnce(sent: ReadonlyMap<number, readonly number[]>, expected: ReadonlyMap<number, readonly number[]>): void {
  for (const [regionId, pages] of expected) {
    const got = [...(sent.get(regionId) ?? [])].sort((a, b) => a - b);
    assert.equal(got, [...pages].sort((a, b) => a - b), `region ${regionId}: every marked page once`);
  }
  for (const regionId of sent.keys()) assert.ok(expected.has(regionId), `nothing sent for unmarked region ${regionId}`);
}

/** Resolves after `n` turns of the event loop (lets workers and promises settle without a clock). */
export async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Waits until `done()`, checking every millisecond or so; `guard` checks only stop a hang. Returns done(). */
export async function until(done: () => boolean, guard = 30_000): Promise<boolean> {
  for (let i = 0; i < guard && !done(); i++) await new Promise<void>((resolve) => setTimeout(resolve, 1));
  return done();
}
