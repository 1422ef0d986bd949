// memshift: live migration of VM memory over TCP. This facade is the library's whole public surface;
// everything behind it is private and may change. Options are validated here and errors name them.

export { ErrorCode, MemshiftError, errorCode, isMemshiftError, invalidArgument } from './errors.js';
export type { ErrorCodeValue, ErrorDetails } from './errors.js';
export type { Region, RegionKind, MemorySource, MemoryTarget, GuestMemoryView } from './memory/types.js';
export type { Slab } from './memory/slab.js';
export type { SlabLayout } from './memory/slab-layout.js';
export { GuestMemory } from './memory/guest-memory.js';
export type { GuestMemoryOptions, RegionSpec } from './memory/guest-memory.js';
export { SimulatedGuest, replay, RAM_REGION_ID } from './memory/simulated-guest.js';
export { resolveGuestConfig, parseSize, formatBytes, FILL_KINDS, WORKLOAD_KINDS } from './memory/guest-config.js';
export type { GuestConfig, FillKind, WorkloadKind } from './memory/guest-config.js';
