// Arriving disk blocks written behind (write-behind.ts): in order through a ring that wraps and fills,
// readable once drained or flushed, O_DIRECT where the file system takes it and through the page cache
// where a write is refused, and a failed write thrown once, at the next drain.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestDisk } from '../../src/sim/disk.js';
import { DISK_BLOCK_BYTES } from '../../src/sim/guest-config.js';
import { writeBehind } from '../../src/sim/write-behind.js';
import { SLOTS, SLOT_BYTES } from '../../src/sim/write-behind-ring.js';
import { expectCode } from '../_support/guest-helpers.js';

let dir = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'memshift-write-behind-'));
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

/** `count` blocks from `first`, each filled with its number plus `round`. */
function blocks(first: number, count: number, round: number): Uint8Array {
  const data = new Uint8Array(count * DISK_BLOCK_BYTES);
  for (let k = 0; k < count; k++) data.fill((first + k + round) & 0xff, k * DISK_BLOCK_BYTES, (k + 1) * DISK_BLOCK_BYTES);
  return data;
}

test('more blocks than the ring holds, some written twice, land as written last; a read waits for them', async () => {
  const ringBlocks = (SLOTS * SLOT_BYTES) / DISK_BLOCK_BYTES;
  const total = 3 * ringBlocks;
  const disk = GuestDisk.create(join(dir, 'disk0.img'), total * DISK_BLOCK_BYTES);
  try {
    // Runs of 64 (a BLOCKS frame), the buffer reused at once as a receive ring's would be.
    const frame = new Uint8Array(64 * DISK_BLOCK_BYTES);
    for (let first = 0; first < total; first += 64) {
      frame.set(blocks(first, 64, 0));
      disk.writeBehind(first, 64, frame);
    }
    // A second pass over a stretch already queued: the later bytes must win.
    for (let first = 128; first < 128 + 2 * ringBlocks; first += 64) {
      frame.set(blocks(first, 64, 7));
      disk.writeBehind(first, 64, frame);
    }
    const back = new Uint8Array(DISK_BLOCK_BYTES);
    disk.read(130, 1, back);
    assert.ok(back.every((b) => b === ((130 + 7) & 0xff)), 'a read sees the last write of its block');
    await disk.flush();
    const image = readFileSync(disk.path);
    for (let b = 0; b < total; b++) {
      const round = b >= 128 && b < 128 + 2 * ringBlocks ? 7 : 0;
      const at = b * DISK_BLOCK_BYTES;
      if (image[at] !== ((b + round) & 0xff) || image[at + DISK_BLOCK_BYTES - 1] !== ((b + round) & 0xff)) assert.unreachable(`block ${b} holds ${image[at]}, not ${(b + round) & 0xff}`);
    }
  } finally {
    disk.close();
  }
});

test('write returns with the blocks on the image, after the ones queued before it', () => {
  const disk = GuestDisk.create(join(dir, 'disk0.img'), 256 * DISK_BLOCK_BYTES);
  try {
    disk.writeBehind(10, 4, blocks(10, 4, 1));
    disk.write(11, 1, blocks(11, 1, 2));
    const image = readFileSync(disk.path);
    assert.is(image[10 * DISK_BLOCK_BYTES], 11);
    assert.is(image[11 * DISK_BLOCK_BYTES], 13, 'the later write wins');
    assert.is(image[13 * DISK_BLOCK_BYTES], 14);
    assert.is(image[14 * DISK_BLOCK_BYTES], 0, 'nothing past the run');
  } finally {
    disk.close();
  }
});

test('a write the O_DIRECT descriptor refuses (not aligned) goes through the cached one', () => {
  const path = join(dir, 'plain.img');
  writeFileSync(path, new Uint8Array(8192));
  const cached = openSync(path, 'r+');
  // An O_DIRECT descriptor where the file system has one (a length of 100 B is refused by it).
  let direct = cached;
  try {
    direct = openSync(path, constants.O_WRONLY | constants.O_DIRECT);
  } catch {
    // No O_DIRECT here: the cached descriptor serves as both.
  }
  try {
    const ring = writeBehind();
    ring.write(direct, cached, 4096, new Uint8Array(100).fill(0x5a));
    ring.drain(path);
    const image = readFileSync(path);
    assert.ok(image.subarray(4096, 4196).every((b) => b === 0x5a), 'the bytes landed');
    assert.is(image[4196], 0);
  } finally {
    if (direct !== cached) closeSync(direct);
    closeSync(cached);
  }
});

test('a write that fails is thrown once, as MS_ERR_IO, by the next drain; the ring goes on', () => {
  const path = join(dir, 'read-only.img');
  writeFileSync(path, new Uint8Array(8192));
  const readOnly = openSync(path, 'r');
  try {
    const ring = writeBehind();
    ring.write(readOnly, readOnly, 0, new Uint8Array(4096).fill(1));
    const e = expectCode(() => ring.drain(path), 'MS_ERR_IO', 'drain after a failed write');
    assert.match(e.message, /EBADF/);
    ring.drain(path);
    const writable = openSync(path, 'r+');
    try {
      ring.write(writable, writable, 4096, new Uint8Array(4096).fill(2));
      ring.drain(path);
    } finally {
      closeSync(writable);
    }
    const image = readFileSync(path);
    assert.is(image[0], 0, 'the failed write left the image as it was');
    assert.is(image[4096], 2, 'a later write landed');
  } finally {
    closeSync(readOnly);
  }
});

test('a process with nothing but a flush to wait for stays up until the ring is written', () => {
  // An Atomics.waitAsync alone does not keep Node's event loop alive: without the thread referenced
  // while it settles, this process would exit (status 0) before the marker is written.
  const disk = new URL('../../src/sim/disk.js', import.meta.url).href;
  const image = join(dir, 'disk0.img');
  const marker = join(dir, 'flushed');
  const script = `
    import { writeFileSync } from 'node:fs';
    const { GuestDisk } = await import(${JSON.stringify(disk)});
    const d = GuestDisk.create(${JSON.stringify(image)}, 8 * 2 ** 20);
    d.writeBehind(0, 2048, new Uint8Array(8 * 2 ** 20).fill(9));
    await d.flush();
    writeFileSync(${JSON.stringify(marker)}, 'ok');`;
  const file = join(dir, 'flush.mjs');
  writeFileSync(file, script);
  const run = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 30_000 });
  assert.is(run.status, 0, run.stderr);
  assert.ok(existsSync(marker), 'the process reached the line after the flush');
  assert.ok(readFileSync(image).every((b) => b === 9), 'every block on the image');
});

test.run();
