// Pre-touching (memory/pretouch.ts): every page of a fresh guest becomes resident, on one thread or
// spread over several, across slab boundaries; pages stay zero; a file-backed slab is left alone.

import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { PARALLEL_FROM_PAGES, pretouch, touchOnThread } from '../../src/memory/pretouch.js';

const MiB = 2 ** 20;

/** Bytes of this process's memory resident now (anonymous and shared), from /proc. */
function residentBytes(): number {
  const rollup = readFileSync('/proc/self/smaps_rollup', 'utf8');
  return Number(/^Rss:\s+(\d+) kB/m.exec(rollup)![1]) * 1024;
}

function freshGuest(bytes: number): GuestMemory {
  // Odd slab size: shares cut across slab boundaries.
  return GuestMemory.allocate([{ id: 0, name: 'ram', kind: 'ram', pageSize: 4096, pageCount: bytes / 4096 }], { maxSlabBytes: 24 * MiB, arenaBytes: 1 << 16, cacheBytes: 0 });
}

for (const threads of [1, 3]) {
  test(`pre-touching on ${threads} thread(s) makes every page of a fresh guest resident and leaves it zero`, async () => {
    const bytes = 96 * MiB;
    assert.ok(bytes / 4096 >= PARALLEL_FROM_PAGES, 'large enough to be split');
    const guest = freshGuest(bytes);
    const before = residentBytes();
    await pretouch(guest.allSlabs(), threads);
    const grown = residentBytes() - before;
    assert.ok(grown >= bytes * 0.95, `resident memory grew by ${(grown / MiB).toFixed(1)} MiB for a ${bytes / MiB} MiB guest`);
    for (const s of guest.allSlabs()) {
      const ram = new Uint8Array(s.memory.buffer, s.layout.ram, s.pageCount * 4096);
      assert.ok(ram.every((b) => b === 0), `slab ${s.index} holds only zeros`);
    }
  });
}

test('a range touched on a thread of its own (the XBZRLE caches of a source, beside a pass) becomes resident', async () => {
  const guest = freshGuest(48 * MiB);
  const [first, second] = guest.allSlabs();
  const before = residentBytes();
  // Part of one slab and all of the next: only those pages.
  await touchOnThread([
    { memory: first.memory, ram: first.layout.ram, pageSize: 4096, from: 1024, to: first.pageCount },
    { memory: second.memory, ram: second.layout.ram, pageSize: 4096, from: 0, to: second.pageCount },
  ]);
  const pages = first.pageCount - 1024 + second.pageCount;
  const grown = residentBytes() - before;
  assert.ok(grown >= pages * 4096 * 0.95, `resident memory grew by ${(grown / MiB).toFixed(1)} MiB for ${pages * 4096 / MiB} MiB touched`);
});

test('touching changes no byte: a page written before or while it is touched keeps what was written', async () => {
  const guest = freshGuest(24 * MiB);
  const [slab] = guest.allSlabs();
  const u8 = new Uint8Array(slab.memory.buffer);
  const at = (page: number): number => slab.layout.ram + page * 4096;
  // The first word of every 7th page (the word a touch writes) holds something before the touch.
  for (let p = 0; p < slab.pageCount; p += 7) u8.fill(0xa5, at(p), at(p) + 8);
  const touched = touchOnThread([{ memory: slab.memory, ram: slab.layout.ram, pageSize: 4096, from: 0, to: slab.pageCount }]);
  // And pages written from here while the worker runs.
  for (let p = 3; p < slab.pageCount; p += 7) u8.fill(0x5a, at(p), at(p) + 8);
  await touched;
  for (let p = 0; p < slab.pageCount; p++) {
    const want = p % 7 === 0 ? 0xa5 : p % 7 === 3 ? 0x5a : 0;
    for (let i = 0; i < 8; i++) if (u8[at(p) + i] !== want) assert.unreachable(`page ${p} byte ${i}: ${u8[at(p) + i]}, written ${want}`);
  }
});

test('a touch stopped part-way settles without an error: the worker is ended where it is', async () => {
  const guest = freshGuest(96 * MiB);
  const [slab] = guest.allSlabs();
  const stop = new AbortController();
  const touched = touchOnThread([{ memory: slab.memory, ram: slab.layout.ram, pageSize: 4096, from: 0, to: slab.pageCount }], stop.signal);
  stop.abort();
  // A terminated worker exits with code 1: a touch without a stop reports that as a failure.
  const outcome = await touched.then(() => 'settled', (e: unknown) => `rejected: ${String(e)}`);
  assert.is(outcome, 'settled');
});

test.run();
