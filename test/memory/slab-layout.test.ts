// slab-layout: every area of a slab lies above the kernels' reserved bytes, inside the memory, apart from
// every other area, and aligned as the kernels and the vCPU need (atomics on bitmap words, 64 KiB RAM).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CONTROL_BYTES, MAX_MEMORY_BYTES, SCRATCH_AGENTS, computeSlabLayout, windowOf, isValidPageSize, scratchSlot,
  type SlabLayout, type SlabLayoutOptions,
} from '../../src/memory/slab-layout.js';
import { KERNEL_RESERVED_BYTES } from '../../src/wasm/kernels.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { expectCode } from '../_support/guest-helpers.js';

const INVALID = 'MS_ERR_INVALID_ARGUMENT';

function areas(l: SlabLayout): [string, number, number][] {
  const bitmap = l.bitmapWords * 8;
  return [
    ['control', l.control, CONTROL_BYTES],
    ['dirty', l.dirty, bitmap],
    ['snapshot', l.snapshot, bitmap],
    ['present', l.present, bitmap],
    ['claim', l.claim, bitmap],
    ['hashes', l.hashes, l.pageCount * 8],
    ['scratch', l.scratch, SCRATCH_AGENTS * l.scratchSlotBytes],
    ['arena', l.arena, l.arenaBytes],
    ['cacheTags', l.cacheTags, l.cacheSlots * 4],
    ['cache', l.cache, l.cacheSlots * l.pageSize],
    ['ram', l.ram, l.ramBytes],
  ];
}

/** Returns a list of violated properties (empty when the layout is sound). */
function checkLayout(l: SlabLayout): string[] {
  const problems: string[] = [];
  const list = areas(l);
  for (const [name, off, len] of list) {
    if (off < KERNEL_RESERVED_BYTES) problems.push(`${name} at ${off} is inside the kernels' reserved bytes`);
    if (off + len > l.totalBytes) problems.push(`${name} [${off}, +${len}) ends past totalBytes ${l.totalBytes}`);
  }
  const nonEmpty = list.filter(([, , len]) => len > 0).sort((a, b) => a[1] - b[1]);
  for (let i = 1; i < nonEmpty.length; i++) {
    const [pn, po, pl] = nonEmpty[i - 1];
    const [n, o] = nonEmpty[i];
    if (po + pl > o) problems.push(`${pn} [${po}, +${pl}) overlaps ${n} at ${o}`);
  }
  for (const name of ['dirty', 'snapshot', 'present', 'claim', 'hashes'] as const) {
    if (l[name] % 8 !== 0) problems.push(`${name} at ${l[name]} is not 8-byte aligned`);
  }
  if (l.ram % 65536 !== 0) problems.push(`ram at ${l.ram} is not 64 KiB aligned`);
  if (l.totalBytes % 65536 !== 0) problems.push(`totalBytes ${l.totalBytes} is not a multiple of 65536`);
  if (l.cacheSlots > 0 && l.cache % l.pageSize !== 0) problems.push(`cache at ${l.cache} is not page aligned`);
  if (l.scratch % l.pageSize !== 0) problems.push(`scratch at ${l.scratch} is not page aligned`);
  if (l.bitmapWords !== Math.ceil(l.pageCount / 64)) problems.push(`bitmapWords ${l.bitmapWords} for ${l.pageCount} pages`);
  if (l.ramBytes !== l.pageCount * l.pageSize) problems.push(`ramBytes ${l.ramBytes}`);
  if (l.totalBytes > MAX_MEMORY_BYTES) problems.push(`totalBytes ${l.totalBytes} above 4 GiB`);
  return problems;
}

const fixed: [number, number, SlabLayoutOptions][] = [
  [4096, 1, { arenaBytes: 0, cacheSlots: 0 }],
  [4096, 63, { arenaBytes: 0, cacheSlots: 0 }],
  [4096, 64, { arenaBytes: 1 << 16, cacheSlots: 64 }],
  [4096, 65, { arenaBytes: 12345, cacheSlots: 3 }],
  [8192, 1000, { arenaBytes: 32 << 20, cacheSlots: 0 }],
  [65536, 3, { arenaBytes: 1, cacheSlots: 1 }],
  [4096, 786432, { arenaBytes: 32 << 20, cacheSlots: 1024 }], // 3 GiB, the default slab
];
for (const [ps, pc, opts] of fixed) {
  test(`layout of ${pc} pages of ${ps} B (arena ${opts.arenaBytes}, cache ${opts.cacheSlots}) has disjoint, aligned areas`, () => {
    const l = computeSlabLayout(ps, pc, opts);
    assert.equal(checkLayout(l), []);
    assert.equal([l.pageSize, l.pageCount, l.arenaBytes, l.cacheSlots], [ps, pc, opts.arenaBytes, opts.cacheSlots]);
  });
}

