// A worker_threads body for test/assembly/concurrency: it plays the vCPU, setting `count` distinct
// bits of a dirty map in a shared memory (Atomics.or on 32-bit halves, or the WASM bitmapSet) while
// the main thread syncs or merges. Imported by the test only for its constants and bit list; the
// body runs only inside a Worker.
//
// Handshake through Int32 slots at `control` (no timers, so nothing depends on speed):
//   worker: READY=1, wait GO ─► chunk 0 ─► wait STEPS ≥ seen+2 ─► chunk 1 ─► … ─► DONE=1
//   main:   wait READY, GO=1 ─► loop { sync or merge; STEPS++ } until DONE
// Waiting for two main-thread steps after a chunk guarantees one whole step ran after it, so the
// chunks land in different snapshots whatever the scheduling.

import { isMainThread, workerData } from 'node:worker_threads';
import { Kernels, type KernelVariant } from '../../src/wasm/kernels.js';
import { distinctBelow, seeded } from './seeded.js';

export interface BitSetterData {
  memory: WebAssembly.Memory;
  variant: KernelVariant;
  mode: 'atomics' | 'wasm';
  map: number;
  bits: number;
  count: number;
  seed: number;
  chunks: number;
  control: number;
}

/** Int32 slot indexes relative to `control / 4`. */
export const Slot = { READY: 0, GO: 1, STEPS: 2, DONE: 3 } as const;

/** All `bits` indexes in a seeded order; the worker sets the first `count`. */
export function bitOrder(seed: number, bits: number): number[] {
  return distinctBelow(seeded(seed), bits, bits);
}

function run(d: BitSetterData): void {
  const i32 = new Int32Array(d.memory.buffer);
  const c = d.control >> 2;
  const order = bitOrder(d.seed, d.bits).slice(0, d.count);
  const k = d.mode === 'wasm' ? new Kernels(d.memory, d.variant) : undefined;
  Atomics.store(i32, c + Slot.READY, 1);
  Atomics.notify(i32, c + Slot.READY);
  Atomics.wait(i32, c + Slot.GO, 0);
  const perChunk = Math.ceil(d.count / d.chunks);
  for (let start = 0; start < d.count; start += perChunk) {
    for (const bit of order.slice(start, start + perChunk)) {
      // Word w, bit b of the u64 map is int32 index 2w + (b >> 5), i.e. bit >> 5.
      if (k === undefined) Atomics.or(i32, (d.map >> 2) + (bit >> 5), 1 << (bit & 31));
      else k.raw.bitmapSet(d.map, bit);
    }
    const seen = Atomics.load(i32, c + Slot.STEPS);
    for (let now = seen; now < seen + 2; now = Atomics.load(i32, c + Slot.STEPS)) Atomics.wait(i32, c + Slot.STEPS, now);
  }
  Atomics.store(i32, c + Slot.DONE, 1);
}

if (!isMainThread && (workerData as { memory?: unknown } | null)?.memory !== undefined) run(workerData as BitSetterData);
