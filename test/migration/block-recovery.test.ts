// Which disk blocks go again after a lost link (migration/block-recovery.ts, capability BLOCK_RECOVERY):
// the destination's answer built from its table (held blocks by hash) or its present bitmap (absent
// blocks), read back by the source, marks exactly the blocks whose copy there is not the last one
// sent — and no block the guest dirtied meanwhile loses its mark. Names outside the guest's disks are
// refused.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { absentBlockFrames, BlockRecovery, heldBlockFrames } from '../../src/migration/block-recovery.js';
import { DiskDigest } from '../../src/migration/disk-digest.js';
import { decodeMissingPages, decodePageHashes, MAX_HASHES_PER_FRAME } from '../../src/protocol/control.js';
import { DISK_REGION_BASE } from '../../src/protocol/constants.js';
import { FRAME_HEADER_BYTES, readFrameHeader } from '../../src/protocol/frame.js';
import type { BlockDevice } from '../../src/memory/types.js';
import { Kernels } from '../../src/wasm/kernels.js';
import { expectCode } from '../_support/guest-helpers.js';

const BLOCK = 4096;
const BLOCKS = 200;
const ZERO = new Kernels(new WebAssembly.Memory({ initial: 4, maximum: 4, shared: true })).zeroPageHash(BLOCK);

function device(present?: Int32Array): BlockDevice {
  const words = Math.ceil(BLOCKS / 32);
  return {
    blockBytes: BLOCK, blocks: BLOCKS, dirty: new Int32Array(words), present,
    read: () => undefined, write: () => undefined,
  } as unknown as BlockDevice;
}

function record(d: DiskDigest, block: number, hash: bigint): void {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, hash, true);
  d.record(0, block, 1, bytes, 0);
}

function bodyOf(frame: Uint8Array): { body: Uint8Array; length: number } {
  const h = readFrameHeader(frame, 0, frame.length)!;
  return { body: frame.subarray(FRAME_HEADER_BYTES), length: h.bodyLength };
}

function bits(words: Int32Array): number[] {
  const out: number[] = [];
  for (let b = 0; b < words.length * 32; b++) if ((words[b >>> 5] >>> (b & 31)) & 1) out.push(b);
  return out;
}

