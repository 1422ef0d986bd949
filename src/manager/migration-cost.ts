// What a migration costs, modelled from the engine's own measurements, so that the simulation's moves
// take time and bytes as real ones would (and its guests stay on their source meanwhile). Pure.
//
//   live      pre-copy passes over a link of `rate` bytes/s against a guest dirtying `dirty` bytes/s:
//             pass i sends M·ρ^i (ρ = dirty ÷ rate) until what is left fits the downtime limit or
//             the pass cap, then stop-and-copy sends the rest (the Xen pre-copy model); the engine's
//             convergence policy, simplified
//   hybrid    one pre-copy pass, then post-copy: M + M·ρ bytes, the downtime of a post-copy switch
//   postcopy  M bytes once, the downtime of a post-copy switch
//
// The constants are the engine's figures measured on the development machine (README, "Benchmarks"):
// pass-1 rate of an idle 1 GiB guest over loopback, the setup of a prepared destination, and the fixed
// switchover costs of live (downtime of an idle guest) and post-copy migrations.

import type { MigrationModeChoice } from './placement.js';

export const ENGINE_MODEL = {
  /** Bytes per second one migration's pass moves when the link is not the limit (pass 1, 1.76 GB/s). */
  passBytesPerSec: 1.76e9,
  /** Handshake with a prepared destination (11.7 ms). */
  setupMs: 11.7,
  /** Switchover of a live migration beyond sending the last pages (an idle guest's downtime, 3.3 ms). */
  liveSwitchMs: 3.3,
  /** Stop → resume of a post-copy switch (17.9 ms). */
  postcopySwitchMs: 17.9,
  /** The convergence policy's defaults: downtime limit and pass cap. */
  downtimeLimitMs: 300,
  maxPasses: 30,
} as const;

export interface MigrationCost {
  seconds: number;
  bytes: number;
  downtimeMs: number;
  passes: number;
}

/**
 * The cost of migrating `memoryBytes` dirtied at `dirtyBytesPerSec` in `mode` over a link share of
 * `linkBytesPerSec` (the engine's pass rate caps it).
 */
export function migrationCost(memoryBytes: number, dirtyBytesPerSec: number, mode: MigrationModeChoice, linkBytesPerSec: number): MigrationCost {
  const m = ENGINE_MODEL;
  const rate = Math.min(m.passBytesPerSec, linkBytesPerSec);
  const rho = Math.min(dirtyBytesPerSec / rate, 1);
  // The time is the setup, every byte at the rate, and the switchover's fixed part.
  const cost = (bytes: number, passes: number, switchMs: number, downtimeMs: number): MigrationCost => ({ seconds: (m.setupMs + switchMs) / 1000 + bytes / rate, bytes, downtimeMs, passes });
  if (mode === 'postcopy') return cost(memoryBytes, 1, m.postcopySwitchMs, m.postcopySwitchMs);
  if (mode === 'hybrid') return cost(memoryBytes * (1 + rho), 2, m.postcopySwitchMs, m.postcopySwitchMs);
  const limitBytes = (rate * m.downtimeLimitMs) / 1000;
  let left = memoryBytes;
  let bytes = 0;
  let passes = 0;
  while (passes < m.maxPasses) {
    bytes += left;
    passes++;
    left *= rho;
    if (left <= limitBytes) break;
  }
  // Stop-and-copy: what is left, paused.
  bytes += left;
  return cost(bytes, passes + 1, m.liveSwitchMs, m.liveSwitchMs + (left / rate) * 1000);
}
