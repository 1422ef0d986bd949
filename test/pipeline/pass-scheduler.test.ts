// The pass scheduler over a real encoder pool and a recording channel: every marked page of every
// region is sent exactly once and arrives intact; in-flight work never exceeds the chunks of the arena
// (back-pressure when the socket does not take frames); a failing send rejects the pass.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode, MemshiftError } from '../../src/errors.js';
import { BatchWriter } from '../../src/pipeline/batch-writer.js';
import { ChunkRing } from '../../src/pipeline/chunk-ring.js';
import { PassScheduler } from '../../src/pipeline/pass-scheduler.js';
import { EncoderPool, MAX_ENCODERS, defaultEncoderCount } from '../../src/pipeline/pool.js';
import type { GuestMemory } from '../../src/memory/guest-memory.js';
import { expectCodeAsync, settlesWithin } from '../_support/guest-helpers.js';
import {
  CountingEncoder, RecordingChannel, assertDelivered, assertSentOnce, markPages, pagesSent, range, smallGuest, spec, stillMarked, turns, until,
} from '../_support/pipeline-helpers.js';

const pools: EncoderPool[] = [];
test.after.each(async () => {
  while (pools.length > 0) await pools.pop()!.close();
});

function scheduler(mem: GuestMemory, channel: RecordingChannel, encoders = 2, onStart?: ConstructorParameters<typeof CountingEncoder>[1]) {
  const slabs = mem.allSlabs();
  const pool = new EncoderPool(slabs, encoders);
  pools.push(pool);
  const encoder = new CountingEncoder(pool, onStart);
  const ring = new ChunkRing(slabs);
  const passes = new PassScheduler(slabs, encoder, ring, new BatchWriter(slabs, channel), { lz4: () => false });
  return { passes, ring, encoder };
}

for (const encoders of [2, 0]) {
  test(`a pass sends every marked page of every region exactly once, and they arrive intact (${encoders === 0 ? 'encoded inline' : `${encoders} encoder threads`})`, async () => {
    const mem = smallGuest([spec(0, 3000), spec(7, 700)]);
    const expected = new Map([
      [0, markPages(mem, 0, range(0, 3000).filter((p) => p % 5 !== 1))],
      [7, markPages(mem, 7, range(100, 700))],
    ]);
    const channel = new RecordingChannel();
    const { passes } = scheduler(mem, channel, encoders);
    const batches: number[] = [];
    const r = await passes.sendPass(1, 'off', (b) => batches.push(b.entries));
    const total = expected.get(0)!.length + expected.get(7)!.length;
    assert.is(r.pages, total);
    assert.is(r.batches, channel.frames.length);
    assert.is(r.bytes, channel.frames.reduce((n, f) => n + f.length, 0));
    assert.is(batches.reduce((a, b) => a + b, 0), total, 'onBatch saw every page');
    assert.is(r.counts.zero + r.counts.raw, total);
    assert.ok(r.counts.zero > 0 && r.counts.raw > 0, 'both zero and raw pages were sent');
    assertSentOnce(pagesSent(mem, channel.frames), expected);
    assertDelivered(mem, channel.frames, expected);
    assert.is(stillMarked(mem, 0) + stillMarked(mem, 7), 0, 'the snapshots are consumed');
  });
}

test('a pass told to stop starts no more tasks, resolves once those in flight are written, and leaves the rest marked', async () => {
  // 16 slabs of 1024 pages, one task each: four times what the scheduler keeps in flight.
  const mem = smallGuest([spec(0, 16384)]);
  const marked = markPages(mem, 0, range(0, 16384));
  const channel = new RecordingChannel();
  const { passes, encoder } = scheduler(mem, channel);
  let batches = 0;
  const r = await passes.sendPass(1, 'off', () => { batches++; }, () => batches >= 1);
  assert.ok(r.pages > 0 && r.pages < marked.length, `sent ${r.pages} of ${marked.length} before stopping`);
  assert.is(r.pages + stillMarked(mem, 0), marked.length, 'every page is either sent or still marked');
  assert.is(encoder.started, r.batches, 'no task started after the stop but the ones that were written');
  assertDelivered(mem, channel.frames, new Map([[0, pagesSent(mem, channel.frames).get(0)!]]));
});

test('without threads the pool encodes on this thread: a batch is built before encode() returns, and a failure rejects with a code', async () => {
  const mem = smallGuest([spec(0, 64)]);
  const slabs = mem.allSlabs();
  markPages(mem, 0, range(0, 64));
  const pool = new EncoderPool(slabs, 0);
  pools.push(pool);
  assert.is(pool.tasksInFlight, 1, 'one batch at a time: each goes to the socket as soon as it is built');
  const ring = new ChunkRing(slabs);
  const pending = pool.encode({ slab: 0, from: 0, to: 64, chunk: ring.take(0)!, maxEntries: 4096, payloadLimit: ring.payloadLimit(0), iteration: 1, cache: 'off', lz4: false });
  assert.is(stillMarked(mem, 0), 0, 'the pages were taken from the snapshot before encode() returned');
  assert.is((await pending).entries, 64);
  const err = await pool.encode({ slab: 9, from: 0, to: 1, chunk: 0, maxEntries: 1, payloadLimit: 4096, iteration: 1, cache: 'off', lz4: false }).then(() => null, (e: unknown) => e);
  assert.instance(err, MemshiftError);
  assert.is((err as MemshiftError).code, ErrorCode.WORKER_FAILED);
});

