// The simulated guest's outputs (src/sim/output-ring.ts) and the workload's hook for them: the ring the
// vCPU writes and the host drains (counters modulo 2^32, full at capacity, steps above 2^32 kept), the
// list the reference run keeps, and what StepRunner and replay do with a sink: the same RAM with or
// without one, the same outputs for the same seed, about one step in 1024, none when idle, and a batch
// that ends right after the step that filled the ring and goes on after a drain as if never stopped.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import {
  DEFAULT_OUTPUT_RING_ENTRIES, OutputList, OutputWriter, createOutputRing, drainOutputRing, formatOutput, type GuestOutput,
} from '../../src/sim/output-ring.js';
import { ramRegions } from '../../src/sim/ram-layout.js';
import { fillGuest, ramSlabs, replay } from '../../src/sim/simulated-guest.js';
import { StepRunner, initialCounters, workloadShape } from '../../src/sim/workload.js';
import type { GuestConfig } from '../../src/sim/guest-config.js';
import { assertSameMemory, guestConfig, regionImage } from '../_support/guest-helpers.js';
import { seeded } from '../_support/seeded.js';

const MiB = 1 << 20;

/** The ring's header counters (written, read), as u32. */
function counters(ring: SharedArrayBuffer): [number, number] {
  const i32 = new Int32Array(ring);
  return [i32[0] >>> 0, i32[1] >>> 0];
}

/** Sets both counters to `at` (an empty ring whose counters have run that far). */
function startAt(ring: SharedArrayBuffer, at: number): void {
  const i32 = new Int32Array(ring);
  i32[0] = at | 0;
  i32[1] = at | 0;
}

// ---- the ring -----------------------------------------------------------------------------------

test('createOutputRing: a header and 16 bytes per entry; only powers of two from 2', () => {
  assert.is(createOutputRing(4).byteLength, 16 + 4 * 16);
  assert.is(createOutputRing(2).byteLength, 16 + 2 * 16);
  assert.is(createOutputRing().byteLength, 16 + DEFAULT_OUTPUT_RING_ENTRIES * 16);
  for (const n of [0, 1, 3, 6, 1000, -4, 2.5, NaN]) assert.throws(() => createOutputRing(n), /power of two/, `${n} entries`);
  const ring = createOutputRing(8);
  assert.equal(counters(ring), [0, 0]);
  assert.equal(drainOutputRing(ring), []);
});

test('full becomes true exactly at capacity: the emit that fills the ring returns false; a drain makes room again', () => {
  for (const cap of [2, 4, 16]) {
    const ring = createOutputRing(cap);
    const w = new OutputWriter(ring);
    for (let i = 0; i < cap; i++) {
      assert.is(w.full, false, `cap ${cap}: full before emit ${i}`);
      assert.is(w.emit(100 + i, -i), i < cap - 1, `cap ${cap}: emit ${i}`);
    }
    assert.is(w.full, true, `cap ${cap}`);
    const out = drainOutputRing(ring);
    assert.equal(out, Array.from({ length: cap }, (_, i) => ({ step: 100 + i, word: -i })), `cap ${cap}`);
    assert.is(w.full, false, `cap ${cap}: drained`);
    assert.equal(drainOutputRing(ring), [], `cap ${cap}: a second drain finds nothing`);
    // A partial drain frees exactly what it took.
    for (let i = 0; i < cap - 1; i++) w.emit(i, i);
    assert.is(w.full, false);
    drainOutputRing(ring);
    for (let i = 0; i < cap - 1; i++) assert.is(w.emit(i, i), true, `cap ${cap}: room for ${cap - 1} after the drain`);
    assert.is(w.emit(9, 9), false);
    assert.is(drainOutputRing(ring).length, cap);
  }
});

test('the ring wraps over many fill and drain cycles: every entry once, oldest first, counters far past capacity', () => {
  const rng = seeded(1024);
  const cap = 8;
  const ring = createOutputRing(cap);
  const w = new OutputWriter(ring);
  let step = 0;
  let total = 0;
  for (let cycle = 0; cycle < 3000; cycle++) {
    const n = 1 + rng.below(cap);
    const sent: GuestOutput[] = [];
    for (let i = 0; i < n; i++) {
      const o = { step: step++, word: rng.u32() | 0 };
      sent.push(o);
      assert.is(w.emit(o.step, o.word), i < cap - 1, `cycle ${cycle}, emit ${i}`);
    }
    assert.is(w.full, n === cap, `cycle ${cycle}`);
    total += n;
    assert.equal(counters(ring), [total >>> 0, (total - n) >>> 0], `cycle ${cycle}: counters before the drain`);
    assert.equal(drainOutputRing(ring), sent, `cycle ${cycle}`);
    assert.equal(counters(ring), [total >>> 0, total >>> 0]);
  }
  assert.ok(total > 100 * cap, `${total} entries through a ring of ${cap}`);
});

