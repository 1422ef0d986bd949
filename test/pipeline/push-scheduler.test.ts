// The post-copy push scheduler over a real encoder pool and a recording channel: it covers every
// region and ends when none has pages left; a fault steers the next window to the page after it in the
// faulting region; stopped() ends it early; and it never loops without giving the event loop a turn
// (the bug this replaced spun forever when a second region still had pages).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode, MemshiftError } from '../../src/errors.js';
import type { GuestMemory } from '../../src/memory/guest-memory.js';
import { BatchWriter } from '../../src/pipeline/batch-writer.js';
import { ChunkRing } from '../../src/pipeline/chunk-ring.js';
import { PageSender } from '../../src/pipeline/page-sender.js';
import { EncoderPool } from '../../src/pipeline/pool.js';
import { EMPTY_WINDOWS_PER_TURN, PushScheduler, type PushFault } from '../../src/pipeline/push-scheduler.js';
import { expectCodeAsync, settlesWithin } from '../_support/guest-helpers.js';
import {
  CountingEncoder, RecordingChannel, assertDelivered, assertSentOnce, markPages, pagesSent, range, smallGuest, spec, stillMarked,
} from '../_support/pipeline-helpers.js';

/** Hang guard for every push: far above what a push of a few MiB takes; not a timing claim. */
const GUARD_MS = 60_000;

const pools: EncoderPool[] = [];
test.after.each(async () => {
  while (pools.length > 0) await pools.pop()!.close();
});

function scheduler(mem: GuestMemory, channel: RecordingChannel) {
  const slabs = mem.allSlabs();
  const pool = new EncoderPool(slabs, 2);
  pools.push(pool);
  const encoder = new CountingEncoder(pool);
  const ring = new ChunkRing(slabs);
  return { pusher: new PushScheduler(slabs, encoder, ring, new BatchWriter(slabs, channel), { lz4: () => false }), encoder, ring, slabs };
}

async function guarded<T>(p: Promise<T>): Promise<T> {
  const s = await settlesWithin(p, GUARD_MS);
  assert.ok(s.settled, 'the push ended');
  return (s as { value: T }).value;
}

test('with two regions pending the push ends, having sent every page of both exactly once', async () => {
  const mem = smallGuest([spec(0, 2500), spec(3, 1100)]);
  const expected = new Map([[0, markPages(mem, 0, range(0, 2500).filter((p) => p % 4 !== 2))], [3, markPages(mem, 3, range(0, 1100))]]);
  const channel = new RecordingChannel();
  const { pusher } = scheduler(mem, channel);
  assert.is(pusher.pending(), expected.get(0)!.length + 1100);
  assert.is(pusher.pending(3), 1100);
  const r = await guarded(pusher.push({ iteration: 9 }));
  assert.is(r.pages, expected.get(0)!.length + 1100);
  assertSentOnce(pagesSent(mem, channel.frames), expected);
  assertDelivered(mem, channel.frames, expected);
  assert.equal([stillMarked(mem, 0), stillMarked(mem, 3), pusher.pending()], [0, 0, 0]);
});

test('PageSender.push over two regions, with faults in the second, ends with nothing pending', async () => {
  const mem = smallGuest([spec(0, 1200), spec(1, 900)]);
  const expected = new Map([[0, markPages(mem, 0, range(0, 1200))], [1, markPages(mem, 1, range(0, 900))]]);
  const channel = new RecordingChannel();
  const pool = new EncoderPool(mem.allSlabs(), 2);
  pools.push(pool);
  const sender = new PageSender(mem.allSlabs(), pool, channel, { lz4: () => false });
  let calls = 0;
  const r = await guarded(sender.push({ iteration: 4, faults: () => (calls++ === 0 ? [{ regionId: 1, page: 450 }] : []) }));
  assert.is(r.pages, 2100);
  assertSentOnce(pagesSent(mem, channel.frames), expected);
  assert.is(sender.pending(), 0);
});

