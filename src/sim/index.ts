// memshift/sim: the simulated guest, a user of the library rather than a part of it. A seeded,
// deterministic writer whose memory after N steps is a function of its config and N only, so a
// migrated guest can be checked bit for bit against `replay`. The CLI, the demo and the tests use it;
// nothing in the engine (migration, pipeline, protocol, transport) may import it.
//
//   import { SimulatedGuest, replay, resolveGuestConfig } from 'memshift/sim';
//   const guest = SimulatedGuest.create(resolveGuestConfig({ memoryBytes: 64 << 20, seed: 7 }));

import '../wasm/webassembly-types.js';

export { SimulatedGuest, replay } from './simulated-guest.js';
export type { GuestHostOptions, GuestStorageOptions } from './simulated-guest.js';
export type { GuestNetwork } from './cpu-state.js';
export { GuestNic } from './guest-nic.js';
export { OutputList, formatOutput } from './output-ring.js';
export type { GuestOutput, OutputSink } from './output-ring.js';
export { diskImagePath } from './disk.js';
export { RAM_REGION_ID, ramRegions, ramRegionIds } from './ram-layout.js';
export {
  resolveGuestConfig, GUEST_DEFAULTS, FILL_KINDS, WORKLOAD_KINDS, MAX_RAM_REGIONS, RAM_REGION_ALIGN_PAGES,
} from './guest-config.js';
export type { GuestConfig, FillKind, WorkloadKind } from './guest-config.js';
export { parseSize, formatBytes } from './sizes.js';
export { CPU_STATE_BYTES, encodeCpuState, decodeCpuState } from './cpu-state.js';
export type { CpuState } from './cpu-state.js';
export type { CpuCounters, WorkloadShape } from './workload.js';
