// The simulated guest as the tests' oracle: memory after N steps is a function of (config, N) only.
// Pausing, throttling, rate limits, slab layout and moving the vCPU state to another guest must not
// change a byte of it. Each check compares against the single-threaded reference run `replay`.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import type { GuestMemoryOptions } from '../../src/memory/guest-memory.js';
import { SimulatedGuest, RAM_REGION_ID, decodeCpuState, ramRegions, replay, type GuestConfig } from '../../src/sim/index.js';
import {
  SMALL_SLABS, assertSameMemory, copyRegion, differentPages, expectCode, expectCodeAsync, guestConfig, isZeroBytes,
  pageBytes, regionImage, settlesWithin, sleep, waitForSteps, withGuest,
} from '../_support/guest-helpers.js';

const MiB = 1 << 20;
/** 8 MiB + 12 KiB = 2051 pages: not a multiple of a 1 MiB slab (256 pages), nor of a bitmap word. */
const ODD_BYTES = 8 * MiB + 3 * 4096;

// ---- replay: the reference run ------------------------------------------------------------------

test('replay twice with the same config gives byte-identical images', () => {
  const config = guestConfig({ memoryBytes: 32 * MiB, seed: 7 });
  const a = regionImage(replay(config, 200_000));
  const b = regionImage(replay(config, 200_000));
  assert.is(a.length, 32 * MiB);
  assert.ok(a.equals(b));
});

test('replay with a different seed gives a different image', () => {
  const a = replay(guestConfig({ seed: 7 }), 50_000);
  const b = replay(guestConfig({ seed: 8 }), 50_000);
  assert.ok(differentPages(a, b).length > 1000);
});

test('one more replay step changes exactly one page', () => {
  const config = guestConfig({ seed: 7 });
  const a = replay(config, 50_000);
  const b = replay(config, 50_001);
  assert.is(differentPages(a, b).length, 1);
  assert.ok(differentPages(replay(config, 0), a).length > 100);
});

test('replay gives the same image whatever the slab size', () => {
  const config = guestConfig({ memoryBytes: ODD_BYTES, workload: 'uniform', seed: 3 });
  const whole = replay(config, 100_000);
  const sliced = replay(config, 100_000, { maxSlabBytes: MiB });
  assert.is(sliced.slabsOf(0).length, 9);
  assertSameMemory(sliced, whole, '1 MiB slabs vs one slab');
  assert.is(sliced.contentDigest(), whole.contentDigest());
});

test('replay rejects a negative or fractional step count', () => {
  const config = guestConfig();
  expectCode(() => replay(config, -1), 'MS_ERR_INVALID_ARGUMENT', 'steps -1');
  expectCode(() => replay(config, 1.5), 'MS_ERR_INVALID_ARGUMENT', 'steps 1.5');
});

test('the idle workload leaves the initial fill whatever the step count', () => {
  const config = guestConfig({ workload: 'idle' });
  assertSameMemory(replay(config, 100_000), replay(config, 0), 'idle after 100000 steps');
});

test('sweep steps walk the pages in order: N steps change exactly pages 0..N-1, and wrap at the end', () => {
  const config = guestConfig({ memoryBytes: 4 * MiB, workload: 'sweep', seed: 21 });
  const before = replay(config, 0);
  assert.equal(differentPages(before, replay(config, 300)), Array.from({ length: 300 }, (_, i) => i));
  // 1024 pages: step 1024 is page 0 again, so 1030 steps change no page beyond the first sweep's.
  assert.is(differentPages(before, replay(config, 1030)).length, 1024);
  assert.equal(differentPages(replay(config, 1024), replay(config, 1030)), [0, 1, 2, 3, 4, 5]);
});

test('hotset steps land only in a hot set of the configured size when hotPermille is 1000', () => {
  const config = guestConfig({ memoryBytes: 16 * MiB, hotBytes: 256 * 1024, hotPermille: 1000, seed: 12 });
  const changed = differentPages(replay(config, 0), replay(config, 20_000));
  assert.ok(changed.length > 60 && changed.length <= 64, `${changed.length} pages changed`);
  assert.ok(changed[changed.length - 1] - changed[0] < 64, `span ${changed[0]}..${changed[changed.length - 1]}`);
});

// ---- initial fill -------------------------------------------------------------------------------

const PAGE = 4096;
const ZERO_PAGE = Buffer.alloc(PAGE);

function pages(mem: GuestMemory): Buffer[] {
  const out: Buffer[] = [];
  for (let p = 0; p < mem.region(0).pageCount; p++) out.push(pageBytes(mem, 0, p));
  return out;
}

