// How busy this host's cores were over a stretch of time, from the kernel's per-core tick counters
// (/proc/stat through os.cpus()): every process counts, the destination's too where it shares the host.
// Read a few times a pass (about 50 µs a reading); the ticks are 10 ms, so a stretch shorter than
// MIN_CORE_MS of core time says nothing.

import { cpus } from 'node:os';

/** Core-milliseconds since boot, idle and in all, over `cores` cores. */
export interface CpuTimes {
  idleMs: number;
  totalMs: number;
  cores: number;
}

export type HostCpuClock = () => CpuTimes;

/** Core time a stretch must span for its busy share to mean something (the counters tick every 10 ms). */
export const MIN_CORE_MS = 200;

export function hostCpuTimes(): CpuTimes {
  let idleMs = 0;
  let totalMs = 0;
  const all = cpus();
  for (const { times } of all) {
    totalMs += times.user + times.nice + times.sys + times.idle + times.irq;
    idleMs += times.idle;
  }
  return { idleMs, totalMs, cores: all.length };
}

/** How many of the host's cores' worth of time went idle between two readings; null over too short a stretch. */
export function idleCores(from: CpuTimes, to: CpuTimes): number | null {
  const total = to.totalMs - from.totalMs;
  if (total < MIN_CORE_MS) return null;
  return to.cores * Math.min(1, Math.max(0, (to.idleMs - from.idleMs) / total));
}