test('counters wrap modulo 2^32 (through 2^31 and 2^32) without losing or reordering an entry', () => {
  for (const at of [2 ** 31 - 3, 2 ** 32 - 3, 2 ** 32 - 1]) {
    const ring = createOutputRing(4);
    startAt(ring, at);
    const w = new OutputWriter(ring);
    const all: GuestOutput[] = [];
    for (let round = 0; round < 3; round++) {
      const sent: GuestOutput[] = [];
      for (let i = 0; i < 4; i++) {
        const o = { step: at + 10 * round + i, word: i - 2 };
        sent.push(o);
        assert.is(w.emit(o.step, o.word), i < 3, `from ${at}, round ${round}, emit ${i}`);
      }
      assert.is(w.full, true, `from ${at}, round ${round}`);
      assert.equal(drainOutputRing(ring), sent, `from ${at}, round ${round}`);
      all.push(...sent);
    }
    assert.equal(counters(ring), [(at + 12) % 2 ** 32, (at + 12) % 2 ** 32], `from ${at}`);
    assert.is(all.length, 12);
  }
});

test('steps above 2^32 and negative words come out exactly; formatOutput prints the word unsigned', () => {
  const steps = [0, 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 5, 2 ** 40 + 123, 2 ** 52 + 1, Number.MAX_SAFE_INTEGER];
  const words = [0, -1, 2 ** 31 - 1, -(2 ** 31), 12345, -7, 1, 0x7f00ff00, -2];
  const ring = createOutputRing(16);
  const w = new OutputWriter(ring);
  steps.forEach((s, i) => w.emit(s, words[i]));
  const out = drainOutputRing(ring);
  assert.equal(out, steps.map((step, i) => ({ step, word: words[i] })));
  assert.is(formatOutput({ step: 2 ** 32 + 5, word: -1 }), '4294967301 4294967295');
  assert.is(formatOutput({ step: 0, word: -(2 ** 31) }), '0 2147483648');
  assert.is(formatOutput({ step: 7, word: 42 }), '7 42');
  assert.is(formatOutput(out[8]), `${Number.MAX_SAFE_INTEGER} ${(-2 >>> 0)}`);
});

test('OutputList keeps every output in order and is never full', () => {
  const list = new OutputList();
  for (let i = 0; i < 100_000; i++) assert.ok(list.emit(i * 3, -i), `emit ${i}`);
  assert.is(list.full, false);
  assert.is(list.outputs.length, 100_000);
  assert.equal(list.outputs[99_999], { step: 299_997, word: -99_999 });
});

// ---- the workload's outputs ---------------------------------------------------------------------

function replayWithOutputs(config: GuestConfig, steps: number): { memory: GuestMemory; outputs: GuestOutput[] } {
  const list = new OutputList();
  const memory = replay(config, steps, {}, null, list);
  return { memory, outputs: list.outputs };
}

test('replay with an OutputList: the same RAM as without, the same outputs for the same seed, others for another seed', () => {
  const config = guestConfig({ memoryBytes: 8 * MiB, seed: 7 });
  const N = 300_000;
  const plain = replay(config, N);
  const a = replayWithOutputs(config, N);
  const b = replayWithOutputs(config, N);
  assertSameMemory(a.memory, plain, 'RAM with outputs vs without');
  assert.is(a.memory.contentDigest(), plain.contentDigest());
  assert.ok(regionImage(a.memory).equals(regionImage(plain)));
  assert.ok(a.outputs.length > 100, `${a.outputs.length} outputs in ${N} steps`);
  assert.equal(b.outputs, a.outputs, 'same seed, same outputs');
  for (let i = 0; i < a.outputs.length; i++) {
    assert.ok(Number.isInteger(a.outputs[i].step) && a.outputs[i].step >= 0 && a.outputs[i].step < N, `output ${i}: step`);
    if (i > 0) assert.ok(a.outputs[i].step > a.outputs[i - 1].step, `output ${i}: steps increase`);
    assert.is(a.outputs[i].word, a.outputs[i].word | 0, `output ${i}: word is an i32`);
  }
  // An output is a function of its step: a shorter run makes exactly the outputs of its steps.
  const half = replayWithOutputs(config, N / 2);
  assert.equal(half.outputs, a.outputs.filter((o) => o.step < N / 2));
  const other = replayWithOutputs({ ...config, seed: 8 }, N);
  assert.ok(other.outputs.length > 100);
  assert.not.equal(other.outputs, a.outputs, 'another seed, other outputs');
  assert.not.equal(other.outputs.map((o) => o.step), a.outputs.map((o) => o.step), 'another seed, other output steps');
});