test("fill 'zero' leaves every page zero", () => {
  const mem = replay(guestConfig({ memoryBytes: 64 * MiB, fill: 'zero', workload: 'idle' }), 0);
  const nonZero = pages(mem).findIndex((p) => !p.equals(ZERO_PAGE));
  assert.is(nonZero, -1);
  assert.is(mem.contentDigest(), 0n);
});

test("fill 'random' has no zero page and no two pages alike", () => {
  const mem = replay(guestConfig({ memoryBytes: 64 * MiB, fill: 'random', workload: 'idle' }), 0);
  const all = pages(mem);
  assert.is(all.findIndex((p) => p.equals(ZERO_PAGE)), -1);
  const heads = new Set(all.map((p) => p.toString('base64', 0, 32)));
  assert.is(heads.size, all.length);
  // High entropy: about 1/256 of the bytes of a random page are zero.
  let zeros = 0;
  for (let p = 0; p < all.length; p += 97) for (const byte of all[p]) if (byte === 0) zeros++;
  const sampled = Math.ceil(all.length / 97) * PAGE;
  assert.ok(Math.abs(zeros / sampled - 1 / 256) < 0.001, `zero bytes ${zeros}/${sampled}`);
});

type Kind = 'zero' | 'sparse' | 'text' | 'random';
function classify(p: Buffer): Kind {
  let zeros = 0;
  let textual = true;
  for (const b of p) {
    if (b === 0) zeros++;
    else if (!((b >= 97 && b <= 122) || b === 32 || b === 46 || b === 10)) textual = false;
  }
  if (zeros === PAGE) return 'zero';
  if (zeros >= PAGE - 64) return 'sparse';
  if (textual && zeros === 0) return 'text';
  return 'random';
}

test("fill 'mixed' has between 25% and 45% zero pages on 64 MiB", () => {
  const all = pages(replay(guestConfig({ memoryBytes: 64 * MiB, fill: 'mixed', workload: 'idle', seed: 7 }), 0));
  const zero = all.filter((p) => p.equals(ZERO_PAGE)).length;
  assert.ok(zero / all.length >= 0.25 && zero / all.length <= 0.45, `${zero} of ${all.length} pages are zero`);
});

test("fill 'mixed' blends zero, random, text and sparse pages in the documented shares", () => {
  const all = pages(replay(guestConfig({ memoryBytes: 64 * MiB, fill: 'mixed', workload: 'idle', seed: 1234 }), 0));
  const count: Record<Kind, number> = { zero: 0, sparse: 0, text: 0, random: 0 };
  for (const p of all) count[classify(p)]++;
  const expected: Record<Kind, number> = { zero: 0.35, random: 0.2, text: 0.3, sparse: 0.15 };
  for (const k of Object.keys(expected) as Kind[]) {
    const share = count[k] / all.length;
    assert.ok(Math.abs(share - expected[k]) < 0.03, `${k}: ${(share * 100).toFixed(1)}% (expected ${expected[k] * 100}%)`);
  }
});

test('the fill depends on the seed and not on the workload or slab size', () => {
  const a = replay(guestConfig({ seed: 1, workload: 'idle' }), 0);
  const b = replay(guestConfig({ seed: 2, workload: 'idle' }), 0);
  assert.ok(differentPages(a, b).length > 1000);
  assertSameMemory(replay(guestConfig({ seed: 1, workload: 'uniform' }), 0, { maxSlabBytes: MiB }), a, 'uniform, 1 MiB slabs');
});

test('a fresh guest holds the initial fill and has run no step', async () => {
  const config = guestConfig({ memoryBytes: ODD_BYTES, seed: 4 });
  await withGuest(config, SMALL_SLABS, async (g) => {
    assert.is(g.steps, 0);
    assert.is(g.running, false);
    assertSameMemory(g.memory, replay(config, 0), 'fresh guest');
    assert.is(decodeCpuState(g.saveState(), { pageSize: 4096, pageCount: 2051 }).counters.steps, 0);
  });
});

