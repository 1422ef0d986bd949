// Who owns which scratch slot. Every thread that runs kernels on a slab needs its own scratch slot
// (two pages + result words, see slab-layout.ts); the slot numbers are fixed per role so that threads
// of one host never share one. This table is the only place that hands them out.
//
//   slot:  0      1              2 … 15                      15
//          MAIN   FAULT_THREAD   encoders (one per worker)   TOOLS (shared with the 14th encoder)
//
// Hazard: TOOLS is the last slot, which a pool of MAX_ENCODERS (14) encoders also reaches. Tools
// (GuestMemory.contentDigest) run only while no encoder pool is encoding: after a migration, in replays.

import { SCRATCH_AGENTS } from './slab-layout.js';

export const ScratchAgent = {
  /** The main thread: the destination's receive-and-apply loop. */
  MAIN: 0,
  /** The post-copy fault thread of either host (urgent-connector-thread on the source, urgent-listener-thread on the destination). */
  FAULT_THREAD: 1,
  /** The first encoder worker; each worker takes the next slot as it starts. */
  FIRST_ENCODER: 2,
  /** Host tools that hash or copy pages outside a migration (content digests). */
  TOOLS: SCRATCH_AGENTS - 1,
  /** Slots per slab. */
  COUNT: SCRATCH_AGENTS,
} as const;
