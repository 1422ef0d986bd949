// Bitmap kernels racing a writer thread (test/_support/bit-setter-worker.ts) over one shared memory:
// a bit set concurrently with bitmapSyncAndClear is moved exactly once or left for the next sync, and
// bitmapMerge loses neither its own bits nor the writer's. Correctness never depends on timing: the
// worker's chunks are interleaved with main-thread steps through a shared-counter handshake.

import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Kernels, type KernelVariant } from '../../src/wasm/kernels.js';
import { bitOrder, Slot, type BitSetterData } from '../_support/bit-setter-worker.js';

const VARIANTS: readonly KernelVariant[] = ['simd', 'scalar', 'debug'];
const BITS = 1 << 16;
const WORDS = BITS / 64;
const DIRTY = 65536;
const SNAPSHOT = DIRTY + WORDS * 8;
const SOURCE = SNAPSHOT + WORDS * 8;
const CONTROL = SOURCE + WORDS * 8;
const COUNT = 40000;
const CHUNKS = 25;
const MAX_STEPS = 5_000_000;
const WORKER_URL = new URL('../_support/bit-setter-worker.js', import.meta.url);

interface Race { k: Kernels; u8: Uint8Array; i32: Int32Array; worker: Worker; expected: Uint8Array; order: number[] }

/** Starts a worker that will set COUNT bits of DIRTY once the returned `go` is called. */
async function startRace(variant: KernelVariant, mode: BitSetterData['mode'], seed: number): Promise<Race & { go(): void }> {
  const memory = new WebAssembly.Memory({ initial: 3, maximum: 3, shared: true });
  const k = new Kernels(memory, variant);
  const i32 = new Int32Array(memory.buffer);
  const data: BitSetterData = { memory, variant, mode, map: DIRTY, bits: BITS, count: COUNT, seed, chunks: CHUNKS, control: CONTROL };
  const worker = new Worker(WORKER_URL, { workerData: data });
  const failed = Promise.race([once(worker, 'error'), once(worker, 'exit')]).then(([e]) => { throw new Error(`worker stopped before it was ready: ${String(e)}`); });
  const ready = Atomics.waitAsync(i32, CONTROL / 4 + Slot.READY, 0);
  if (ready.async) await Promise.race([ready.value, failed]);
  failed.catch(() => undefined);
  const order = bitOrder(seed, BITS);
  const expected = new Uint8Array(WORDS * 8);
  for (const bit of order.slice(0, COUNT)) expected[bit >>> 3] |= 1 << (bit & 7);
  const go = (): void => {
    Atomics.store(i32, CONTROL / 4 + Slot.GO, 1);
    Atomics.notify(i32, CONTROL / 4 + Slot.GO);
  };
  return { k, u8: new Uint8Array(memory.buffer), i32, worker, expected, order, go };
}

/** Runs `step` until the worker is done, counting steps through the shared STEPS slot. */
function spin(r: Race, step: () => void): number {
  const c = CONTROL / 4;
  let steps = 0;
  while (Atomics.load(r.i32, c + Slot.DONE) === 0) {
    assert.ok(steps < MAX_STEPS, 'the worker finished');
    step();
    steps++;
    Atomics.add(r.i32, c + Slot.STEPS, 1);
    Atomics.notify(r.i32, c + Slot.STEPS);
  }
  return steps;
}

const race = suite('concurrency');

for (const mode of ['atomics', 'wasm'] as const) {
  race(`syncAndClear moves every bit a worker sets (${mode === 'atomics' ? 'Atomics.or' : 'WASM bitmapSet'}) exactly once`, async () => {
    for (const v of VARIANTS) {
      const r = await startRace(v, mode, 17);
      const acc = new Uint8Array(WORDS * 8);
      let moved = 0;
      let nonEmpty = 0;
      r.go();
      spin(r, () => {
        r.k.raw.bitmapZero(SNAPSHOT, WORDS);
        const n = r.k.raw.bitmapSyncAndClear(DIRTY, SNAPSHOT, WORDS);
        if (n === 0) {
          assert.is(r.k.raw.bitmapCount(SNAPSHOT, WORDS), 0, `${v}: an empty sync left the snapshot empty`);
          return;
        }
        const snap = r.u8.subarray(SNAPSHOT, SNAPSHOT + WORDS * 8);
        let count = 0;
        for (let i = 0; i < snap.length; i++) {
          if (snap[i] === 0) continue;
          assert.is(snap[i] & acc[i], 0, `${v}: byte ${i} of a snapshot repeats a bit already moved`);
          acc[i] |= snap[i];
          count += bitsIn(snap[i]);
        }
        assert.is(count, n, `${v}: sync's return value counts the snapshot`);
        moved += n;
        nonEmpty++;
      });
      await once(r.worker, 'exit');
      const dirty = r.u8.slice(DIRTY, DIRTY + WORDS * 8);
      const remaining = r.k.raw.bitmapCount(DIRTY, WORDS);
      assert.is(moved + remaining, COUNT, `${v}: moved ${moved} + still dirty ${remaining} = bits set`);
      for (let i = 0; i < acc.length; i++) {
        assert.is(acc[i] & dirty[i], 0, `${v}: byte ${i}: a bit both moved and still dirty`);
        assert.is(acc[i] | dirty[i], r.expected[i], `${v}: byte ${i}: moved ∪ dirty = the bits the worker set`);
      }
      assert.ok(nonEmpty >= CHUNKS, `${v}: the bits arrived over ${nonEmpty} snapshots (≥ ${CHUNKS} chunks)`);
    }
  });
}

race('merge into a map a worker is setting bits in loses neither side\'s bits', async () => {
  for (const v of VARIANTS) {
    const r = await startRace(v, 'atomics', 29);
    // The bits the worker never sets, in every word of SOURCE: each merge writes every word of DIRTY
    // while the worker ORs into it, so a merge that is not atomic per half loses the worker's bits.
    for (const bit of r.order.slice(COUNT)) r.k.raw.bitmapSet(SOURCE, bit);
    let added = 0;
    r.go();
    spin(r, () => {
      added += r.k.raw.bitmapMerge(DIRTY, SOURCE, WORDS);
    });
    await once(r.worker, 'exit');
    assert.is(added, BITS - COUNT, `${v}: merge counted each of its bits once`);
    assert.is(r.k.raw.bitmapCount(DIRTY, WORDS), BITS, `${v}: every bit of both writers is set`);
  }
});

function bitsIn(b: number): number {
  let n = 0;
  for (; b !== 0; b &= b - 1) n++;
  return n;
}

race.run();