test('a fresh guest marks exactly the pages its fill wrote: a first pass never reads a page never written', async () => {
  const config = guestConfig({ memoryBytes: ODD_BYTES, seed: 4, fill: 'mixed' });
  await withGuest(config, SMALL_SLABS, async (g) => {
    let marked = 0;
    let zero = 0;
    for (const s of g.memory.allSlabs()) {
      const u8 = new Uint8Array(s.memory.buffer);
      for (let i = 0; i < s.pageCount; i++) {
        const dirty = (u8[s.layout.dirty + (i >> 3)] >> (i & 7)) & 1;
        const at = s.layout.ram + i * s.layout.pageSize;
        const isZero = isZeroBytes(u8.subarray(at, at + s.layout.pageSize));
        assert.is(dirty, isZero ? 0 : 1, `page ${s.firstPage + i}: ${isZero ? 'zero' : 'written'}, ${dirty ? '' : 'not '}marked`);
        marked += dirty;
        zero += isZero ? 1 : 0;
      }
    }
    assert.ok(zero > 0 && marked > 0, `${zero} zero pages, ${marked} marked`);
  });
});

// ---- pause, throttle, resume --------------------------------------------------------------------

async function pauseThrottleResume(config: GuestConfig, options: GuestMemoryOptions, checkMidway: boolean): Promise<void> {
  await withGuest(config, options, async (g) => {
    await g.resume();
    assert.is(g.running, true);
    await waitForSteps(g, 20_000);
    await g.pause();
    assert.is(g.running, false);
    const mid = g.steps;
    assert.ok(mid > 0, 'the guest ran');
    await sleep(20);
    assert.is(g.steps, mid, 'a paused guest does not step');
    if (checkMidway) assertSameMemory(g.memory, replay(config, mid), `paused at ${mid}`);
    g.throttle(60);
    assert.is(g.throttlePercent, 60);
    await g.resume();
    await sleep(30);
    await waitForSteps(g, mid + 20_000);
    g.throttle(0);
    await waitForSteps(g, g.steps + 20_000);
    await g.pause();
    const end = g.steps;
    assert.ok(end > mid, `ran on after the throttle (${mid} → ${end})`);
    const saved = decodeCpuState(g.saveState(), { pageSize: config.pageSize, pageCount: config.memoryBytes / config.pageSize });
    assert.is(saved.counters.steps, end, 'saved step count equals steps');
    assertSameMemory(g.memory, replay(config, end), `paused, throttled and resumed, ${end} steps`);
  });
}

test('a guest paused, throttled to 60% and resumed equals replay of its steps (32 MiB, 2 MiB slabs)', async () => {
  await pauseThrottleResume(guestConfig({ memoryBytes: 32 * MiB, seed: 31, hotBytes: 3 * MiB }), { maxSlabBytes: 2 * MiB, arenaBytes: 1 << 16 }, true);
});

test('a uniform guest whose pages do not fill the last slab equals replay of its steps', async () => {
  await pauseThrottleResume(guestConfig({ memoryBytes: ODD_BYTES, workload: 'uniform', seed: 32 }), SMALL_SLABS, false);
});

test('a guest with 16 KiB pages equals replay of its steps', async () => {
  await pauseThrottleResume(guestConfig({ memoryBytes: 16 * MiB, pageSize: 16384, fill: 'random', seed: 33 }), SMALL_SLABS, false);
});

test('a rate-limited guest equals replay of its steps', async () => {
  const config = guestConfig({ memoryBytes: ODD_BYTES, stepsPerSecond: 50_000, seed: 34 });
  await withGuest(config, SMALL_SLABS, async (g) => {
    await g.resume();
    await waitForSteps(g, 1_000);
    g.throttle(50);
    await waitForSteps(g, g.steps + 1_000);
    await g.pause();
    assertSameMemory(g.memory, replay(config, g.steps), `rate-limited, ${g.steps} steps`);
  });
});

test('throttle accepts 0..99 and rejects anything else', async () => {
  await withGuest(guestConfig(), SMALL_SLABS, async (g) => {
    g.throttle(99);
    assert.is(g.throttlePercent, 99);
    g.throttle(0);
    assert.is(g.throttlePercent, 0);
    for (const bad of [100, -1, 1.5, NaN]) expectCode(() => g.throttle(bad), 'MS_ERR_INVALID_ARGUMENT', `throttle(${bad})`);
    assert.is(g.throttlePercent, 0);
  });
});

// ---- runUntil -----------------------------------------------------------------------------------

test('runUntil stops at exactly N steps, and memory equals replay of N', async () => {
  const config = guestConfig({ memoryBytes: ODD_BYTES, seed: 41 });
  await withGuest(config, SMALL_SLABS, async (g) => {
    for (const n of [0, 1, 4095, 4097, 123_457, 300_000]) {
      await g.runUntil(n);
      assert.is(g.steps, n);
      assert.is(g.running, false);
    }
    assertSameMemory(g.memory, replay(config, 300_000), 'runUntil(300000)');
    await g.runUntil(300_000);
    assert.is(g.steps, 300_000, 'runUntil of the current count is a no-op');
  });
});

