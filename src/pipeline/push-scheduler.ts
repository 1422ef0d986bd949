// The post-copy background push: sends every page still marked in the snapshots of every region, once,
// while the destination's guest runs and faults the pages it touches (those are answered on the urgent
// channel by the fault thread, which takes a page's bit first if it gets there first). One PushPlanner
// per region proposes windows in region pages; a fault moves the pivot of its region's planner and makes
// that region the current one, so the next window starts right after the faulting page.
//
//   faults() ─► planner[region].onFault(page) ─► current = region
//   loop: current region (or the next with pages left) ─► window ─► slab range ─► task (≤ window pages)
//         ─► encode into a free chunk ─► write ─► chunk free         ends when no region has pages left
//
// Hazard: it must never loop without awaiting (the fault thread and the sockets need the event loop):
// when no task can start it awaits one in flight, or yields with setImmediate; after
// EMPTY_WINDOWS_PER_TURN empty windows in a row it yields too.

import { kernelsOf, type Slab } from '../memory/slab.js';
import { emptyPassResult, type BatchWriter, type OnBatch, type PassResult } from './batch-writer.js';
import { CHUNK_ENTRIES, type ChunkRing } from './chunk-ring.js';
import type { Encoder } from './pass-scheduler.js';
import { PushPlanner, type PushWindow } from './push-planner.js';

/** A page the destination's guest faulted on, in region pages. */
export interface PushFault {
  readonly regionId: number;
  readonly page: number;
}

/** What the scheduler needs of a planner (PushPlanner is the one in use). */
export interface WindowPlanner {
  onFault(page: number): void;
  /** Region pages [from, to), and how many pages the task for it may hold. */
  nextWindow(): PushWindow & { pages: number };
}

export interface PushOptions {
  /** Iteration number stamped on the batches. */
  iteration: number;
  /** Faults seen since the last call, oldest first (the caller's fault ring). */
  faults?: () => readonly PushFault[];
  /** True once the push must end early (link lost); checked before each window. */
  stopped?: () => boolean;
  /** Sees each batch once the socket has taken it. */
  onBatch?: OnBatch;
  /** The planner of a region (default: a PushPlanner over its pages). */
  planner?: (regionId: number, pageCount: number) => WindowPlanner;
}

/** Empty windows proposed in a row before the scheduler yields to the event loop. */
export const EMPTY_WINDOWS_PER_TURN = 64;

interface RegionSlabs {
  id: number;
  pageCount: number;
  /** Indices into the scheduler's slabs, by first page. */
  slabs: number[];
}

interface Task {
  slab: number;
  /** Slab-local pages [from, to). */
  from: number;
  to: number;
  pages: number;
}

export class PushScheduler {
  private readonly regions: RegionSlabs[] = [];

  constructor(
    private readonly slabs: readonly Slab[],
    private readonly pool: Encoder,
    private readonly ring: ChunkRing,
    private readonly writer: BatchWriter,
    private readonly options: { lz4: () => boolean },
  ) {
    const byId = new Map<number, RegionSlabs>();
    slabs.forEach((s, i) => {
      let r = byId.get(s.regionId);
      if (r === undefined) {
        r = { id: s.regionId, pageCount: 0, slabs: [] };
        byId.set(s.regionId, r);
        this.regions.push(r);
      }
      r.slabs.push(i);
      r.pageCount = Math.max(r.pageCount, s.firstPage + s.pageCount);
    });
    for (const r of this.regions) r.slabs.sort((a, b) => slabs[a].firstPage - slabs[b].firstPage);
  }

  /** Pages still marked in the snapshots of region `regionId`, or of every region. */
  pending(regionId?: number): number {
    let n = 0;
    for (const r of this.regions) if (regionId === undefined || r.id === regionId) n += this.pendingIn(r);
    return n;
  }

