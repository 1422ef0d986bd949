// What defines a simulated guest: memory size, initial fill, workload and seed. Memory content after
// N steps is a function of exactly these values and N; nothing about timing, pausing or migration
// enters it. This is the oracle every end-to-end test compares against. How RAM is cut into regions
// (`ramRegions`) is layout, not content: it moves pages, never changes them.

import { invalidArgument } from '../errors.js';

export type FillKind = 'zero' | 'random' | 'mixed';
export type WorkloadKind = 'idle' | 'uniform' | 'hotset' | 'sweep';

export const FILL_KINDS: readonly FillKind[] = ['zero', 'random', 'mixed'];
export const WORKLOAD_KINDS: readonly WorkloadKind[] = ['idle', 'uniform', 'hotset', 'sweep'];

/** Kernel codes for the fill kinds (assembly/guest-fill.ts). */
export const FILL_CODE: Record<FillKind, number> = { zero: 0, random: 1, mixed: 2 };

export interface GuestConfig {
  memoryBytes: number;
  pageSize: number;
  fill: FillKind;
  workload: WorkloadKind;
  /** Bytes of the hot working set (hotset workload). */
  hotBytes: number;
  /** Share of steps that land in the hot set, in permille (hotset workload). */
  hotPermille: number;
  /** Seed: an integer in [0, 2^53). */
  seed: number;
  /** Steps (dirtied pages) per second; 0 = as fast as the vCPU can run. */
  stepsPerSecond: number;
  /** RAM regions the memory is cut into (1..MAX_RAM_REGIONS), like a PC's RAM around the PCI hole. */
  ramRegions: number;
  /** The guest's disks, in bytes each (multiples of DISK_BLOCK_BYTES); empty: no disk. */
  disks: readonly number[];
  /** Bytes at the start of each disk that hold seeded data from the start (as an installed OS's blocks); the rest are holes. */
  diskFillBytes: number;
}

/** Most disks a simulated guest has. */
export const MAX_DISKS = 8;
/** A disk is read and written in blocks of this size (the page size of a disk region). */
export const DISK_BLOCK_BYTES = 4096;
/** Largest simulated disk: 2^32 blocks would not fit the device state's u32 block numbers. */
export const MAX_DISK_BYTES = 2 ** 40;

/** Most RAM regions a simulated guest has. */
export const MAX_RAM_REGIONS = 4;
/** Region boundaries fall on whole bitmap words (64 pages), so every slab starts on one too. */
export const RAM_REGION_ALIGN_PAGES = 64;

export const GUEST_DEFAULTS = {
  pageSize: 4096,
  fill: 'mixed' as FillKind,
  workload: 'hotset' as WorkloadKind,
  hotPermille: 900,
  stepsPerSecond: 0,
  ramRegions: 1,
};

/** Fills defaults and checks every field; errors name the field. */
export function resolveGuestConfig(input: Partial<GuestConfig> & { memoryBytes: number; seed: number }): GuestConfig {
  const c: GuestConfig = {
    memoryBytes: input.memoryBytes,
    pageSize: input.pageSize ?? GUEST_DEFAULTS.pageSize,
    fill: input.fill ?? GUEST_DEFAULTS.fill,
    workload: input.workload ?? GUEST_DEFAULTS.workload,
    hotBytes: input.hotBytes ?? Math.max(input.pageSize ?? GUEST_DEFAULTS.pageSize, Math.floor(input.memoryBytes / 16)),
    hotPermille: input.hotPermille ?? GUEST_DEFAULTS.hotPermille,
    seed: input.seed,
    stepsPerSecond: input.stepsPerSecond ?? GUEST_DEFAULTS.stepsPerSecond,
    ramRegions: input.ramRegions ?? GUEST_DEFAULTS.ramRegions,
    disks: input.disks ?? [],
    diskFillBytes: input.diskFillBytes ?? 0,
  };
  if (![4096, 8192, 16384, 32768, 65536].includes(c.pageSize)) throw invalidArgument('pageSize', 'must be a power of two from 4096 to 65536', c.pageSize);
  if (!Number.isSafeInteger(c.memoryBytes) || c.memoryBytes <= 0 || c.memoryBytes % c.pageSize !== 0) {
    throw invalidArgument('memory', `must be a positive multiple of the page size (${c.pageSize})`, c.memoryBytes);
  }
  if (c.memoryBytes / c.pageSize > 0xffffffff) throw invalidArgument('memory', 'must have fewer than 2^32 pages', c.memoryBytes);
  if (!FILL_KINDS.includes(c.fill)) throw invalidArgument('fill', `must be one of ${FILL_KINDS.join('|')}`, c.fill);
  if (!WORKLOAD_KINDS.includes(c.workload)) throw invalidArgument('workload', `must be one of ${WORKLOAD_KINDS.join('|')}`, c.workload);
  if (!Number.isSafeInteger(c.hotBytes) || c.hotBytes < c.pageSize || c.hotBytes > c.memoryBytes) {
    throw invalidArgument('hotSize', `must be between one page and the memory size`, c.hotBytes);
  }
  if (!Number.isInteger(c.hotPermille) || c.hotPermille < 0 || c.hotPermille > 1000) throw invalidArgument('hotPermille', 'must be an integer in [0, 1000]', c.hotPermille);
  if (!Number.isSafeInteger(c.seed) || c.seed < 0) throw invalidArgument('seed', 'must be an integer in [0, 2^53)', c.seed);
  if (!Number.isSafeInteger(c.stepsPerSecond) || c.stepsPerSecond < 0 || c.stepsPerSecond > 0x7fffffff) {
    throw invalidArgument('dirtyRate', 'must be a whole number of steps per second below 2^31, or max', c.stepsPerSecond);
  }
  if (!Number.isInteger(c.ramRegions) || c.ramRegions < 1 || c.ramRegions > MAX_RAM_REGIONS) {
    throw invalidArgument('ramRegions', `must be an integer in [1, ${MAX_RAM_REGIONS}]`, c.ramRegions);
  }
  if (c.ramRegions > 1 && c.memoryBytes / c.pageSize < c.ramRegions * RAM_REGION_ALIGN_PAGES) {
    throw invalidArgument('ramRegions', `needs at least ${RAM_REGION_ALIGN_PAGES} pages of memory per region (${c.ramRegions * RAM_REGION_ALIGN_PAGES} pages)`, c.ramRegions);
  }
  if (c.disks.length > MAX_DISKS) throw invalidArgument('disks', `must be at most ${MAX_DISKS}`, c.disks.length);
  if (!Number.isSafeInteger(c.diskFillBytes) || c.diskFillBytes < 0 || c.diskFillBytes % DISK_BLOCK_BYTES !== 0) {
    throw invalidArgument('diskFill', `must be a whole number of ${DISK_BLOCK_BYTES}-byte blocks`, c.diskFillBytes);
  }
  if (c.disks.some((d) => c.diskFillBytes > d)) throw invalidArgument('diskFill', 'must not exceed any disk', c.diskFillBytes);
  for (const d of c.disks) {
    if (!Number.isSafeInteger(d) || d <= 0 || d % DISK_BLOCK_BYTES !== 0 || d > MAX_DISK_BYTES) {
      throw invalidArgument('disk', `must be a positive multiple of ${DISK_BLOCK_BYTES} B up to 1 TiB`, d);
    }
  }
  return c;
}