test('the default: no encoder threads on hosts of up to two cores unless post-copy may come, one per core but the main thread\'s otherwise', () => {
  assert.equal([1, 2, 3, 8, 64].map((c) => defaultEncoderCount(false, c)), [0, 0, 2, 7, MAX_ENCODERS]);
  assert.equal([1, 2, 3, 8, 64].map((c) => defaultEncoderCount(true, c)), [1, 1, 2, 7, MAX_ENCODERS]);
});

test('a pass over empty snapshots sends nothing and resolves', async () => {
  const mem = smallGuest([spec(0, 512)]);
  const channel = new RecordingChannel();
  const { passes, encoder } = scheduler(mem, channel);
  const r = await passes.sendPass(1, 'off');
  assert.equal([r.pages, r.batches, channel.frames.length, encoder.started], [0, 0, 0, 0]);
});

test('no more tasks are in flight than the slab has chunks while the socket holds them', async () => {
  // One slab of 4096 non-zero pages (about four full chunks of raw pages), an arena of two chunks,
  // and a pool that would run four tasks at once.
  const mem = smallGuest([spec(0, 4096)], 4096);
  const marked = markPages(mem, 0, range(0, 4096).filter((p) => p % 3 !== 0));
  const channel = new RecordingChannel(true);
  let outstanding = 0;
  let most = 0;
  const { passes, ring, encoder } = scheduler(mem, channel, 2, () => {
    outstanding++;
    most = Math.max(most, outstanding);
  });
  assert.is(ring.capacity(0), 2);
  let done = false;
  const pass = passes.sendPass(1, 'off').then((r) => {
    done = true;
    return r;
  });
  assert.ok(await until(() => channel.waiting.length === 2), 'two batches reach the socket');
  await turns(50);
  assert.is(encoder.started, 2, 'no third task starts while both chunks are writing');
  assert.is(ring.available(0), 0);
  while (!done) {
    if (channel.waiting.length > 0) {
      outstanding--;
      channel.releaseOne();
    }
    await until(() => done || channel.waiting.length > 0);
  }
  const r = await pass;
  assert.ok(most <= 2, `at most two tasks outstanding (saw ${most})`);
  assert.ok(channel.frames.length >= 3, `the pass needed more batches (${channel.frames.length}) than chunks`);
  assert.is(r.pages, marked.length);
  assertSentOnce(pagesSent(mem, channel.frames), new Map([[0, marked]]));
  assert.is(ring.available(0), 2, 'every chunk is free again');
});

test('a failing channel send rejects the pass with its error, once nothing is in flight: every chunk is free again', async () => {
  const mem = smallGuest([spec(0, 2048)]);
  markPages(mem, 0, range(0, 2048));
  const channel = new RecordingChannel();
  channel.failWith = new MemshiftError(ErrorCode.CONNECTION_CLOSED, 'peer went away');
  const { passes, ring } = scheduler(mem, channel);
  const settled = await settlesWithin(expectCodeAsync(() => passes.sendPass(1, 'off'), ErrorCode.CONNECTION_CLOSED, 'sendPass'), 30_000);
  assert.ok(settled.settled, 'the pass settles');
  // A recovery resumes the pass over a new ring on the same arenas: no encoder of the failed one may
  // still write into a chunk (or the snapshot) by then.
  assert.is(ring.available(0), 2, 'every chunk is free again');
});

test('a pass that fails while other batches are still on their way settles once the last of them is taken, not before, and not never', async () => {
  // As above: about four chunks of raw pages through an arena of two, the socket holding each send.
  const mem = smallGuest([spec(0, 4096)], 4096);
  markPages(mem, 0, range(0, 4096));
  const channel = new RecordingChannel(true);
  const { passes, ring } = scheduler(mem, channel);
  let outcome: string | null = null;
  const pass = passes.sendPass(1, 'off').then(() => 'resolved', (e: MemshiftError) => e.code);
  void pass.then((o) => { outcome = o; });
  assert.ok(await until(() => channel.waiting.length === 2), 'two batches reach the socket and are held there');
  // From now on every new send fails; the two held ones still succeed when the socket takes them.
  channel.failWith = new MemshiftError(ErrorCode.CONNECTION_CLOSED, 'peer went away');
  await turns(20);
  assert.is(outcome, null, 'not settled while two writes are in flight');
  while (channel.releaseOne()) await turns(5);
  const settled = await settlesWithin(pass, 30_000);
  assert.ok(settled.settled, 'the pass settles once nothing is in flight');
  assert.is(outcome, ErrorCode.CONNECTION_CLOSED);
  assert.is(ring.available(0), 2, 'every chunk is free again');
});

test.run();
