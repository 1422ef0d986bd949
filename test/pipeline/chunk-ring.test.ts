// The chunk ring: how many chunks an arena holds, the free → encoding → writing → free cycle, and the
// bookkeeping errors it refuses.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ChunkRing } from '../../src/pipeline/chunk-ring.js';
import { expectCode } from '../_support/guest-helpers.js';
import { CHUNK_BYTES, PS, TWO_CHUNKS, smallGuest, spec } from '../_support/pipeline-helpers.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';

test('each slab gets as many chunks as its arena holds, all free', () => {
  const mem = smallGuest([spec(0, 2048), spec(1, 512)]);
  const ring = new ChunkRing(mem.allSlabs());
  assert.equal(mem.allSlabs().map((_, i) => [ring.capacity(i), ring.available(i)]), [[2, 2], [2, 2], [2, 2]]);
  assert.ok(ring.payloadLimit(0) >= 16 * PS);
});

test('a chunk goes free → encoding → writing → free, and take() says null when none is free', () => {
  const mem = smallGuest([spec(0, 1024)]);
  const slab = mem.allSlabs()[0];
  const ring = new ChunkRing([slab]);
  const a = ring.take(0)!;
  const b = ring.take(0)!;
  assert.is.not(a, b);
  assert.ok(a >= slab.layout.arena && b < slab.layout.arena + TWO_CHUNKS, 'chunks lie in the arena');
  assert.is(ring.take(0), null);
  assert.is(ring.stateOf(0, a), 'encoding');
  ring.writing(0, a);
  assert.is(ring.stateOf(0, a), 'writing');
  ring.release(0, a);
  ring.release(0, b);
  assert.equal([ring.stateOf(0, a), ring.stateOf(0, b), ring.available(0)], ['free', 'free', 2]);
  assert.throws(() => ring.release(0, a), /released while free/);
  assert.throws(() => ring.writing(0, b), /expected encoding/);
});

test('an arena that holds fewer than two chunks is rejected', () => {
  const mem = GuestMemory.allocate([spec(0, 64)], { maxSlabBytes: 1 << 20, arenaBytes: CHUNK_BYTES + (CHUNK_BYTES >> 1) });
  expectCode(() => new ChunkRing(mem.allSlabs()), 'MS_ERR_INVALID_ARGUMENT', 'one-chunk arena');
});

test.run();

test('a user that never holds more than k chunks only ever gets the first k (the ones mapFirstChunks maps beforehand)', () => {
  const mem = GuestMemory.allocate([spec(0, 64)], { maxSlabBytes: 1 << 20, arenaBytes: 40 << 20 });
  const slab = mem.allSlabs()[0];
  const ring = new ChunkRing([slab]);
  const k = 3;
  assert.ok(ring.capacity(0) > k + 1, `${ring.capacity(0)} chunks, more than are held`);
  const size = (() => { const a = ring.take(0)!; const b = ring.take(0)!; ring.release(0, b); ring.release(0, a); return b - a; })();
  const held: number[] = [];
  const seen = new Set<number>();
  // Takes and releases in a shuffled order, at most k held at once.
  let x = 7;
  for (let step = 0; step < 500; step++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    if (held.length < k && (held.length === 0 || x % 3 !== 0)) {
      const c = ring.take(0)!;
      held.push(c);
      seen.add(c);
    } else {
      const [c] = held.splice(x % held.length, 1);
      ring.writing(0, c);
      ring.release(0, c);
    }
  }
  const indices = [...seen].map((c) => (c - slab.layout.arena) / size).sort((a, b) => a - b);
  assert.equal(indices, [0, 1, 2]);
});
