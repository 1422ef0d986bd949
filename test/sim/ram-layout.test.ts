// ram-layout: cutting the simulated guest's RAM into regions moves pages, never changes them. A guest
// of N regions run for S steps holds, guest page by guest page, exactly the bytes of the one-region
// guest with the same config; its state moves between guests of either cut; and the vCPU names each
// page to the post-copy gate by the right (region, region page).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createPageGate, createPageGateInit, readFault, type PageGate } from '../../src/memory/page-gate.js';
import type { Region } from '../../src/memory/types.js';
import { SimulatedGuest, ramRegions, replay, resolveGuestConfig, type GuestConfig } from '../../src/sim/index.js';
import { mapSlabs } from '../../src/sim/ram-layout.js';
import { ramSlabs } from '../../src/sim/simulated-guest.js';
import { StepRunner, initialCounters, workloadShape } from '../../src/sim/workload.js';
import { SMALL_SLABS, expectCode, guestImage } from '../_support/guest-helpers.js';

const INVALID = 'MS_ERR_INVALID_ARGUMENT';
/** 1027 pages: two regions of 512 and 515 pages, over 256-page slabs the second region's last slab is 3 pages. */
const ODD_BYTES = 1027 * 4096;

function config(overrides: Partial<GuestConfig>): GuestConfig {
  return resolveGuestConfig({ memoryBytes: ODD_BYTES, seed: 11, ...overrides });
}

/** First guest page that differs between the two images, or -1. */
function firstDifferentPage(a: Buffer, b: Buffer, pageSize: number): number {
  if (a.length !== b.length) return 0;
  for (let p = 0; p * pageSize < a.length; p++) {
    if (!a.subarray(p * pageSize, (p + 1) * pageSize).equals(b.subarray(p * pageSize, (p + 1) * pageSize))) return p;
  }
  return -1;
}

// ---- the cut -------------------------------------------------------------------------------------

test('ramRegions cuts memory into consecutive regions of whole 64-page words, the last holding the rest', () => {
  assert.equal(ramRegions(config({ ramRegions: 1 })), [{ id: 0, name: 'ram', kind: 'ram', pageSize: 4096, pageCount: 1027 }]);
  assert.equal(ramRegions(config({ ramRegions: 2 })).map((r) => [r.id, r.name, r.kind, r.pageCount]), [[0, 'ram0', 'ram', 512], [1, 'ram1', 'ram', 515]]);
  assert.equal(ramRegions(config({ ramRegions: 4, memoryBytes: 64 << 20 })).map((r) => r.pageCount), [4096, 4096, 4096, 4096]);
  assert.equal(ramRegions(config({ ramRegions: 3 })).map((r) => r.pageCount), [320, 320, 387]);
});

test('resolveGuestConfig takes 1..4 RAM regions of at least 64 pages each, naming ramRegions otherwise', () => {
  for (const bad of [0, 5, 1.5, -1]) {
    const e = expectCode(() => config({ ramRegions: bad }), INVALID, `ramRegions ${bad}`);
    assert.match(e.message, /^ramRegions /);
  }
  expectCode(() => config({ ramRegions: 2, memoryBytes: 127 * 4096 }), INVALID, '127 pages in 2 regions');
  assert.is(config({ ramRegions: 2, memoryBytes: 128 * 4096 }).ramRegions, 2);
  assert.is(config({}).ramRegions, 1, 'one region by default');
});

// ---- contents do not depend on the cut --------------------------------------------------------------

for (const [workload, fill, regions] of [['hotset', 'mixed', 2], ['uniform', 'random', 2], ['uniform', 'mixed', 3], ['hotset', 'mixed', 4]] as const) {
  test(`a ${regions}-region ${workload} guest replayed N steps equals the 1-region guest page by page (fill ${fill})`, () => {
    const memoryBytes = regions === 4 ? 4 << 20 : ODD_BYTES;
    const one = replay(config({ workload, fill, memoryBytes }), 300_000, SMALL_SLABS);
    const cut = replay(config({ workload, fill, memoryBytes, ramRegions: regions }), 300_000, SMALL_SLABS);
    assert.is(cut.regions.length, regions);
    assert.is(firstDifferentPage(guestImage(cut), guestImage(one), 4096), -1);
    assert.ok(guestImage(one).length === memoryBytes);
  });
}

test('a 2-region guest on its vCPU thread, run N steps, equals the 1-region replay of N bit for bit', async () => {
  const c = config({ workload: 'uniform', ramRegions: 2 });
  const g = SimulatedGuest.create(c, SMALL_SLABS);
  try {
    await g.runUntil(123_457);
    assert.equal(g.regions.map((r) => r.name), ['ram0', 'ram1']);
    assert.is(firstDifferentPage(guestImage(g.memory), guestImage(replay({ ...c, ramRegions: 1 }, 123_457)), 4096), -1);
  } finally {
    await g.close();
  }
});