test('about one step in 1024 makes an output (hotset, uniform and sweep); an idle guest makes none', () => {
  const N = 1_000_000;
  for (const workload of ['hotset', 'uniform', 'sweep'] as const) {
    const { outputs } = replayWithOutputs(guestConfig({ memoryBytes: 4 * MiB, seed: 11, workload }), N);
    assert.ok(outputs.length > N / 2048 && outputs.length < N / 512, `${workload}: ${outputs.length} outputs in ${N} steps`);
  }
  const idle = replayWithOutputs(guestConfig({ memoryBytes: 4 * MiB, seed: 11, workload: 'idle' }), N);
  assert.equal(idle.outputs, []);
});

/** A StepRunner over a fresh guest, as replay builds it. */
function runnerFor(config: GuestConfig): { memory: GuestMemory; runner: StepRunner } {
  const memory = GuestMemory.allocate(ramRegions(config), { arenaBytes: 1 << 16 });
  fillGuest(memory, config);
  return { memory, runner: new StepRunner(workloadShape(config), ramSlabs(memory), initialCounters(config)) };
}

test('a full ring ends the batch right after the step that filled it; drained and run on, the guest is the same as one uninterrupted replay', () => {
  const config = guestConfig({ memoryBytes: 8 * MiB, seed: 21 });
  const TOTAL = 200_000;
  const { memory, runner } = runnerFor(config);
  const ring = createOutputRing(4);
  const writer = new OutputWriter(ring);
  runner.outputs = writer;
  const got: GuestOutput[] = [];
  let short = 0;
  while (runner.steps < TOTAL) {
    const before = runner.steps;
    const want = TOTAL - before;
    const ran = runner.run(want);
    assert.is(runner.steps, before + ran, 'steps advance by what ran');
    if (ran < want) {
      short++;
      assert.ok(ran >= 1);
      assert.is(writer.full, true, `stopped at step ${runner.steps} with room in the ring`);
      const out = drainOutputRing(ring);
      assert.is(out.length, 4);
      assert.is(out[3].step, runner.steps - 1, 'the batch ends right after the step that filled the ring');
      got.push(...out);
    } else {
      assert.is(writer.full, false, 'a whole batch leaves room');
      got.push(...drainOutputRing(ring));
    }
  }
  const reference = replayWithOutputs(config, TOTAL);
  assert.ok(short >= 20, `${short} batches cut short by the ring`);
  assert.is(runner.steps, TOTAL);
  assert.equal(got, reference.outputs, 'the outputs of one uninterrupted run');
  assertSameMemory(memory, reference.memory, 'RAM after stops and drains vs one replay');
  assert.is(memory.contentDigest(), reference.memory.contentDigest());
  assert.equal(runner.counters().prng, (() => {
    const { runner: r } = runnerFor(config);
    r.run(TOTAL);
    return r.counters().prng;
  })(), 'the PRNG ends where one uninterrupted run leaves it');
});

test('without a sink, or with a list that never fills, run(n) runs n steps', () => {
  const config = guestConfig({ memoryBytes: 4 * MiB, seed: 5 });
  const { runner } = runnerFor(config);
  assert.is(runner.run(50_000), 50_000);
  const list = new OutputList();
  runner.outputs = list;
  assert.is(runner.run(50_000), 50_000);
  assert.ok(list.outputs.length > 10);
  assert.ok(list.outputs.every((o) => o.step >= 50_000 && o.step < 100_000), 'outputs carry the runner\'s own step count');
  assert.is(runner.run(0), 0);
  const idle = runnerFor(guestConfig({ memoryBytes: 4 * MiB, seed: 5, workload: 'idle' })).runner;
  const ring = createOutputRing(2);
  idle.outputs = new OutputWriter(ring);
  assert.is(idle.run(1_000_000), 1_000_000);
  assert.equal(drainOutputRing(ring), []);
});

test.run();
