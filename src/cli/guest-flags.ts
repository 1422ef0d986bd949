// Flags that define the simulated guest: one definition shared by `source`, `replay` and `demo`, so
// every guest `source` can run, `replay` can reproduce. `dest` takes none: its guest's shape comes
// with the migration (regions in the handshake, workload in the device state).

import { MAX_RAM_REGIONS, parseSize, resolveGuestConfig, type FillKind, type GuestConfig, type WorkloadKind } from '../sim/index.js';
import { optionalString, parseInteger, requireString, type Flags, type Parsed } from './args.js';

export const guestFlags: Flags = {
  memory: { type: 'string', value: 'SIZE', help: 'guest RAM (KiB, MiB, GiB)' },
  fill: { type: 'string', value: 'mixed|zero|random', help: 'initial contents', default: 'mixed' },
  workload: { type: 'string', value: 'idle|uniform|hotset|sweep', help: 'what the vCPU does (sweep: pages in order, as a memory scan)', default: 'hotset' },
  'hot-size': { type: 'string', value: 'SIZE', help: 'hot working set of the hotset workload (default memory/16)' },
  'hot-share': { type: 'string', value: 'PERMILLE', help: 'steps that land in the hot set, per mille', default: '900' },
  'dirty-rate': { type: 'string', value: 'N|max', help: 'steps (dirtied pages) per second', default: 'max' },
  'ram-regions': { type: 'string', value: 'N', help: `RAM regions the memory is cut into, 1..${MAX_RAM_REGIONS} (contents do not change)`, default: '1' },
  seed: { type: 'string', value: 'N', help: 'seed of fill and workload' },
  disk: { type: 'string', value: 'SIZE', help: 'a disk of this size (a sparse image file; one step in 256 writes a disk block)', repeatable: true },
  'disk-fill': { type: 'string', value: 'SIZE', help: 'the first SIZE of each disk hold seeded data from the start (the rest are holes)', default: '0' },
};

export function guestConfigFrom(a: Parsed): GuestConfig {
  const hot = optionalString(a, 'hot-size');
  const rate = requireString(a, 'dirty-rate');
  return resolveGuestConfig({
    memoryBytes: parseSize(requireString(a, 'memory'), '--memory'),
    fill: requireString(a, 'fill') as FillKind,
    workload: requireString(a, 'workload') as WorkloadKind,
    hotBytes: hot === undefined ? undefined : parseSize(hot, '--hot-size'),
    hotPermille: parseInteger(requireString(a, 'hot-share'), '--hot-share', 0, 1000),
    seed: parseInteger(requireString(a, 'seed'), '--seed'),
    stepsPerSecond: rate === 'max' ? 0 : parseInteger(rate, '--dirty-rate', 1, 0x7fffffff),
    ramRegions: parseInteger(requireString(a, 'ram-regions'), '--ram-regions', 1, MAX_RAM_REGIONS),
    disks: optionalString(a, 'disk')?.split(',').map((size) => parseSize(size, '--disk')) ?? [],
    diskFillBytes: requireString(a, 'disk-fill') === '0' ? 0 : parseSize(requireString(a, 'disk-fill'), '--disk-fill'),
  });
}
