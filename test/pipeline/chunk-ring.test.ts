// The chunk ring: how many chunks an arena holds, the free → encoding → writing → free cycle, and the
// bookkeeping errors it refuses.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ChunkRing } from '../../src/pipeline/chunk-ring.js';
import { expectCode } from '../_support/guest-helpers.js';
import { PS, TWO_CHUNKS, smallGuest, spec } from '../_support/pipeline-helpers.js';
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
  const mem = GuestMemory.allocate([spec(0, 64)], { maxSlabBytes: 1 << 20, arenaBytes: 5 << 20 });
  expectCode(() => new ChunkRing(mem.allSlabs()), 'MS_ERR_INVALID_ARGUMENT', 'one-chunk arena');
});

test.run();
