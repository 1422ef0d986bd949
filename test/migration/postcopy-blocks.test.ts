// Disk blocks in post-copy (capability POSTCOPY_BLOCKS), piece by piece: the source names its dirty
// blocks missing with MISSING_PAGES of region DISK_REGION_BASE + disk; it answers a faulted block at
// once, once, from the disk, with the hash the destination checks, and the push then leaves it out; a
// request outside the disks is refused by name; the vCPU's gate posts a block's fault as that region;
// the destination writes only the blocks of a run that are not here yet.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { forEachHalf, unsentBlocksFrames } from '../../src/migration/missing-pages.js';
import { BlockSender } from '../../src/migration/source/block-sender.js';
import { Mailbox, createPageGate, createPageGateInit, readFault } from '../../src/memory/page-gate.js';
import type { BlockDevice } from '../../src/memory/types.js';
import { BlockBuffers } from '../../src/pipeline/block-buffers.js';
import { writeAbsentBlocks } from '../../src/pipeline/absent-blocks.js';
import { decodeBlocks } from '../../src/protocol/blocks.js';
import { DISK_REGION_BASE, FrameType } from '../../src/protocol/constants.js';
import { decodeMissingPages } from '../../src/protocol/control.js';
import { FRAME_HEADER_BYTES, readFrameHeader, verifyFrame } from '../../src/protocol/frame.js';
import type { FrameLink } from '../../src/transport/channel.js';
import { isMemshiftError } from '../../src/errors.js';

const BLOCK = 4096;

/** A disk in memory: block b holds b + 1 in every byte. */
function memoryDisk(blocks: number): BlockDevice & { bytes: Uint8Array } {
  const bytes = new Uint8Array(blocks * BLOCK);
  for (let b = 0; b < blocks; b++) bytes.fill((b + 1) & 0xff, b * BLOCK, (b + 1) * BLOCK);
  return {
    blockBytes: BLOCK, blocks, bytes, dirty: new Int32Array(new SharedArrayBuffer(Math.ceil(blocks / 32) * 4)),
    read: (first, count, into) => into.set(bytes.subarray(first * BLOCK, (first + count) * BLOCK)),
    write: () => undefined,
    flush: () => Promise.resolve(),
  };
}

function mark(d: BlockDevice, ...blocks: number[]): void {
  for (const b of blocks) d.dirty[b >>> 5] |= 1 << (b & 31);
}

/** A link that keeps a copy of every frame sent. */
function recordingLink(): FrameLink & { frames: Uint8Array[] } {
  const frames: Uint8Array[] = [];
  return { frames, send: (f: Uint8Array) => { frames.push(f.slice()); return Promise.resolve(); } } as unknown as FrameLink & { frames: Uint8Array[] };
}

/** The blocks a BLOCKS frame carries, after checking each against its hash. */
function blocksIn(frame: Uint8Array, blocks: number): { disk: number; first: number; count: number; data: Uint8Array } {
  const header = readFrameHeader(frame, 0, frame.length)!;
  assert.is(header.type, FrameType.BLOCKS);
  verifyFrame(frame, 0, header);
  const body = frame.subarray(FRAME_HEADER_BYTES);
  const b = decodeBlocks(body, 0, body.length, [{ blockBytes: BLOCK, blocks }, { blockBytes: BLOCK, blocks }]);
  new BlockBuffers(1).verify(body, b.hashesOffset, b.dataOffset, b.count, BLOCK, () => 'answer');
  return { disk: b.disk, first: b.firstBlock, count: b.count, data: body.subarray(b.dataOffset, b.dataOffset + b.count * BLOCK) };
}

test('MISSING_PAGES of a disk name exactly its dirty blocks, as region DISK_REGION_BASE + disk', () => {
  const blocks = 100; // not a whole bitmap word
  const d = memoryDisk(blocks);
  const marked = [0, 31, 32, 63, 64, 99];
  mark(d, ...marked);
  const m = unsentBlocksFrames(1, d.dirty, blocks);
  assert.is(m.blocks, marked.length);
  const seen: number[] = [];
  for (const f of m.frames) {
    const body = f.subarray(FRAME_HEADER_BYTES);
    const missing = decodeMissingPages(body, 0, body.length);
    assert.is(missing.regionId, DISK_REGION_BASE + 1);
    forEachHalf(blocks, 'disk 1', missing, (first, bits) => {
      for (let i = 0; i < 32; i++) if ((bits >>> i) & 1) seen.push(first + i);
    });
  }
  assert.equal(seen, marked);
});

test('a MISSING_PAGES past the disk, or with bits past its count, is refused', () => {
  const d = memoryDisk(64);
  mark(d, 3);
  const body = unsentBlocksFrames(0, d.dirty, 64).frames[0].subarray(FRAME_HEADER_BYTES);
  const m = decodeMissingPages(body, 0, body.length);
  assert.throws(() => forEachHalf(32, 'disk 0', m, () => undefined), (e: unknown) => isMemshiftError(e) && e.code === 'MS_ERR_BATCH_PAGE_RANGE');
  const short = { ...m, pageCount: 3 };
  assert.throws(() => forEachHalf(64, 'disk 0', short, () => undefined), (e: unknown) => isMemshiftError(e) && e.code === 'MS_ERR_FRAME_MALFORMED');
});