test('runUntil after a free run and a pause lands exactly on N', async () => {
  const config = guestConfig({ memoryBytes: 16 * MiB, seed: 42, workload: 'uniform' });
  await withGuest(config, { maxSlabBytes: 4 * MiB, arenaBytes: 1 << 16 }, async (g) => {
    await g.resume();
    await waitForSteps(g, 10_000);
    await g.pause();
    const target = g.steps + 77_777;
    await g.runUntil(target);
    assert.is(g.steps, target);
    assertSameMemory(g.memory, replay(config, target), `runUntil(${target})`);
  });
});

test('runUntil with a rate limit stops at exactly N steps', async () => {
  const config = guestConfig({ memoryBytes: ODD_BYTES, seed: 43, stepsPerSecond: 100_000 });
  await withGuest(config, SMALL_SLABS, async (g) => {
    await g.runUntil(7_777);
    assert.is(g.steps, 7_777);
    assertSameMemory(g.memory, replay(config, 7_777), 'rate-limited runUntil');
  });
});

test('runUntil below the current step count is rejected', async () => {
  await withGuest(guestConfig(), SMALL_SLABS, async (g) => {
    await g.runUntil(1000);
    await expectCodeAsync(() => g.runUntil(999), 'MS_ERR_INVALID_ARGUMENT', 'runUntil(999) at 1000');
    await expectCodeAsync(() => g.runUntil(1000.5), 'MS_ERR_INVALID_ARGUMENT', 'runUntil(1000.5)');
    assert.is(g.steps, 1000);
  });
});

test('runUntil on an idle guest returns, leaving the initial fill', async () => {
  const config = guestConfig({ memoryBytes: ODD_BYTES, workload: 'idle' });
  const g = SimulatedGuest.create(config, SMALL_SLABS);
  try {
    // A hang guard, not a timing claim: an idle guest has nothing to run.
    const r = await settlesWithin(g.runUntil(1000), 5000);
    assert.ok(r.settled, 'runUntil(1000) on an idle guest never returned');
    assert.is(g.running, false);
    assertSameMemory(g.memory, replay(config, 1000), 'idle guest after runUntil');
  } finally {
    await g.close();
  }
});

// ---- moving the vCPU: saveState on one guest, loadState on another --------------------------------

async function migrateAndContinue(config: GuestConfig, n: number, k: number, srcOptions: GuestMemoryOptions, dstOptions: GuestMemoryOptions): Promise<void> {
  const src = SimulatedGuest.create(config, srcOptions);
  const dst = SimulatedGuest.receiving(ramRegions(config), dstOptions);
  try {
    await src.runUntil(n);
    const state = src.saveState();
    copyRegion(src.memory, dst.memory);
    dst.checkState(state);
    dst.loadState(state);
    assert.is(dst.steps, n, 'the destination starts at the source count');
    await dst.runUntil(n + k);
    assert.is(dst.steps, n + k);
    assertSameMemory(dst.memory, replay(config, n + k), `${n} steps on the source + ${k} on the destination`);
    const after = decodeCpuState(dst.saveState(), { pageSize: config.pageSize, pageCount: config.memoryBytes / config.pageSize });
    assert.is(after.counters.steps, n + k);
    assert.is(src.steps, n, 'the source did not run on');
  } finally {
    await src.close();
    await dst.close();
  }
}

test('N steps on one guest and K on another equal replay of N + K (different slab sizes)', async () => {
  await migrateAndContinue(guestConfig({ memoryBytes: ODD_BYTES, seed: 51 }), 150_001, 99_999, SMALL_SLABS, { maxSlabBytes: 2 * MiB, arenaBytes: 1 << 16 });
});

test('N steps on one guest and K on another equal replay of N + K with a rate limit', async () => {
  await migrateAndContinue(guestConfig({ memoryBytes: ODD_BYTES, seed: 52, workload: 'uniform', stepsPerSecond: 100_000 }), 4_000, 6_000, SMALL_SLABS, SMALL_SLABS);
});

