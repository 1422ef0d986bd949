// A guest's images and their leases as one runner holds them (src/storage/leased-images.ts): taking
// all or none, handing over to a named destination, accepting only what was handed over, giving it
// back to whoever handed it over, renewing while held, keeping a handed-over lease alive until it is
// accepted, and telling the runner at once when a renewal finds a lease gone (the runner then stops
// its guest).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LeasedImages } from '../../src/storage/leased-images.js';
import { breakLease, readLease, takeLease } from '../../src/storage/lease.js';
import { expectCode } from '../_support/guest-helpers.js';
import type { MemshiftError } from '../../src/errors.js';

let dir = '';
let images: string[] = [];
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'memshift-leased-'));
  images = ['disk0.img', 'disk1.img'].map((n) => join(dir, n));
  for (const i of images) writeFileSync(i, '');
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

function sides(): { source: LeasedImages; dest: LeasedImages; flushed: string[] } {
  const flushed: string[] = [];
  const source = new LeasedImages(images, 5000);
  source.bind({ onLost: () => undefined, flush: () => flushed.push('flush') });
  const dest = new LeasedImages(images, 5000);
  return { source, dest, flushed };
}

test('take holds every image; a second taker is refused and changes nothing; a refused take gives back what it took', () => {
  const { source } = sides();
  source.take('source A');
  assert.ok(source.holds());
  const other = new LeasedImages(images, 5000);
  expectCode(() => other.take('source B'), 'MS_ERR_LEASE_HELD');
  for (const i of images) assert.is(readLease(i)!.owner, 'source A');
  source.release();
  // Image 1 alone is held elsewhere: a take gets image 0 first, then must give it back.
  takeLease(images[1], 'someone', 5000);
  expectCode(() => other.take('source B'), 'MS_ERR_LEASE_HELD');
  assert.is(readLease(images[0])!.owner, '', 'image 0 was given back, free');
});

test('hand-over flushes, passes every lease to the named destination, and the source holds nothing from then on', () => {
  const { source, dest, flushed } = sides();
  source.take('source A');
  source.handOver('dest of session 1');
  assert.equal(flushed, ['flush'], 'the guest\'s writes are made durable before the lease moves');
  assert.not.ok(source.holds());
  for (const i of images) assert.equal([readLease(i)!.owner, readLease(i)!.from], ['dest of session 1', 'source A']);
  source.handOver('dest of session 1'); // the same hand-over again (a retried switchover) is a no-op
  assert.is(readLease(images[0])!.generation, 2);
  expectCode(() => dest.accept('dest of session 2'), 'MS_ERR_LEASE_LOST');
  dest.accept('dest of session 1');
  assert.ok(dest.holds());
  expectCode(() => source.handOver('dest of session 3'), 'MS_ERR_LEASE_LOST');
});

test('a destination that will not resume gives the lease back, and the source holds it again', () => {
  const { source, dest } = sides();
  source.take('source A');
  source.handOver('dest 1');
  dest.giveBack('dest 1');
  for (const i of images) assert.equal([readLease(i)!.owner, readLease(i)!.generation], ['source A', 3]);
  assert.ok(source.holds(), 'the source may resume its guest');
  assert.not.ok(dest.holds());
  // Giving back what is not ours changes nothing.
  dest.giveBack('dest 1');
  assert.is(readLease(images[0])!.generation, 3);
});

test('a hand-over cut half-way leaves nobody holding every lease: neither side may run the guest', () => {
  const { source, dest } = sides();
  source.take('source A');
  breakLease(images[1]);
  expectCode(() => source.handOver('dest 1'), 'MS_ERR_LEASE_LOST');
  assert.not.ok(source.holds());
  expectCode(() => dest.accept('dest 1'), 'MS_ERR_LEASE_LOST');
});

test('the holder renews its leases, and learns at once when one is broken', async () => {
  const lost: MemshiftError[] = [];
  const source = new LeasedImages(images, 300);
  source.bind({ onLost: (e) => lost.push(e), flush: () => undefined });
  source.take('source A');
  const first = readLease(images[0])!.expiresAtMs;
  await new Promise((r) => setTimeout(r, 250));
  assert.ok(readLease(images[0])!.expiresAtMs > first, 'renewed within its term');
  assert.ok(source.holds(), 'still held past the first term');
  breakLease(images[1]);
  await new Promise((r) => setTimeout(r, 250));
  assert.is(lost.length, 1, 'told once');
  assert.is(lost[0].code, 'MS_ERR_LEASE_LOST');
  assert.not.ok(source.holds());
  source.release();
});

test('a destination keeps a lease handed to it past its term until it accepts; kept, a lease taken from it is not accepted', async () => {
  const source = new LeasedImages(images, 300);
  source.take('source A');
  source.handOver('dest of session 1');
  const dest = new LeasedImages(images, 300);
  dest.keep('dest of session 1');
  await new Promise((r) => setTimeout(r, 450)); // one and a half terms, as a slow post-copy switchover
  dest.accept('dest of session 1');
  assert.ok(dest.holds(), 'accepted after the term: the hand-over was kept');
  dest.release();
  // Without keep, the same wait loses it.
  source.take('source A');
  source.handOver('dest of session 2');
  const late = new LeasedImages(images, 300);
  await new Promise((r) => setTimeout(r, 450));
  expectCode(() => late.accept('dest of session 2'), 'MS_ERR_LEASE_LOST');
  // Kept, but broken meanwhile by the operator: the keeping stops and accept refuses.
  breakLease(images[0]);
  breakLease(images[1]);
  source.take('source A');
  source.handOver('dest of session 3');
  const kept = new LeasedImages(images, 300);
  kept.keep('dest of session 3');
  breakLease(images[1]);
  await new Promise((r) => setTimeout(r, 150));
  expectCode(() => kept.accept('dest of session 3'), 'MS_ERR_LEASE_LOST');
  assert.is(readLease(images[1])!.owner, '', 'nobody holds it: nobody runs the guest');
  source.release();
});

test('a holder busy for long renews between chunks of its work, and learns there that the lease is gone', async () => {
  const source = new LeasedImages(images, 300);
  source.take('source A');
  const before = readLease(images[0])!.expiresAtMs;
  source.renewIfDue(); // too soon: nothing written
  assert.is(readLease(images[0])!.expiresAtMs, before);
  const until = performance.now() + 150;
  while (performance.now() < until) { /* a busy thread: its timers cannot run */ }
  source.renewIfDue();
  assert.ok(readLease(images[0])!.expiresAtMs > before, 'renewed in line');
  breakLease(images[0]);
  const later = performance.now() + 150;
  while (performance.now() < later) { /* busy again */ }
  expectCode(() => source.renewIfDue(), 'MS_ERR_LEASE_LOST');
  source.release();
});

test.run();
