// What defines a simulated guest: memory size, initial fill, workload and seed. Memory content after
// N steps is a function of exactly these values and N; nothing about timing, pausing or migration
// enters it. This is the oracle every end-to-end test compares against.

import { invalidArgument } from '../errors.js';

export type FillKind = 'zero' | 'random' | 'mixed';
export type WorkloadKind = 'idle' | 'uniform' | 'hotset';

export const FILL_KINDS: readonly FillKind[] = ['zero', 'random', 'mixed'];
export const WORKLOAD_KINDS: readonly WorkloadKind[] = ['idle', 'uniform', 'hotset'];

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
}

export const GUEST_DEFAULTS = {
  pageSize: 4096,
  fill: 'mixed' as FillKind,
  workload: 'hotset' as WorkloadKind,
  hotPermille: 900,
  stepsPerSecond: 0,
};

const UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 2 ** 20, mb: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gb: 2 ** 30, gib: 2 ** 30,
};

/** Parses `64MiB`, `1 GiB`, `512k`, `4096` into bytes; `field` names the option in errors. */
export function parseSize(text: string, field: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw invalidArgument(field, 'must be a size such as 4096, 64MiB or 1GiB', text);
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw invalidArgument(field, 'must be a positive whole number of bytes', text);
  return bytes;
}

export function formatBytes(n: number): string {
  if (n >= 2 ** 30 && n % 2 ** 30 === 0) return `${n / 2 ** 30}GiB`;
  if (n >= 2 ** 20 && n % 2 ** 20 === 0) return `${n / 2 ** 20}MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024}KiB`;
  return `${n}B`;
}

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
  return c;
}