test('what is left of the disks, for the estimate: every marked block of every disk and its bytes with its hash; none once sent', async () => {
  const disks = [memoryDisk(100), memoryDisk(64)];
  mark(disks[0], 0, 31, 32, 99);
  mark(disks[1], 5, 6);
  const sender = new BlockSender(disks);
  assert.equal(sender.dirtyNow(), { blocks: 6, bytes: 6 * (BLOCK + 8) });
  const link = recordingLink();
  const sent = await sender.sendDirty(link);
  assert.is(sent.blocks, 6);
  assert.equal(sender.dirtyNow(), { blocks: 0, bytes: 0 });
  mark(disks[1], 63);
  assert.equal(sender.dirtyNow(), { blocks: 1, bytes: BLOCK + 8 }, 'a block written after the pass took its mark');
});

test('a faulted block still to send goes at once, once, with its bytes and a hash that checks; the push leaves it out', async () => {
  const disks = [memoryDisk(64), memoryDisk(64)];
  mark(disks[1], 5, 6, 7);
  const sender = new BlockSender(disks);
  const link = recordingLink();
  sender.answer(1, 6, link);
  sender.answer(1, 6, link); // asked again before the first answer landed
  sender.answer(0, 9, link); // never dirty: the destination has it
  await sender.answered();
  assert.is(link.frames.length, 1, 'one answer');
  const a = blocksIn(link.frames[0], 64);
  assert.equal([a.disk, a.first, a.count], [1, 6, 1]);
  assert.ok(a.data.every((x) => x === 7), "block 6's bytes");
  assert.ok(sender.pending(), 'blocks 5 and 7 still to push');
  await sender.sendDirty(link, { keepZeros: true });
  const pushed = link.frames.slice(1).flatMap((f) => {
    const r = blocksIn(f, 64);
    return Array.from({ length: r.count }, (_, k) => r.first + k);
  });
  assert.equal(pushed, [5, 7], 'the push sends the others, not the answered one');
  assert.not.ok(sender.pending());
});

test('a request for a block the guest does not have is refused by name, and nothing is sent', async () => {
  const sender = new BlockSender([memoryDisk(64)]);
  const link = recordingLink();
  sender.answer(0, 64, link);
  const e = await sender.refused.catch((x: unknown) => x);
  assert.ok(isMemshiftError(e) && e.code === 'MS_ERR_BATCH_PAGE_RANGE', String(e));
  assert.match(String((e as { message: string }).message), /block 64 of disk 0/);
  const other = new BlockSender([memoryDisk(64)]);
  other.answer(2, 0, link);
  assert.ok(isMemshiftError(await other.refused.catch((x: unknown) => x)), 'a disk that does not exist');
  assert.is(link.frames.length, 0);
});

test("the vCPU's gate posts a block's fault as region DISK_REGION_BASE + disk and returns once the block's bit is set", () => {
  const init = createPageGateInit();
  const present = [new SharedArrayBuffer(8), new SharedArrayBuffer(8)];
  const gate = createPageGate(init, [], present);
  const bits = new Int32Array(present[1]);
  assert.not.ok(gate.isBlockPresent(1, 40));
  Atomics.or(bits, 1, 1 << 8); // block 40 arrives (the wait then returns at once)
  assert.ok(gate.isBlockPresent(1, 40));
  assert.not.ok(gate.isBlockPresent(0, 40), 'another disk');
  gate.waitForBlock(1, 40);
  const mailbox = new Int32Array(init.mailbox);
  const fault = readFault(mailbox);
  assert.equal([fault.regionId, fault.page], [DISK_REGION_BASE + 1, 40]);
  assert.is(Atomics.load(mailbox, Mailbox.FAULTS), 1);
});

test('a run of arriving blocks writes only those not here, in runs, and makes them present', () => {
  const present = new Int32Array(new SharedArrayBuffer(8));
  present[0] = -1 & ~((1 << 2) | (1 << 3) | (1 << 5)) & ~(1 << 31); // missing: 2, 3, 5, 31
  present[1] = ~1; // missing: 32
  const runs: [number, number][] = [];
  const n = writeAbsentBlocks(present, 1, 32, (k, end) => runs.push([1 + k, 1 + end]));
  assert.equal(runs, [[2, 4], [5, 6], [31, 33]], 'blocks 2-3, 5 and 31-32; the others hold what the guest wrote since');
  assert.is(n, 5);
  assert.equal([present[0], present[1]], [-1, -1]);
  assert.is(writeAbsentBlocks(present, 0, 64, () => assert.unreachable('a late copy')), 0, 'a second copy writes nothing');
});

test.run();