test('layouts of random shapes have disjoint, aligned areas', () => {
  let x = 0x2545f491;
  const rnd = (n: number): number => {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    return (x >>> 0) % n;
  };
  for (let i = 0; i < 2000; i++) {
    const ps = 4096 << rnd(5);
    const pc = 1 + rnd(i % 2 === 0 ? 300 : (1 << 30) / ps);
    const opts = { arenaBytes: rnd(3) === 0 ? 0 : rnd(64 << 20), cacheSlots: rnd(3) === 0 ? 0 : rnd(4096) };
    let l: SlabLayout;
    try {
      l = computeSlabLayout(ps, pc, opts);
    } catch (err) {
      assert.unreachable(`${pc}×${ps} ${JSON.stringify(opts)} threw ${(err as Error).message}`);
      return;
    }
    const p = checkLayout(l);
    assert.equal(p, [], `${pc}×${ps} ${JSON.stringify(opts)}`);
  }
});

test('a layout too large for one 4 GiB memory throws MS_ERR_INVALID_ARGUMENT', () => {
  const err = expectCode(() => computeSlabLayout(4096, 2 ** 20, { arenaBytes: 0, cacheSlots: 0 }), INVALID, '4 GiB of RAM');
  assert.ok(err.message.includes('4 GiB'), err.message);
  expectCode(() => computeSlabLayout(4096, 2 ** 19, { arenaBytes: 2 ** 31, cacheSlots: 0 }), INVALID, '2 GiB RAM + 2 GiB arena');
  expectCode(() => computeSlabLayout(65536, 2 ** 16 - 1, { arenaBytes: 0, cacheSlots: 16 }), INVALID, "4 GiB less one page of RAM + bookkeeping");
});

test('the largest slab that fits ends at or below 4 GiB, and one more page does not fit', () => {
  const opts = { arenaBytes: 32 << 20, cacheSlots: 0 };
  let lo = 1;
  let hi = 2 ** 20;
  // Invariant: lo fits, hi does not.
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    try {
      computeSlabLayout(4096, mid, opts);
      lo = mid;
    } catch {
      hi = mid;
    }
  }
  const l = computeSlabLayout(4096, lo, opts);
  assert.equal(checkLayout(l), []);
  assert.ok(l.totalBytes <= MAX_MEMORY_BYTES);
  expectCode(() => computeSlabLayout(4096, lo + 1, opts), INVALID, 'one page more');
  // Bookkeeping (bitmaps, hashes, scratch, arena) is well under 64 MiB for a 4 GiB slab.
  assert.ok(lo * 4096 > MAX_MEMORY_BYTES - (64 << 20), `largest slab holds ${lo} pages`);
});

const badArgs: [string, () => unknown, string][] = [
  ['a page size of 2048', () => computeSlabLayout(2048, 10, { arenaBytes: 0, cacheSlots: 0 }), 'pageSize'],
  ['a page size of 12288', () => computeSlabLayout(12288, 10, { arenaBytes: 0, cacheSlots: 0 }), 'pageSize'],
  ['a page size of 131072', () => computeSlabLayout(131072, 10, { arenaBytes: 0, cacheSlots: 0 }), 'pageSize'],
  ['zero pages', () => computeSlabLayout(4096, 0, { arenaBytes: 0, cacheSlots: 0 }), 'pageCount'],
  ['a fractional page count', () => computeSlabLayout(4096, 1.5, { arenaBytes: 0, cacheSlots: 0 }), 'pageCount'],
  ['a negative arena', () => computeSlabLayout(4096, 1, { arenaBytes: -1, cacheSlots: 0 }), 'arenaBytes'],
  ['a fractional cache slot count', () => computeSlabLayout(4096, 1, { arenaBytes: 0, cacheSlots: 0.5 }), 'cacheSlots'],
];
for (const [what, fn, field] of badArgs) {
  test(`computeSlabLayout rejects ${what}, naming ${field}`, () => {
    const err = expectCode(fn, INVALID, what);
    assert.ok(err.message.startsWith(field), err.message);
  });
}

