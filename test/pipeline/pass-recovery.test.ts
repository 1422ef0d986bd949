// Pre-copy passes over a link that keeps dying, recovered as the source does it (PAGE_HASHES from the
// destination → markDiverged here → the pass resumes), through the real scheduler, encoder pool and
// applier, with XBZRLE deltas in play. Asserted: right after each recovery every page the destination
// lacks is marked to go again (the batches that died with the link took their pages out of the
// snapshot, so nothing else would resend them), and once a resumed pass completes the destination's
// memory equals the source's bit for bit; for 0 and 2 encoder threads. Each test also counts the lost
// passes, the pages only recovery could restore and the XBZRLE pages applied, and requires each to be
// non-zero, so that it cannot pass without having lost anything.
//
//   source ─► PassScheduler ─► LossyLink ─► BatchApplier ─► destination
//      ▲       (n batches, then every send fails)                 │
//      └── markDiverged ◄── PAGE_HASHES (pageHashFrames) ◄────────┘

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode, MemshiftError } from '../../src/errors.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { kernelsOf } from '../../src/memory/slab.js';
import { markDiverged, pageHashFrames } from '../../src/migration/page-hashes.js';
import { BatchApplier } from '../../src/pipeline/apply.js';
import { BatchWriter, type SegmentSink } from '../../src/pipeline/batch-writer.js';
import { ChunkRing } from '../../src/pipeline/chunk-ring.js';
import { PassScheduler } from '../../src/pipeline/pass-scheduler.js';
import { EncoderPool } from '../../src/pipeline/pool.js';
import { Capability } from '../../src/protocol/constants.js';
import { decodePageHashes } from '../../src/protocol/control.js';
import { FRAME_HEADER_BYTES, readFrameHeader } from '../../src/protocol/frame.js';
import { assertSameMemory, bitmapPages, differentPages } from '../_support/guest-helpers.js';
import { PS, TWO_CHUNKS, range, spec, stillMarked } from '../_support/pipeline-helpers.js';
import { seeded, type Rng } from '../_support/seeded.js';

// 8 MiB in four slabs: a pass is a handful of batches, so a link that dies after 0..3 of them loses
// most passes part-way, with batches of other slabs still in flight.
const PAGES = 2048;
const SLAB_PAGES = 512;
const ROUNDS = 4;
const SEEDS = [1, 2, 3];

/** Applies what it is given to the destination until `deliveries` sends have gone; every send after that fails. */
class LossyLink implements SegmentSink {
  lost = false;
  readonly applyErrors: unknown[] = [];

  constructor(private readonly applier: BatchApplier, private deliveries: number) {}

  async sendSegments(segments: readonly Uint8Array[]): Promise<void> {
    // A turn of the event loop first, so that the other slabs' tasks and writes overlap the loss.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (this.deliveries-- <= 0) {
      this.lost = true;
      throw new MemshiftError(ErrorCode.CONNECTION_CLOSED, 'link lost');
    }
    const frame = Buffer.concat(segments);
    const h = readFrameHeader(frame, 0, frame.length)!;
    try {
      this.applier.apply(frame, FRAME_HEADER_BYTES, h.bodyLength, h.checkedLength);
    } catch (err) {
      // Kept apart, so that a batch the destination refused (a delta against content it never got) is not taken for the loss.
      this.applyErrors.push(err);
      throw err;
    }
  }
}

function guest(cacheBytes = 0): GuestMemory {
  return GuestMemory.allocate([spec(0, PAGES)], { maxSlabBytes: SLAB_PAGES * PS, arenaBytes: TWO_CHUNKS, cacheBytes });
}

/** What a guest does between syncs: a fifth of `pages` go zero, the rest get 64 random bytes; all are marked, as a sync marks them. */
function dirty(mem: GuestMemory, pages: readonly number[], rng: Rng): void {
  for (const p of pages) {
    const v = mem.pageView(0, p);
    if (rng.chance(0.2)) v.fill(0);
    else for (let i = 0; i < 64; i++) v[rng.below(PS)] = rng.u32() & 0xff;
    const { slab, local } = mem.locate(0, p);
    kernelsOf(slab).bitmapSet(slab.layout.snapshot, slab.pageCount, local);
  }
}

interface TrialCounts {
  lostPasses: number;
  /** Pages markDiverged marked again. */
  resent: number;
  /** Pages the destination lacked after a loss that the snapshot no longer held: only recovery sends them. */
  orphaned: number;
  xbzrle: number;
}

