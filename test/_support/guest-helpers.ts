// Helpers for tests of the memory model and the simulated guest: compare guest memories page by page
// (whatever their slab layouts), copy RAM between guests, read dirty bitmaps, temp dirs that clean up,
// and guests that are always closed. Not a suite: uvu runs only files matching `\.test\.js$`.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import type { GuestMemoryOptions } from '../../src/memory/guest-memory.js';
import { SimulatedGuest, resolveGuestConfig, type GuestConfig } from '../../src/sim/index.js';
import type { Slab } from '../../src/memory/slab.js';
import type { GuestMemoryView } from '../../src/memory/types.js';

/** Small slabs so that a few MiB of guest span several slabs; a tiny arena keeps allocations small. */
export const SMALL_SLABS: GuestMemoryOptions = { maxSlabBytes: 1 << 20, arenaBytes: 1 << 16 };

/** A resolved config with test-friendly defaults (8 MiB, hotset, mixed fill). */
export function guestConfig(overrides: Partial<GuestConfig> = {}): GuestConfig {
  return resolveGuestConfig({ memoryBytes: 8 << 20, seed: 7, ...overrides });
}

/** Bytes of `len` at `offset` of a slab's shared memory, without copying. */
function slabBytes(slab: Slab, offset: number, len: number): Buffer {
  return Buffer.from(slab.memory.buffer as ArrayBuffer, offset, len);
}

/** A live (uncopied) view of one region page, found by walking the slabs (works for any layout). */
export function pageBytes(mem: GuestMemoryView, regionId: number, page: number): Buffer {
  for (const s of mem.slabsOf(regionId)) {
    if (page >= s.firstPage && page < s.firstPage + s.pageCount) {
      const ps = s.layout.pageSize;
      return slabBytes(s, s.layout.ram + (page - s.firstPage) * ps, ps);
    }
  }
  throw new RangeError(`page ${page} is not in region ${regionId}`);
}

function regionShape(mem: GuestMemoryView, regionId: number): { pageSize: number; pageCount: number } {
  const r = mem.regions.find((x) => x.id === regionId);
  if (r === undefined) throw new RangeError(`no region ${regionId}`);
  return { pageSize: r.pageSize, pageCount: r.pageCount };
}

/**
 * Region pages that differ between `a` and `b` (ascending), stopping after `limit`. The two may have
 * different slab layouts: overlapping runs are compared whole, and only a differing run is scanned page by page.
 */
export function differentPages(a: GuestMemoryView, b: GuestMemoryView, regionId = 0, limit = Infinity): number[] {
  const sa = regionShape(a, regionId);
  const sb = regionShape(b, regionId);
  if (sa.pageSize !== sb.pageSize || sa.pageCount !== sb.pageCount) {
    throw new RangeError(`region ${regionId} shapes differ: ${sa.pageCount}×${sa.pageSize} vs ${sb.pageCount}×${sb.pageSize}`);
  }
  const ps = sa.pageSize;
  const out: number[] = [];
  for (const x of a.slabsOf(regionId)) {
    for (const y of b.slabsOf(regionId)) {
      const first = Math.max(x.firstPage, y.firstPage);
      const end = Math.min(x.firstPage + x.pageCount, y.firstPage + y.pageCount);
      if (first >= end) continue;
      const ax = slabBytes(x, x.layout.ram + (first - x.firstPage) * ps, (end - first) * ps);
      const by = slabBytes(y, y.layout.ram + (first - y.firstPage) * ps, (end - first) * ps);
      if (ax.equals(by)) continue;
      for (let p = first; p < end; p++) {
        const o = (p - first) * ps;
        if (!ax.subarray(o, o + ps).equals(by.subarray(o, o + ps))) {
          out.push(p);
          if (out.length >= limit) return out;
        }
      }
    }
  }
  return out.sort((m, n) => m - n);
}

/** First region page that differs, or -1 when the two regions hold the same bytes. */
export function firstDifferentPage(a: GuestMemoryView, b: GuestMemoryView, regionId = 0): number {
  const d = differentPages(a, b, regionId);
  return d.length === 0 ? -1 : d[0];
}

/** Asserts two regions are identical, naming the first differing page and how many differ. */
export function assertSameMemory(actual: GuestMemoryView, expected: GuestMemoryView, what: string, regionId = 0): void {
  const d = differentPages(actual, expected, regionId);
  assert.ok(d.length === 0, `${what}: ${d.length} page(s) differ, first is page ${d[0]}`);
}

