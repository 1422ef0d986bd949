// The disks' share of the session digest (migration/disk-digest.ts): a zero block counts nothing, the
// same blocks recorded in any order give the same digest, a block missing or an older version last
// gives another, and the scheme is the pages' (the kernel's digest over a table of the same hashes,
// keyed as region 0x8000 + disk).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DiskDigest } from '../../src/migration/disk-digest.js';
import { DISK_REGION_BASE } from '../../src/protocol/constants.js';
import { Kernels, KERNEL_RESERVED_BYTES } from '../../src/wasm/kernels.js';

const BLOCK = 4096;
const SHAPES = [{ blockBytes: BLOCK, blocks: 64 }, { blockBytes: 512, blocks: 8 }];

const kernels = new Kernels(new WebAssembly.Memory({ initial: 4, maximum: 4, shared: true }));
const ZERO = kernels.raw.zeroPageHash(BLOCK);

/** `count` u64 hashes, little-endian, as a BLOCKS frame carries them. */
function hashes(...values: bigint[]): Uint8Array {
  const bytes = new Uint8Array(values.length * 8);
  const dv = new DataView(bytes.buffer);
  values.forEach((v, i) => dv.setBigUint64(i * 8, v, true));
  return bytes;
}

test('nothing recorded, or only zero blocks: the disks add nothing', () => {
  const d = new DiskDigest(SHAPES);
  assert.is(d.value, 0n);
  d.record(0, 3, 2, hashes(ZERO, ZERO), 0);
  assert.is(d.value, 0n);
});

test('a block written, then zero again: back to nothing', () => {
  const d = new DiskDigest(SHAPES);
  d.record(0, 5, 1, hashes(0x1234n), 0);
  assert.is.not(d.value, 0n);
  d.record(0, 5, 1, hashes(ZERO), 0);
  assert.is(d.value, 0n);
});

test('the same last versions in any order agree; a run missing or an older version last does not', () => {
  const a = new DiskDigest(SHAPES);
  a.record(0, 0, 3, hashes(11n, 12n, 13n), 0);
  a.record(1, 7, 1, hashes(99n), 0);
  a.record(0, 1, 1, hashes(22n), 0);
  const b = new DiskDigest(SHAPES);
  b.record(0, 1, 1, hashes(22n), 0);
  b.record(1, 7, 1, hashes(99n), 0);
  b.record(0, 0, 1, hashes(11n), 0);
  b.record(0, 2, 1, hashes(13n), 0);
  assert.is(b.value, a.value, 'block 1 of disk 0 is 22 on both');
  const missing = new DiskDigest(SHAPES);
  missing.record(0, 0, 3, hashes(11n, 22n, 13n), 0);
  assert.is.not(missing.value, a.value, 'disk 1 block 7 never arrived');
  const stale = new DiskDigest(SHAPES);
  stale.record(1, 7, 1, hashes(99n), 0);
  stale.record(0, 0, 3, hashes(11n, 12n, 13n), 0);
  assert.is.not(stale.value, a.value, 'block 1 holds its first version');
  const otherDisk = new DiskDigest(SHAPES);
  otherDisk.record(0, 0, 3, hashes(11n, 22n, 13n), 0);
  otherDisk.record(0, 7, 1, hashes(99n), 0);
  assert.is.not(otherDisk.value, a.value, 'the same hash on another disk is another key');
});

test('hashes are read from where the frame holds them', () => {
  const a = new DiskDigest(SHAPES);
  a.record(0, 4, 2, hashes(5n, 6n), 0);
  const b = new DiskDigest(SHAPES);
  const frame = new Uint8Array(40);
  frame.set(hashes(5n, 6n), 24);
  b.record(0, 4, 2, frame, 24);
  assert.is(b.value, a.value);
});

test('the pages\' scheme: the kernel\'s digest over a table of the blocks\' hashes, keyed as region 0x8000 + disk', () => {
  const d = new DiskDigest([SHAPES[0]]);
  const table = new BigUint64Array(SHAPES[0].blocks).fill(ZERO);
  table[0] = 0xabcdefn;
  table[63] = 42n;
  d.record(0, 0, 1, hashes(0xabcdefn), 0);
  d.record(0, 63, 1, hashes(42n), 0);
  const at = KERNEL_RESERVED_BYTES;
  new BigUint64Array(kernels.memory.buffer, at, table.length).set(table);
  const expected = BigInt.asUintN(64, kernels.raw.digestOfHashes(at, table.length, BigInt(DISK_REGION_BASE) << 32n, ZERO));
  assert.is(d.value, expected);
});

test.run();
