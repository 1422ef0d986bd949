// A guest's demand over time (the scenario's traces): for each resource a constant or a list of
// [ms, value] points, linear between points and held after the last, so a step is two close points and
// a surge a ramp up and down. Time is the scenario's clock (ms since the cluster started), so a guest's
// demand carries on unchanged on whichever host it runs. An optional `noise` share adds seeded jitter,
// the same for the same guest, seed and tenth of a second wherever it is computed. Pure.

import type { Vector } from '../manager/resources.js';

/** A constant, or [ms, value] points in increasing time. */
export type Trace = number | readonly (readonly [number, number])[];

export interface DemandTraces {
  cpu: Trace;
  net: Trace;
  mem: Trace;
  /** Jitter, as a share of the value (0.05: ±5 %). */
  noise: number;
}

/** The value of `trace` at `tMs`. */
export function valueAt(trace: Trace, tMs: number): number {
  if (typeof trace === 'number') return trace;
  if (trace.length === 0) return 0;
  if (tMs <= trace[0][0]) return trace[0][1];
  for (let i = 1; i < trace.length; i++) {
    const [t1, v1] = trace[i];
    if (tMs < t1) {
      const [t0, v0] = trace[i - 1];
      return t1 === t0 ? v1 : v0 + ((v1 - v0) * (tMs - t0)) / (t1 - t0);
    }
  }
  return trace[trace.length - 1][1];
}

/** Every resource's demand at `tMs`, with the guest's seeded jitter. Never negative. */
export function demandAt(d: DemandTraces, tMs: number, seed: number): Vector {
  const slot = Math.floor(tMs / 100);
  const jitter = (k: number): number => (d.noise === 0 ? 1 : 1 + d.noise * (2 * unit(seed, slot, k) - 1));
  return {
    cpu: Math.max(0, valueAt(d.cpu, tMs) * jitter(1)),
    net: Math.max(0, valueAt(d.net, tMs) * jitter(2)),
    mem: Math.max(0, valueAt(d.mem, tMs) * jitter(3)),
  };
}

/** A number in [0, 1) from (seed, slot, k): a few rounds of a 32-bit mix (splitmix-style). */
function unit(seed: number, slot: number, k: number): number {
  let h = (Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(slot | 0, 0x85ebca6b) ^ Math.imul(k, 0xc2b2ae35)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return ((h ^ (h >>> 16)) >>> 0) / 2 ** 32;
}

/** The last time any point of `d` changes (ms): after it, demand is constant apart from jitter. */
export function lastChangeMs(d: DemandTraces): number {
  const last = (t: Trace): number => (typeof t === 'number' || t.length === 0 ? 0 : t[t.length - 1][0]);
  return Math.max(last(d.cpu), last(d.net), last(d.mem));
}