/** Copies a region page by page from `from` into `to` (as a migration would deliver it). */
export function copyRegion(from: GuestMemoryView, to: GuestMemoryView, regionId = 0): void {
  const { pageCount } = regionShape(from, regionId);
  for (let p = 0; p < pageCount; p++) pageBytes(to, regionId, p).set(pageBytes(from, regionId, p));
}

/** A copy of a whole region's bytes, in page order. */
export function regionImage(mem: GuestMemoryView, regionId = 0): Buffer {
  const { pageSize, pageCount } = regionShape(mem, regionId);
  const out = Buffer.alloc(pageSize * pageCount);
  for (const s of mem.slabsOf(regionId)) out.set(slabBytes(s, s.layout.ram, s.layout.ramBytes), s.firstPage * pageSize);
  return out;
}

/** A copy of every region's bytes, regions in order: a multi-region guest's RAM as one image (as --dump-memory writes it). */
export function guestImage(mem: GuestMemoryView): Buffer {
  return Buffer.concat(mem.regions.map((r) => regionImage(mem, r.id)));
}

export function isZeroBytes(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** Region pages whose bit is set in the slabs' bitmap at layout offset `which` (e.g. 'dirty'). */
export function bitmapPages(mem: GuestMemoryView, which: 'dirty' | 'snapshot', regionId = 0): Set<number> {
  const set = new Set<number>();
  for (const s of mem.slabsOf(regionId)) {
    const words = new Uint32Array(s.memory.buffer, s.layout[which], s.layout.bitmapWords * 2);
    for (let w = 0; w < words.length; w++) {
      let v = Atomics.load(words, w);
      while (v !== 0) {
        const bit = 31 - Math.clz32(v & -v);
        v &= v - 1;
        // Bits past the slab's last page are reported as such, so a test can notice them.
        set.add(s.firstPage + w * 32 + bit);
      }
    }
  }
  return set;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `fn` with a fresh temp dir that is removed afterwards, whatever happens. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'memshift-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Creates a source guest, runs `fn`, and always closes it (so its vCPU thread cannot keep the process alive). */
export async function withGuest<T>(config: GuestConfig, options: GuestMemoryOptions, fn: (g: SimulatedGuest) => Promise<T>): Promise<T> {
  const g = SimulatedGuest.create(config, options);
  try {
    return await fn(g);
  } finally {
    await g.close();
  }
}

/** Calls `fn`, expecting it to throw a memshift error with `code`; returns the error. */
export function expectCode(fn: () => unknown, code: string, what = 'call'): Error & { code: string } {
  try {
    fn();
  } catch (err) {
    const e = err as Error & { code?: string };
    assert.is(e.code, code, `${what}: expected ${code}, got ${e.code} (${e.message})`);
    return e as Error & { code: string };
  }
  assert.unreachable(`${what}: expected ${code}, but it did not throw`);
  throw new Error('unreachable');
}

export async function expectCodeAsync(fn: () => Promise<unknown>, code: string, what = 'call'): Promise<Error & { code: string }> {
  try {
    await fn();
  } catch (err) {
    const e = err as Error & { code?: string };
    assert.is(e.code, code, `${what}: expected ${code}, got ${e.code} (${e.message})`);
    return e as Error & { code: string };
  }
  assert.unreachable(`${what}: expected ${code}, but it did not throw`);
  throw new Error('unreachable');
}

/**
 * Settles `p` or gives up after `ms` (a hang guard, not a timing claim: `ms` is orders of magnitude
 * above the expected time, and the result says only whether `p` settled at all).
 */
export async function settlesWithin<T>(p: Promise<T>, ms: number): Promise<{ settled: true; value: T } | { settled: false }> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<{ settled: false }>((resolve) => {
    timer = setTimeout(() => resolve({ settled: false }), ms);
  });
  try {
    return await Promise.race([p.then((value) => ({ settled: true as const, value })), guard]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits until the running guest has executed at least `steps` steps in total. Progress, not time, is
 * what a test needs before it pauses; `guardMs` only stops a hung guest from hanging the suite.
 */
export async function waitForSteps(g: { readonly steps: number }, steps: number, guardMs = 10_000): Promise<void> {
  const start = Date.now();
  while (g.steps < steps) {
    if (Date.now() - start > guardMs) throw new Error(`guest stuck at ${g.steps} steps, waiting for ${steps}`);
    await sleep(2);
  }
}