function setBits(words: Int32Array, blocks: Iterable<number>): void {
  for (const b of blocks) words[b >>> 5] |= 1 << (b & 31);
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

test('before SWITCHOVER: only blocks whose copy there is not the last one sent go again; a mark the guest set stays', () => {
  const source = new DiskDigest([{ blockBytes: BLOCK, blocks: BLOCKS }]);
  const dest = new DiskDigest([{ blockBytes: BLOCK, blocks: BLOCKS }]);
  const ever = new Int32Array(Math.ceil(BLOCKS / 32));
  // Sent: 0–99 (version 1), then 40–49 again (version 2), and 150 as zeros (a block zeroed by the guest).
  for (const b of range(0, 100)) record(source, b, 1000n + BigInt(b));
  for (const b of range(40, 50)) record(source, b, 2000n + BigInt(b));
  record(source, 150, ZERO);
  setBits(ever, [...range(0, 100), 150]);
  // Landed: 0–59 as sent last, except 40–49 whose version 1 only; 60–99 lost with the link; 150 too.
  for (const b of range(0, 60)) record(dest, b, 1000n + BigInt(b));
  // 150: an older copy there; the zeros sent since were lost.
  record(dest, 150, 7n);

  const frames = heldBlockFrames(dest, 1);
  const named = frames.map((f) => { const { body, length } = bodyOf(f); return decodePageHashes(body, 0, length); });
  assert.ok(named.every((m) => m.regionId === DISK_REGION_BASE), 'every frame names disk 0');
  assert.equal(named.map((m) => [m.firstPage, m.hashes.length]), [[0, 60], [150, 1]], 'runs of held blocks only');

  const dev = device();
  setBits(dev.dirty, [10, 180]); // written by the guest since: must stay marked
  const recovery = new BlockRecovery([dev], [ever], [new Int32Array(ever.length)], source);
  for (const m of named) recovery.held(m);
  const marked = recovery.mark(false);
  assert.equal(bits(dev.dirty), [10, ...range(40, 50), ...range(60, 100), 150, 180]);
  assert.is(marked, 10 + 40 + 1);
});

test('before SWITCHOVER: a block sent as zeros and not named (zeros there) agrees; one sent with data and not named goes again', () => {
  const source = new DiskDigest([{ blockBytes: BLOCK, blocks: BLOCKS }]);
  const ever = new Int32Array(Math.ceil(BLOCKS / 32));
  record(source, 5, ZERO);
  record(source, 6, 99n);
  setBits(ever, [5, 6]);
  const dev = device();
  const recovery = new BlockRecovery([dev], [ever], [new Int32Array(ever.length)], source);
  assert.is(recovery.mark(false), 1);
  assert.equal(bits(dev.dirty), [6]);
});

test('a block whose mark was taken but whose hash was never recorded (the pass failed before reading it) goes again, though both hashes agree', () => {
  const source = new DiskDigest([{ blockBytes: BLOCK, blocks: BLOCKS }]);
  const dest = new DiskDigest([{ blockBytes: BLOCK, blocks: BLOCKS }]);
  const ever = new Int32Array(Math.ceil(BLOCKS / 32));
  const unrecorded = new Int32Array(ever.length);
  record(source, 33, 5n);
  record(dest, 33, 5n);
  setBits(ever, [33, 34]);
  setBits(unrecorded, [33, 34]); // taken again for a new version (33) or a first one (34), then the link died
  const dev = device();
  const recovery = new BlockRecovery([dev], [ever], [unrecorded], source);
  for (const f of heldBlockFrames(dest, 1)) {
    const { body, length } = bodyOf(f);
    recovery.held(decodePageHashes(body, 0, length));
  }
  assert.is(recovery.mark(false), 2);
  assert.equal(bits(dev.dirty), [33, 34]);
  assert.equal(bits(unrecorded), [], 'marked once: the next recovery starts clean');
});

test('a run longer than a frame holds is split; every held block is named once', () => {
  const big = MAX_HASHES_PER_FRAME + 10;
  const dest = new DiskDigest([{ blockBytes: 512, blocks: big + 5 }]);
  const bytes = new Uint8Array(big * 8);
  const dv = new DataView(bytes.buffer);
  for (let i = 0; i < big; i++) dv.setBigUint64(i * 8, BigInt(i + 1), true);
  dest.record(0, 2, big, bytes, 0);
  const named = heldBlockFrames(dest, 1).map((f) => { const { body, length } = bodyOf(f); return decodePageHashes(body, 0, length); });
  assert.equal(named.map((m) => [m.firstPage, m.hashes.length]), [[2, MAX_HASHES_PER_FRAME], [2 + MAX_HASHES_PER_FRAME, 10]]);
  assert.is(named[1].hashes[9], BigInt(big));
});

test('post-copy: the blocks absent there, and only those, go again', () => {
  const present = new Int32Array(Math.ceil(BLOCKS / 32)).fill(-1);
  for (const b of [3, 64, 65, 199]) present[b >>> 5] &= ~(1 << (b & 31));
  const { frames, blocks } = absentBlockFrames([device(present)]);
  assert.is(blocks, 4, 'bits past the disk\'s last block are not named');
  const source = new DiskDigest([{ blockBytes: BLOCK, blocks: BLOCKS }]);
  const ever = new Int32Array(Math.ceil(BLOCKS / 32)).fill(-1);
  const dev = device();
  const recovery = new BlockRecovery([dev], [ever], [new Int32Array(ever.length)], source);
  for (const f of frames) {
    const { body, length } = bodyOf(f);
    recovery.absent(decodeMissingPages(body, 0, length));
  }
  assert.is(recovery.mark(true), 4);
  assert.equal(bits(dev.dirty), [3, 64, 65, 199]);
});

test('names outside the guest\'s disks are refused: another region, a run past the end, bits past the bitmap', () => {
  const source = new DiskDigest([{ blockBytes: BLOCK, blocks: BLOCKS }]);
  const recovery = new BlockRecovery([device()], [new Int32Array(Math.ceil(BLOCKS / 32))], [new Int32Array(Math.ceil(BLOCKS / 32))], source);
  expectCode(() => recovery.held({ regionId: DISK_REGION_BASE + 1, firstPage: 0, hashes: new BigUint64Array(1) }), 'MS_ERR_BATCH_PAGE_RANGE');
  expectCode(() => recovery.held({ regionId: DISK_REGION_BASE, firstPage: BLOCKS - 1, hashes: new BigUint64Array(2) }), 'MS_ERR_BATCH_PAGE_RANGE');
  expectCode(() => recovery.absent({ regionId: DISK_REGION_BASE, firstPage: 192, pageCount: 8, bitmap: Uint8Array.from([0, 1, 0, 0, 0, 0, 0, 0]) }), 'MS_ERR_FRAME_MALFORMED');
});

test.run();