async function trial(seed: number, encoders: number): Promise<TrialCounts> {
  const rng = seeded(seed);
  const src = guest(PAGES * PS);
  const dst = guest();
  const slabs = src.allSlabs();
  const applier = new BatchApplier(dst, Capability.XBZRLE, 0);
  const counts: TrialCounts = { lostPasses: 0, resent: 0, orphaned: 0, xbzrle: 0 };
  const pool = new EncoderPool(slabs, encoders);
  try {
    /** One pass (or resumption) over a new link, as a reconnect gets; true when the link died under it. */
    const pass = async (iteration: number, deliveries: number, where: string): Promise<boolean> => {
      const link = new LossyLink(applier, deliveries);
      // A recovery resumes over a new ring on the same arenas and the same pool, as the source does.
      const passes = new PassScheduler(slabs, pool, new ChunkRing(slabs), new BatchWriter(slabs, link), { lz4: () => false });
      const failure = await passes.sendPass(iteration, iteration > 1 ? 'read-write' : 'off').then(() => null, (err: Error & { code?: string }) => err);
      assert.is(link.applyErrors.length, 0, `${where}: the destination refused a batch: ${String(link.applyErrors[0])}`);
      if (failure === null) return false;
      assert.ok(link.lost && failure.code === ErrorCode.CONNECTION_CLOSED, `${where}: the pass failed, not by the lost link: ${failure.code}: ${failure.message}`);
      return true;
    };
    const recover = (where: string): void => {
      const queued = bitmapPages(src, 'snapshot');
      const lacking = differentPages(dst, src);
      counts.orphaned += lacking.filter((p) => !queued.has(p)).length;
      for (const f of pageHashFrames(dst.region(0), dst.slabsOf(0))) {
        const h = readFrameHeader(f, 0, f.length)!;
        counts.resent += markDiverged(src.region(0), src.slabsOf(0), decodePageHashes(f, FRAME_HEADER_BYTES, h.bodyLength));
      }
      const marked = bitmapPages(src, 'snapshot');
      const missed = lacking.filter((p) => !marked.has(p));
      assert.is(missed.length, 0, `${where}: pages the destination lacks but recovery left unmarked, first ${missed[0]}`);
    };

    const all = range(0, PAGES);
    dirty(src, all, rng);
    for (let round = 0, iteration = 1; round < ROUNDS; round++, iteration++) {
      const where = `seed ${seed}, ${encoders} encoders, pass ${iteration}`;
      let lost = await pass(iteration, rng.below(4), where);
      while (lost) {
        counts.lostPasses++;
        recover(where);
        // Each resumption delivers at least one batch, so the pass ends.
        lost = await pass(iteration, 1 + rng.below(3), where);
      }
      assert.is(stillMarked(src, 0), 0, `${where}: the completed pass consumed the snapshot`);
      assertSameMemory(dst, src, `${where}, after ${counts.lostPasses} lost passes so far`);
      dirty(src, all.filter(() => rng.chance(0.25)), rng);
    }
    counts.xbzrle = applier.totals.counts.xbzrle;
    return counts;
  } finally {
    await pool.close();
  }
}

for (const encoders of [0, 2]) {
  const how = encoders === 0 ? 'encoded inline' : `${encoders} encoder threads`;
  test(`after every lost pass, recovery by page hashes marks each page the destination lacks, and the resumed pass leaves it equal to the source bit for bit (${how})`, async () => {
    const total: TrialCounts = { lostPasses: 0, resent: 0, orphaned: 0, xbzrle: 0 };
    for (const seed of SEEDS) {
      const c = await trial(seed, encoders);
      total.lostPasses += c.lostPasses;
      total.resent += c.resent;
      total.orphaned += c.orphaned;
      total.xbzrle += c.xbzrle;
    }
    // The guard: without losses, lost batches and deltas the assertions above would hold vacuously.
    assert.ok(total.lostPasses > 0, `passes were lost (${total.lostPasses})`);
    assert.ok(total.orphaned > 0, `losses took pages that only recovery could send again (${total.orphaned})`);
    assert.ok(total.resent >= total.orphaned, `recovery marked those pages again (${total.resent} for ${total.orphaned})`);
    assert.ok(total.xbzrle > 0, `XBZRLE deltas were applied (${total.xbzrle})`);
  });
}

test.run();
