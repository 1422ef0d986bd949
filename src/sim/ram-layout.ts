// The simulated guest's RAM as regions, and the guest page → slab map its vCPU steps through. The guest
// page p ∈ [0, pageCount) is what the fill, the workload and the replay oracle are functions of; the
// regions only cut that range into consecutive pieces:
//
//   guest pages  0 ─────────── a ─────────── b ─────── pageCount
//   regions      ram0 (id 0)   ram1 (id 1)   ram2 (id 2)          (one region: `ram`, id 0)
//   slabs        [s0][s1][s2]  [s3][s4]      [s5][s6]             the vCPU's flat slab list, in order
//
// Every region but the last is a multiple of 64 pages and slabs are multiples of 64 pages within their
// region, so every slab starts on a multiple of 64 guest pages: one table entry per 64 pages names the
// slab, and the step loop maps a page with one load and one subtraction.

import { invalidArgument } from '../errors.js';
import type { Slab } from '../memory/slab.js';
import type { Region } from '../memory/types.js';
import { RAM_REGION_ALIGN_PAGES, type GuestConfig } from './guest-config.js';

/** Id of the first (or only) RAM region. */
export const RAM_REGION_ID = 0;
/** Slabs one vCPU can address: the step loop packs the slab index into 8 bits. */
export const MAX_VCPU_SLABS = 256;

/** The regions of a guest with `config`: ids 0..N-1, each but the last a whole number of 64-page words. */
export function ramRegions(config: Pick<GuestConfig, 'memoryBytes' | 'pageSize' | 'ramRegions'>): Region[] {
  const total = config.memoryBytes / config.pageSize;
  const n = config.ramRegions;
  if (n === 1) return [{ id: RAM_REGION_ID, name: 'ram', kind: 'ram', pageSize: config.pageSize, pageCount: total }];
  const per = Math.floor(total / n / RAM_REGION_ALIGN_PAGES) * RAM_REGION_ALIGN_PAGES;
  if (per < RAM_REGION_ALIGN_PAGES) throw invalidArgument('ramRegions', `needs at least ${RAM_REGION_ALIGN_PAGES} pages per region`, n);
  return Array.from({ length: n }, (_, i) => ({
    id: i, name: `ram${i}`, kind: 'ram' as const, pageSize: config.pageSize, pageCount: i < n - 1 ? per : total - per * (n - 1),
  }));
}

/**
 * The RAM regions of a received layout, checked: kind 'ram', ids 0..N-1 in order, one page size, and
 * every region but the last a multiple of 64 pages. Other kinds (disks) are held but never run on.
 */
export function ramRegionsOf(regions: readonly Region[]): { ram: Region[]; pageSize: number; pageCount: number } {
  const ram = regions.filter((r) => r.kind === 'ram');
  if (ram.length === 0 || ram[0].id !== RAM_REGION_ID) throw invalidArgument('regions', `must include RAM as region ${RAM_REGION_ID}`);
  const pageSize = ram[0].pageSize;
  let pageCount = 0;
  ram.forEach((r, i) => {
    if (r.id !== i) throw invalidArgument('regions', `must number RAM regions 0..${ram.length - 1} in order`, r.id);
    if (r.pageSize !== pageSize) throw invalidArgument('regions', `must give every RAM region the page size ${pageSize}`, r.pageSize);
    if (i < ram.length - 1 && r.pageCount % RAM_REGION_ALIGN_PAGES !== 0) {
      throw invalidArgument('regions', `must make every RAM region but the last a multiple of ${RAM_REGION_ALIGN_PAGES} pages`, r.pageCount);
    }
    pageCount += r.pageCount;
  });
  if (pageCount > 0xffffffff) throw invalidArgument('regions', 'must hold fewer than 2^32 RAM pages', pageCount);
  return { ram, pageSize, pageCount };
}

/** Ids of the RAM regions, in guest page order (what a RAM image concatenates). */
export function ramRegionIds(regions: readonly Region[]): number[] {
  return ramRegionsOf(regions).ram.map((r) => r.id);
}

/** Guest page → slab: `slabOfChunk[p >>> 6]` is the slab index, `p - slabFirst[si]` the slab-local page. */
export interface SlabMap {
  readonly slabOfChunk: Uint8Array;
  /** Guest page of each slab's first page. */
  readonly slabFirst: Float64Array;
}

/** Maps the flat slab list (all RAM regions' slabs, in order) that holds `pageCount` guest pages. */
export function mapSlabs(slabs: readonly Slab[], pageCount: number): SlabMap {
  if (slabs.length === 0 || slabs.length > MAX_VCPU_SLABS) throw invalidArgument('slabs', `must be 1..${MAX_VCPU_SLABS} slabs`, slabs.length);
  const chunks = Math.ceil(pageCount / RAM_REGION_ALIGN_PAGES);
  const slabOfChunk = new Uint8Array(chunks);
  const slabFirst = new Float64Array(slabs.length);
  let first = 0;
  slabs.forEach((s, si) => {
    if (first % RAM_REGION_ALIGN_PAGES !== 0) {
      throw invalidArgument('slabs', `must start on multiples of ${RAM_REGION_ALIGN_PAGES} guest pages (slab ${si} of region ${s.regionId} starts at ${first})`);
    }
    slabFirst[si] = first;
    slabOfChunk.fill(si, first / RAM_REGION_ALIGN_PAGES, Math.ceil((first + s.pageCount) / RAM_REGION_ALIGN_PAGES));
    first += s.pageCount;
  });
  if (first !== pageCount) throw invalidArgument('slabs', `must hold the guest's ${pageCount} pages`, first);
  return { slabOfChunk, slabFirst };
}