test('isValidPageSize accepts exactly the powers of two from 4 KiB to 64 KiB', () => {
  const valid = [];
  for (let n = 1; n <= 1 << 18; n *= 2) if (isValidPageSize(n)) valid.push(n);
  assert.equal(valid, [4096, 8192, 16384, 32768, 65536]);
  assert.is(isValidPageSize(4096.5), false);
  assert.is(isValidPageSize(4096 + 4096 * 2), false);
});

test('scratch slots are disjoint, inside the scratch area, and the agent index is checked', () => {
  const l = computeSlabLayout(8192, 100, { arenaBytes: 4096, cacheSlots: 2 });
  let prevEnd = l.scratch;
  for (let a = 0; a < SCRATCH_AGENTS; a++) {
    const s = scratchSlot(l, a);
    assert.is(s.page, prevEnd, `slot ${a} starts where slot ${a - 1} ended`);
    assert.is(s.page2, s.page + 8192);
    assert.is(s.result, s.page2 + 8192);
    prevEnd = s.result + 64;
  }
  assert.is(prevEnd, l.scratch + SCRATCH_AGENTS * l.scratchSlotBytes);
  expectCode(() => scratchSlot(l, SCRATCH_AGENTS), INVALID, 'agent 16');
  expectCode(() => scratchSlot(l, -1), INVALID, 'agent -1');
});

test('a region splits into slabs of whole 64-page words, the last one holding the rest', () => {
  const mem = GuestMemory.allocate([{ id: 0, name: 'ram', kind: 'ram', pageSize: 4096, pageCount: 1000 }], {
    maxSlabBytes: (1 << 20) + 5000, arenaBytes: 0,
  });
  const slabs = mem.slabsOf(0);
  // (1 MiB + 5000) / 4 KiB = 257.2 pages, rounded down to 256 (four words).
  assert.equal(slabs.map((s) => [s.index, s.firstPage, s.pageCount]), [[0, 0, 256], [1, 256, 256], [2, 512, 256], [3, 768, 232]]);
  for (const s of slabs) {
    assert.equal(checkLayout(s.layout), []);
    assert.is(s.memory.buffer.byteLength, s.layout.totalBytes);
  }
});

test('a slab holds five bitmaps (dirty, snapshot, present, claim, written) and no area that nothing uses', () => {
  const l = computeSlabLayout(4096, 1000, { arenaBytes: 0, cacheSlots: 0 });
  const documented = [
    'pageSize', 'pageCount', 'bitmapWords', 'control', 'dirty', 'snapshot', 'present', 'claim', 'written', 'hashes', 'scratch',
    'scratchSlotBytes', 'arena', 'arenaBytes', 'cacheTags', 'cache', 'cacheSlots', 'ram', 'ramBytes', 'windowPages', 'totalBytes',
  ];
  assert.equal(Object.keys(l).sort(), [...documented].sort());
  // Bitmaps sit back to back, and the hashes follow the last one directly.
  const bitmap = l.bitmapWords * 8;
  assert.equal([l.snapshot - l.dirty, l.present - l.snapshot, l.claim - l.present, l.written - l.claim, l.hashes - l.written], [bitmap, bitmap, bitmap, bitmap, bitmap]);
});

test('a file-backed slab holds a window per scratch agent in place of its pages, so its size does not grow with the region', () => {
  const small = computeSlabLayout(4096, 1024, { arenaBytes: 0, cacheSlots: 0, windowPages: 512 });
  const large = computeSlabLayout(4096, 1024 * 1024, { arenaBytes: 0, cacheSlots: 0, windowPages: 512 });
  assert.is(small.ramBytes, 16 * 512 * 4096);
  assert.is(large.ramBytes, small.ramBytes);
  assert.is(windowOf(large, 3) - windowOf(large, 2), 512 * 4096);
  assert.ok(windowOf(large, 15) + 512 * 4096 <= large.totalBytes);
  expectCode(() => windowOf(computeSlabLayout(4096, 64, { arenaBytes: 0, cacheSlots: 0 }), 0), INVALID, 'window of a slab holding its pages');
});

test('GuestMemory rejects a slab size below 64 pages and one too close to 4 GiB', () => {
  const spec = [{ id: 0, name: 'ram', kind: 'ram' as const, pageSize: 4096, pageCount: 10 }];
  expectCode(() => GuestMemory.allocate(spec, { maxSlabBytes: 63 * 4096 }), INVALID, '63 pages');
  expectCode(() => GuestMemory.allocate(spec, { maxSlabBytes: MAX_MEMORY_BYTES }), INVALID, '4 GiB slab');
});

test.run();