  /**
   * Pushes every page still marked in any region's snapshot, steered by `faults`, until none is left
   * or `stopped()`. Resolves once the socket has taken every batch started; rejects with the first
   * encode or write failure (after the tasks in flight have ended).
   */
  async push(options: PushOptions): Promise<PassResult> {
    const t0 = performance.now();
    const result = emptyPassResult();
    const make = options.planner ?? ((_id: number, pageCount: number) => new PushPlanner(pageCount));
    const planners = this.regions.map((r) => make(r.id, r.pageCount));
    const indexOf = new Map(this.regions.map((r, i) => [r.id, i]));
    const stopped = options.stopped ?? (() => false);
    const maxTasks = this.pool.tasksInFlight;
    const inflight = new Set<Promise<void>>();
    const state: { failure: { err: unknown } | null } = { failure: null };
    let current = 0;
    let held: Task | null = null;
    let empty = 0;
    const turn = async (): Promise<void> => {
      empty = 0;
      if (inflight.size > 0) await Promise.race(inflight);
      else await new Promise<void>((resolve) => setImmediate(resolve));
    };
    while (state.failure === null && !stopped()) {
      for (const f of options.faults?.() ?? []) {
        const i = indexOf.get(f.regionId);
        if (i === undefined) continue;
        planners[i].onFault(f.page);
        current = i;
        held = null;
      }
      if (held === null) {
        const r = this.regionWithPages(current);
        if (r < 0) break;
        current = r;
        held = this.taskFor(this.regions[r], planners[r].nextWindow());
        if (held === null) {
          if (++empty >= EMPTY_WINDOWS_PER_TURN) await turn();
          continue;
        }
      }
      if (inflight.size >= maxTasks || this.ring.available(held.slab) === 0) {
        await turn();
        continue;
      }
      const task = this.start(held, options, result, state);
      held = null;
      inflight.add(task);
      void task.then(() => inflight.delete(task));
    }
    await Promise.all(inflight);
    if (state.failure !== null) throw state.failure.err;
    result.ms = performance.now() - t0;
    return result;
  }

  private start(t: Task, options: PushOptions, result: PassResult, state: { failure: { err: unknown } | null }): Promise<void> {
    const chunk = this.ring.take(t.slab)!;
    const pageSize = this.slabs[t.slab].layout.pageSize;
    const maxEntries = Math.max(1, Math.min(CHUNK_ENTRIES, t.pages));
    const payloadLimit = Math.min(this.ring.payloadLimit(t.slab), Math.max(pageSize, t.pages * pageSize));
    return (async () => {
      try {
        const r = await this.pool.encode({
          slab: t.slab, from: t.from, to: t.to, chunk, maxEntries, payloadLimit, iteration: options.iteration, cache: 'off', lz4: this.options.lz4(),
        });
        if (r.entries > 0) {
          this.ring.writing(t.slab, chunk);
          await this.writer.write(t.slab, r, result, options.onBatch);
        }
      } catch (err) {
        state.failure ??= { err };
      } finally {
        this.ring.release(t.slab, chunk);
      }
    })();
  }

  /** `from`, or the next region after it (wrapping) that still has pages marked; -1 when none has. */
  private regionWithPages(from: number): number {
    for (let k = 0; k < this.regions.length; k++) {
      const i = (from + k) % this.regions.length;
      if (this.pendingIn(this.regions[i]) > 0) return i;
    }
    return -1;
  }

  private pendingIn(r: RegionSlabs): number {
    let n = 0;
    for (const i of r.slabs) {
      const s = this.slabs[i];
      n += kernelsOf(s).raw.bitmapCount(s.layout.snapshot, s.layout.bitmapWords);
    }
    return n;
  }

  /** The window's part in the slab holding its first page, or null when nothing there is marked. */
  private taskFor(r: RegionSlabs, w: PushWindow & { pages: number }): Task | null {
    for (const i of r.slabs) {
      const s = this.slabs[i];
      if (w.from < s.firstPage || w.from >= s.firstPage + s.pageCount) continue;
      const from = w.from - s.firstPage;
      const to = Math.min(s.pageCount, w.to - s.firstPage);
      if (from >= to || kernelsOf(s).raw.bitmapNextSet(s.layout.snapshot, to, from) < 0) return null;
      return { slab: i, from, to, pages: w.pages };
    }
    return null;
  }
}