test('N steps on a 2-region guest and K on a received 2-region guest equal the 1-region replay of N + K', async () => {
  const c = config({ seed: 12, ramRegions: 2 });
  const src = SimulatedGuest.create(c, SMALL_SLABS);
  const dst = SimulatedGuest.receiving(src.regions, { maxSlabBytes: 512 << 10, arenaBytes: 1 << 16 });
  try {
    await src.runUntil(40_000);
    for (const r of src.regions) {
      for (const s of src.memory.slabsOf(r.id)) {
        for (let p = 0; p < s.pageCount; p++) dst.memory.pageView(r.id, s.firstPage + p).set(src.memory.pageView(r.id, s.firstPage + p));
      }
    }
    dst.loadState(src.saveState());
    await dst.runUntil(70_000);
    assert.is(firstDifferentPage(guestImage(dst.memory), guestImage(replay({ ...c, ramRegions: 1 }, 70_000)), 4096), -1);
  } finally {
    await src.close();
    await dst.close();
  }
});

// ---- received layouts ---------------------------------------------------------------------------

test('a receiving guest checks device state against all its RAM, whatever the cut', async () => {
  const c = config({ ramRegions: 2 });
  const src = SimulatedGuest.create(c, SMALL_SLABS);
  const whole = SimulatedGuest.receiving(ramRegions({ ...c, ramRegions: 1 }), SMALL_SLABS);
  const half = SimulatedGuest.receiving(ramRegions(c).slice(0, 1), SMALL_SLABS);
  try {
    const state = src.saveState();
    whole.checkState(state);
    expectCode(() => half.checkState(state), 'MS_ERR_DEVICE_STATE_INVALID', 'only the first region');
  } finally {
    for (const g of [src, whole, half]) await g.close();
  }
});

test('receiving refuses RAM regions out of order, of mixed page sizes, or cut off a 64-page word', () => {
  const r = (id: number, pageCount: number, pageSize = 4096): Region => ({ id, name: `ram${id}`, kind: 'ram', pageSize, pageCount });
  const cases: [string, Region[]][] = [
    ['ids 1, 0', [r(1, 64), r(0, 64)]],
    ['ids 0, 2', [r(0, 64), r(2, 64)]],
    ['4 KiB and 8 KiB pages', [r(0, 64), r(1, 64, 8192)]],
    ['a first region of 100 pages', [r(0, 100), r(1, 64)]],
  ];
  for (const [what, regions] of cases) {
    const e = expectCode(() => SimulatedGuest.receiving(regions, SMALL_SLABS), INVALID, what);
    assert.match(e.message, /^regions /, what);
  }
});

test('mapSlabs refuses slabs that do not start on 64-page words or do not hold the guest', () => {
  const mem = replay(config({ ramRegions: 2 }), 0, SMALL_SLABS);
  const slabs = ramSlabs(mem);
  const map = mapSlabs(slabs, 1027);
  assert.equal([...map.slabFirst], [0, 256, 512, 768, 1024]);
  assert.is(map.slabOfChunk[1026 >>> 6], 4);
  expectCode(() => mapSlabs(slabs.slice().reverse(), 1027), INVALID, 'the 3-page slab first');
  expectCode(() => mapSlabs(slabs, 1028), INVALID, 'one page more than the slabs hold');
});

// ---- the post-copy gate ---------------------------------------------------------------------------

/**
 * Runs `steps` steps with every page missing at first; each first touch faults through the real page
 * gate, and the receiver's part is played inline (the page arrives, so the wait returns at once).
 * Returns the (region, region page) of each fault, read back from the mailbox.
 */
function faultsOf(c: GuestConfig, steps: number): { regionId: number; page: number }[] {
  const mem = replay(c, 0, SMALL_SLABS);
  const slabs = ramSlabs(mem);
  const init = createPageGateInit();
  const real = createPageGate(init, slabs);
  const faults: { regionId: number; page: number }[] = [];
  const gate: PageGate = {
    open: false,
    isPresent: (si, local) => real.isPresent(si, local),
    waitForPage(si, local) {
      const s = slabs[si];
      Atomics.or(new Int32Array(s.memory.buffer), (s.layout.present >>> 2) + (local >>> 5), 1 << (local & 31));
      real.waitForPage(si, local);
      const { regionId, page } = readFault(new Int32Array(init.mailbox));
      faults.push({ regionId, page });
    },
    isBlockPresent: () => true,
    waitForBlock() {
      throw new Error('a guest without disks faulted a block');
    },
  };
  const runner = new StepRunner(workloadShape(c), slabs, initialCounters(c));
  runner.gate = gate;
  runner.run(steps);
  return faults;
}

test('the vCPU names each missing page to the gate by (region, region page) of the guest page it touches', () => {
  const c = config({ workload: 'uniform', seed: 13 });
  const cut = ramRegions({ ...c, ramRegions: 2 });
  const expected = faultsOf(c, 3000).map(({ regionId, page }) => {
    assert.is(regionId, 0);
    return page < cut[0].pageCount ? { regionId: 0, page } : { regionId: 1, page: page - cut[0].pageCount };
  });
  const got = faultsOf({ ...c, ramRegions: 2 }, 3000);
  assert.ok(got.some((f) => f.regionId === 1) && got.some((f) => f.regionId === 0), 'faults in both regions');
  assert.ok(got.length > 500, `${got.length} faults`);
  assert.equal(got, expected);
});

test.run();