test('a guest moved twice (A → B → C) equals one uninterrupted run', async () => {
  const config = guestConfig({ memoryBytes: 8 * MiB, seed: 53, hotBytes: MiB });
  const guests = [SimulatedGuest.create(config, SMALL_SLABS)];
  try {
    await guests[0].runUntil(40_000);
    let steps = 40_000;
    for (const extra of [30_000, 20_000]) {
      const from = guests[guests.length - 1];
      const to = SimulatedGuest.receiving(from.regions, SMALL_SLABS);
      guests.push(to);
      await from.pause();
      copyRegion(from.memory, to.memory);
      to.loadState(from.saveState());
      await to.resume();
      await sleep(10);
      await to.pause();
      steps = to.steps + extra;
      await to.runUntil(steps);
    }
    assert.is(guests[2].steps, steps);
    assertSameMemory(guests[2].memory, replay(config, steps), `A → B → C, ${steps} steps`);
  } finally {
    for (const g of guests) await g.close();
  }
});

test('saveState is refused while the guest runs', async () => {
  await withGuest(guestConfig(), SMALL_SLABS, async (g) => {
    await g.resume();
    expectCode(() => g.saveState(), 'MS_ERR_UNEXPECTED_MESSAGE', 'saveState while running');
    await g.pause();
    assert.is(g.saveState().byteLength, 64);
  });
});

test('loadState is refused once the guest has run', async () => {
  const config = guestConfig();
  await withGuest(config, SMALL_SLABS, async (src) => {
    const state = src.saveState();
    const dst = SimulatedGuest.receiving(ramRegions(config), SMALL_SLABS);
    try {
      dst.loadState(state);
      await dst.runUntil(10);
      expectCode(() => dst.loadState(state), 'MS_ERR_UNEXPECTED_MESSAGE', 'second loadState');
      assert.is(dst.steps, 10);
    } finally {
      await dst.close();
    }
  });
});

test('a receiving guest without device state refuses to run or save', async () => {
  const dst = SimulatedGuest.receiving(ramRegions({ memoryBytes: MiB, pageSize: 4096, ramRegions: 1 }), SMALL_SLABS);
  try {
    assert.is(dst.config, null);
    assert.is(dst.steps, 0);
    assert.ok(isZeroBytes(regionImage(dst.memory)), 'receiving memory starts zero');
    expectCode(() => dst.saveState(), 'MS_ERR_DEVICE_STATE_INVALID', 'saveState without state');
    await expectCodeAsync(() => dst.resume(), 'MS_ERR_DEVICE_STATE_INVALID', 'resume without state');
  } finally {
    await dst.close();
  }
});

test('receiving refuses regions without RAM as region 0', () => {
  expectCode(() => SimulatedGuest.receiving([{ id: 1, name: 'disk', kind: 'disk', pageSize: 4096, pageCount: 16 }]), 'MS_ERR_INVALID_ARGUMENT', 'no region 0');
  expectCode(() => SimulatedGuest.receiving([{ id: RAM_REGION_ID, name: 'disk', kind: 'disk', pageSize: 4096, pageCount: 16 }]), 'MS_ERR_INVALID_ARGUMENT', 'region 0 is a disk');
});

test('a closed guest keeps its memory and refuses to resume', async () => {
  const config = guestConfig({ seed: 61 });
  const g = SimulatedGuest.create(config, SMALL_SLABS);
  await g.runUntil(5000);
  await g.close();
  assert.is(g.steps, 5000);
  assertSameMemory(g.memory, replay(config, 5000), 'closed guest');
  await expectCodeAsync(() => g.resume(), 'MS_ERR_WORKER_FAILED', 'resume after close');
});

test('contentDigest of a guest equals that of replay at the same step count', async () => {
  const config = guestConfig({ memoryBytes: ODD_BYTES, seed: 71 });
  await withGuest(config, SMALL_SLABS, async (g) => {
    await g.runUntil(20_000);
    const ref = replay(config, 20_000);
    assert.is(g.memory.contentDigest(), ref.contentDigest());
    assert.is.not(ref.contentDigest(), replay(config, 20_001).contentDigest());
  });
});

test('a received guest says its unwritten pages are zero until its state is loaded, and not after (its pages came unmarked)', async () => {
  const source = SimulatedGuest.create(guestConfig({ memoryBytes: 4 * MiB, seed: 3 }));
  const target = SimulatedGuest.receiving(source.regions);
  try {
    assert.ok(source.unwrittenPagesAreZero, 'a created guest marks every write');
    assert.ok(target.unwrittenPagesAreZero, 'a fresh receiving guest holds zeros');
    target.loadState(source.saveState());
    assert.not.ok(target.unwrittenPagesAreZero, 'after a migration or restore it must send every page as a source');
  } finally {
    await source.close();
    await target.close();
  }
});

test.run();
