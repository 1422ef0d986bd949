// An integrator's guest, built only from the engine's public pieces: its RAM lives in the
// "hypervisor's" own buffer, and memshift's slabs are a mirror that `collectDirtyLog` brings up to date
// (copying each page the hypervisor dirtied and marking it in the slab's dirty bitmap), the pattern a
// hypervisor whose dirty log lives outside memshift uses. The target keeps what it receives in slabs and
// can be told to reject device state the way a careless integrator would (a plain Error).

import { GuestMemory } from '../../src/memory/guest-memory.js';
import { pageOffset } from '../../src/memory/slab.js';
import { createPageGateInit, type PageGateInit } from '../../src/memory/page-gate.js';
import type { MemorySource, MemoryTarget, Region } from '../../src/memory/types.js';
import { viewsOf } from '../../src/wasm/views.js';

export const PAGE = 4096;
export const SLAB_OPTIONS = { maxSlabBytes: 1 << 20, arenaBytes: 17 << 20 };

export function ramRegions(pages: number): Region[] {
  return [{ id: 0, name: 'ram', kind: 'ram', pageSize: PAGE, pageCount: pages }];
}

export class MirrorSource implements MemorySource {
  readonly memory: GuestMemory;
  /** The hypervisor's RAM: the truth. */
  readonly ram: Uint8Array;
  private readonly dirty = new Set<number>();
  collected = 0;
  paused = false;
  resumes = 0;
  throttles: number[] = [];

  constructor(readonly pages: number) {
    this.memory = GuestMemory.allocate(ramRegions(pages), SLAB_OPTIONS);
    this.ram = new Uint8Array(pages * PAGE);
  }

  get regions(): readonly Region[] {
    return this.memory.regions;
  }

  slabsOf(regionId: number) {
    return this.memory.slabsOf(regionId);
  }

  /** A guest write, in the hypervisor's memory only. */
  write(page: number, fill: number): void {
    this.ram.fill(fill, page * PAGE, (page + 1) * PAGE);
    this.dirty.add(page);
  }

  collectDirtyLog(): void {
    this.collected++;
    for (const page of this.dirty) {
      const { slab, local } = this.memory.locate(0, page);
      viewsOf(slab.memory).u8.set(this.ram.subarray(page * PAGE, (page + 1) * PAGE), pageOffset(slab, local));
      Atomics.or(viewsOf(slab.memory).i32, (slab.layout.dirty >>> 2) + (local >>> 5), 1 << (local & 31));
    }
    this.dirty.clear();
  }

  async pause(): Promise<void> {
    this.paused = true;
  }

  async resume(): Promise<void> {
    this.paused = false;
    this.resumes++;
  }

  throttle(percent: number): void {
    this.throttles.push(percent);
  }

  saveState(): Uint8Array {
    return new Uint8Array([1, 2, 3, 4]);
  }
}

export class MirrorTarget implements MemoryTarget {
  readonly memory: GuestMemory;
  state: Uint8Array | null = null;
  resumed = false;

  constructor(regions: readonly Region[], private readonly rejectState: 'no' | 'plain-error' = 'no') {
    this.memory = GuestMemory.allocate(regions, SLAB_OPTIONS);
  }

  get regions(): readonly Region[] {
    return this.memory.regions;
  }

  slabsOf(regionId: number) {
    return this.memory.slabsOf(regionId);
  }

  checkState(state: Uint8Array): void {
    if (this.rejectState === 'plain-error') throw new Error('unsupported vCPU model');
    if (state.length !== 4) throw new Error(`device state of ${state.length} bytes`);
  }

  loadState(state: Uint8Array): void {
    this.state = state.slice();
  }

  async resume(): Promise<void> {
    this.resumed = true;
  }

  page(page: number): Uint8Array {
    return this.memory.readPage(0, page);
  }
}

/** A target that can receive post-copy: it arms a page gate (its vCPU never runs, so it never faults). */
export class PostcopyMirrorTarget extends MirrorTarget {
  gate: PageGateInit | null = null;

  enablePageGate(): PageGateInit {
    this.gate = createPageGateInit();
    return this.gate;
  }
}

/** Resolves once `done()` holds, checking every 5 ms; rejects after `ms` (a hang fails the test). */
export function until(done: () => boolean, ms: number, what: string): Promise<void> {
  return within((async () => {
    while (!done()) await new Promise((r) => setTimeout(r, 5));
  })(), ms, what);
}

/** Rejects with a timeout error if `p` has not settled within `ms` (a hang fails the test). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms); }),
  ]);
}