test('a fault steers the next window to the page after it, in the faulting region', async () => {
  const mem = smallGuest([spec(0, 2048), spec(1, 2048)]);
  markPages(mem, 0, range(0, 2048));
  markPages(mem, 1, range(0, 2048));
  const channel = new RecordingChannel();
  const { pusher, encoder, slabs } = scheduler(mem, channel);
  let calls = 0;
  const faults = (): readonly PushFault[] => (calls++ === 0 ? [{ regionId: 1, page: 1500 }] : []);
  await guarded(pusher.push({ iteration: 2, faults }));
  const first = encoder.requests[0];
  const slab = slabs[first.slab];
  assert.equal([slab.regionId, slab.firstPage + first.from, slab.firstPage + first.to, first.maxEntries], [1, 1501, 1517, 16],
    'the first task is the smallest window right after the fault');
  const second = encoder.requests[1];
  assert.equal([slabs[second.slab].regionId, slabs[second.slab].firstPage + second.from, slabs[second.slab].firstPage + second.to], [1, 1436, 1500],
    'then it grows backwards from the fault');
  assert.is(pusher.pending(), 0);
});

test('without faults the push starts with the first region, at its first page', async () => {
  const mem = smallGuest([spec(5, 600), spec(6, 600)]);
  markPages(mem, 5, range(0, 600));
  markPages(mem, 6, range(0, 600));
  const channel = new RecordingChannel();
  const { pusher, encoder, slabs } = scheduler(mem, channel);
  await guarded(pusher.push({ iteration: 2 }));
  assert.equal([slabs[encoder.requests[0].slab].regionId, encoder.requests[0].from, encoder.requests[0].to], [5, 0, 16]);
});

test('stopped() ends the push early, leaving the rest marked', async () => {
  const mem = smallGuest([spec(0, 4096)], 4096);
  markPages(mem, 0, range(0, 4096));
  const channel = new RecordingChannel();
  const { pusher, encoder } = scheduler(mem, channel);
  let batches = 0;
  const r = await guarded(pusher.push({ iteration: 2, onBatch: () => batches++, stopped: () => batches >= 1 }));
  assert.ok(r.pages > 0 && r.pages < 4096, `some but not all pages were pushed (${r.pages})`);
  assert.is(pusher.pending(), 4096 - r.pages, 'what was not pushed is still marked');
  assert.ok(encoder.started <= 4, `no task started after stopped() (${encoder.started} tasks)`);
});

test('when no window holds anything it yields to the event loop instead of spinning', async () => {
  // Region 0 has pages left, but its planner only ever proposes a window with nothing marked: the
  // push can never start a task. A scheduler that looped without awaiting would never let the
  // setImmediate ticker run; this one must, and then stop when told.
  const mem = smallGuest([spec(0, 1024)]);
  markPages(mem, 0, range(512, 1024));
  const channel = new RecordingChannel();
  const { pusher, encoder } = scheduler(mem, channel);
  let ticks = 0;
  let callsThisTick = 0;
  let mostCallsPerTick = 0;
  let spun = false;
  let ticking = true;
  const tick = (): void => {
    ticks++;
    callsThisTick = 0;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  const stopped = (): boolean => {
    callsThisTick++;
    mostCallsPerTick = Math.max(mostCallsPerTick, callsThisTick);
    if (callsThisTick > 100_000) spun = true;
    return spun || ticks >= 20;
  };
  const planner = () => ({ onFault: () => undefined, nextWindow: () => ({ from: 0, to: 16, pages: 16 }) });
  const r = await guarded(pusher.push({ iteration: 2, stopped, planner }));
  ticking = false;
  assert.not.ok(spun, 'it never looped 100 000 times without a turn of the event loop');
  assert.ok(mostCallsPerTick <= EMPTY_WINDOWS_PER_TURN + 1, `at most ${EMPTY_WINDOWS_PER_TURN} empty windows per turn (saw ${mostCallsPerTick})`);
  assert.equal([r.pages, encoder.started, pusher.pending()], [0, 0, 512]);
});

test('a failing send rejects the push once the tasks in flight have ended', async () => {
  const mem = smallGuest([spec(0, 2048), spec(1, 64)]);
  markPages(mem, 0, range(0, 2048));
  const channel = new RecordingChannel();
  channel.failWith = new MemshiftError(ErrorCode.CONNECTION_CLOSED, 'peer went away');
  const { pusher, ring } = scheduler(mem, channel);
  await guarded(expectCodeAsync(() => pusher.push({ iteration: 2 }), ErrorCode.CONNECTION_CLOSED, 'push'));
  assert.equal([ring.available(0), ring.available(1)], [2, 2], 'every chunk is free again');
});

test.run();
