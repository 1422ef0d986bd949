// DISKS and BLOCKS (src/protocol/blocks.ts, frames built and checked by pipeline/block-buffers.ts):
// the disks a source names once, and the runs of blocks it sends in its passes, each block with its hash. Round trips keep every field; every field a peer could lie about is refused
// with MS_ERR_FRAME_MALFORMED (a disk never named, a run past the disk's end, a body that does not hold
// exactly its blocks, reserved bits, block sizes out of range); and seeded random bodies never make
// the decoders throw anything else.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FrameType, Limits } from '../../src/protocol/constants.js';
import { blocksCheckedLength, decodeBlocks, decodeDisks, encodeDisks, encodeZeroBlocks, type DiskShape } from '../../src/protocol/blocks.js';
import { BlockBuffers } from '../../src/pipeline/block-buffers.js';
import { BLOCKS_HEAD_BYTES, FRAME_HEADER_BYTES, readFrameHeader, verifyFrame } from '../../src/protocol/frame.js';
import { KERNEL_RESERVED_BYTES, Kernels } from '../../src/wasm/kernels.js';
import { expectCode } from '../_support/guest-helpers.js';
import { seeded } from '../_support/seeded.js';

const MALFORMED = 'MS_ERR_FRAME_MALFORMED';
const DISKS: DiskShape[] = [{ blockBytes: 4096, blocks: 1024 }, { blockBytes: 65536, blocks: 3 }, { blockBytes: 512, blocks: 2 ** 32 - 1 }];

function body(frame: Uint8Array): Uint8Array {
  return frame.subarray(FRAME_HEADER_BYTES);
}

test('DISKS round-trips every disk shape, and its frame is a sealed control frame', () => {
  const frame = encodeDisks(DISKS);
  const h = readFrameHeader(frame, 0, frame.length)!;
  assert.is(h.type, FrameType.DISKS);
  verifyFrame(frame, 0, h);
  assert.equal(decodeDisks(frame, FRAME_HEADER_BYTES, h.bodyLength), DISKS);
});

test('DISKS refuses no disk, too many, bad block sizes, empty disks, reserved bits, trailing bytes', () => {
  const good = body(encodeDisks(DISKS)).slice();
  const edit = (f: (dv: DataView) => void, bytes: Uint8Array = good.slice()): Uint8Array => {
    f(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    return bytes;
  };
  const cases: [string, Uint8Array, RegExp][] = [
    ['no disk', edit((dv) => dv.setUint16(0, 0, true)), /0 disks/],
    ['more disks than the limit', edit((dv) => dv.setUint16(0, Limits.MAX_DISKS + 1, true)), /disks/],
    ['more disks than the body holds', edit((dv) => dv.setUint16(0, 4, true)), /truncated/],
    ['a reserved head', edit((dv) => dv.setUint16(2, 1, true)), /reserved/],
    ['256-byte blocks', edit((dv) => dv.setUint8(4, 8)), /block size 2\^8/],
    ['128 KiB blocks', edit((dv) => dv.setUint8(4, 17)), /block size 2\^17/],
    ['a reserved disk byte', edit((dv) => dv.setUint8(5, 1)), /reserved/],
    ['an empty disk', edit((dv) => dv.setUint32(8, 0, true)), /no block/],
    ['a trailing byte', new Uint8Array([...good, 0]), /./],
  ];
  for (const [what, bytes, message] of cases) assert.match(expectCode(() => decodeDisks(bytes, 0, bytes.length), MALFORMED, what).message, message, what);
});

test('a BLOCKS frame carries its run and a hash per block; the CRC covers head and hashes, the hashes the blocks', () => {
  const buffers = new BlockBuffers(1);
  const frame = buffers.frame(0, 1, 1, 2, 65536, (data) => {
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  }).slice();
  const h = readFrameHeader(frame, 0, frame.length)!;
  assert.is(h.type, FrameType.BLOCKS);
  assert.is(h.checkedLength, blocksCheckedLength(2));
  assert.is(h.bodyLength, BLOCKS_HEAD_BYTES + 2 * (8 + 65536));
  verifyFrame(frame, 0, h);
  const b = decodeBlocks(frame, FRAME_HEADER_BYTES, h.bodyLength, DISKS);
  assert.equal([b.disk, b.firstBlock, b.count], [1, 1, 2]);
  assert.is(b.hashesOffset, FRAME_HEADER_BYTES + BLOCKS_HEAD_BYTES);
  assert.is(b.dataOffset, b.hashesOffset + 16);
  assert.is(frame[b.dataOffset + 5], 35);
  const receiver = new BlockBuffers(1);
  receiver.verify(frame, b.hashesOffset, b.dataOffset, 2, 65536, () => 'run');
  // A bit flipped in a block: the CRC does not see it, the block's hash does.
  const data = frame.slice();
  data[b.dataOffset + 65536 + 100] ^= 4;
  verifyFrame(data, 0, h);
  assert.match(expectCode(() => receiver.verify(data, b.hashesOffset, b.dataOffset, 2, 65536, () => 'run'), 'MS_ERR_PAGE_HASH_MISMATCH').message, /block 1 of the run/);
  // A bit flipped in a hash: the CRC sees it.
  const hash = frame.slice();
  hash[b.hashesOffset + 3] ^= 1;
  expectCode(() => verifyFrame(hash, 0, h), 'MS_ERR_FRAME_CHECKSUM');
});

test('a run received into a memory with kernels is checked where it lies (no copy), at an odd offset too; a flipped bit there is caught', () => {
  const frame = new BlockBuffers(1).frame(0, 0, 0, 3, 4096, (data) => {
    for (let i = 0; i < data.length; i++) data[i] = (i * 13 + 1) & 0xff;
  });
  const h = readFrameHeader(frame, 0, frame.length)!;
  const b = decodeBlocks(frame, FRAME_HEADER_BYTES, h.bodyLength, DISKS);
  // The ring's memory: frames land at any offset in its arena.
  const ring = new WebAssembly.Memory({ initial: 4, maximum: 4, shared: true });
  const at = KERNEL_RESERVED_BYTES + 8192 + 3;
  const received = new Uint8Array(ring.buffer, at, frame.length);
  received.set(frame);
  const receiver = new BlockBuffers(1);
  receiver.receivedIn(new Kernels(ring), KERNEL_RESERVED_BYTES);
  const ownScratch = (): number => receiver.bytes.reduce((n, v) => n + v, 0);
  receiver.verify(received, b.hashesOffset, b.dataOffset, 3, 4096, () => 'run');
  assert.is(ownScratch(), 0, 'nothing was copied into the receiver\'s own scratch');
  received[b.dataOffset + 2 * 4096 + 17] ^= 0x40;
  assert.match(expectCode(() => receiver.verify(received, b.hashesOffset, b.dataOffset, 3, 4096, () => 'run'), 'MS_ERR_PAGE_HASH_MISMATCH').message, /block 2 of the run/);
  // A frame elsewhere (a plain buffer) is still checked, through a copy.
  receiver.verify(frame, b.hashesOffset, b.dataOffset, 3, 4096, () => 'run');
  assert.ok(ownScratch() > 0);
});

test('BLOCKS refuses a disk never named, a run outside its disk, a body that is not exactly its blocks, reserved bits', () => {
  const frame = new BlockBuffers(1).frame(0, 0, 1020, 4, 4096, (d) => d.fill(1));
  const good = body(frame).slice();
  decodeBlocks(good, 0, good.length, DISKS);
  const edit = (f: (dv: DataView) => void): Uint8Array => {
    const bytes = good.slice();
    f(new DataView(bytes.buffer));
    return bytes;
  };
  const cases: [string, Uint8Array, RegExp][] = [
    ['disk 3 of 3', edit((dv) => dv.setUint16(0, 3, true)), /disk 3 was not named/],
    ['a run past the end', edit((dv) => dv.setUint32(4, 1021, true)), /outside disk 0/],
    ['a run that wraps u32', edit((dv) => dv.setUint32(4, 0xffffffff, true)), /outside disk 0/],
    ['no block', edit((dv) => dv.setUint32(8, 0, true)), /0 blocks/],
    ['more blocks than a frame may carry', edit((dv) => dv.setUint32(8, Limits.MAX_BLOCKS_PER_FRAME + 1, true)), /blocks/],
    ['a count the body does not hold', edit((dv) => dv.setUint32(8, 3, true)), /bytes for 3 blocks/],
    ['a body one byte short', good.slice(0, good.length - 1), /bytes for 4 blocks/],
    ['an unknown flag', edit((dv) => dv.setUint16(2, 2, true)), /unknown flags 0x2/],
    ['a zero run that carries bytes', edit((dv) => dv.setUint16(2, 1, true)), /zero blocks \(none expected\)/],
    ['reserved tail', edit((dv) => dv.setUint32(12, 1, true)), /reserved/],
    ['a body cut in its head', good.slice(0, 10), /truncated/],
  ];
  for (const [what, bytes, message] of cases) assert.match(expectCode(() => decodeBlocks(bytes, 0, bytes.length, DISKS), MALFORMED, what).message, message, what);
});

test('a run of zero blocks is its head alone, the CRC over it; it decodes as zero with the run it names', () => {
  const frame = encodeZeroBlocks(0, 1000, 20);
  const h = readFrameHeader(frame, 0, frame.length)!;
  assert.is(h.type, FrameType.BLOCKS);
  assert.is(h.bodyLength, BLOCKS_HEAD_BYTES);
  assert.is(h.checkedLength, blocksCheckedLength(20, true));
  verifyFrame(frame, 0, h);
  const b = decodeBlocks(frame, FRAME_HEADER_BYTES, h.bodyLength, DISKS);
  assert.equal([b.disk, b.firstBlock, b.count, b.zero], [0, 1000, 20, true]);
  const past = encodeZeroBlocks(0, 1010, 20);
  expectCode(() => decodeBlocks(past, FRAME_HEADER_BYTES, BLOCKS_HEAD_BYTES, DISKS), MALFORMED);
});

test('random bodies make DISKS and BLOCKS throw only MS_ERR_FRAME_MALFORMED, and every accepted run lies inside its disk', () => {
  const rng = seeded(20261202);
  for (let i = 0; i < 20_000; i++) {
    const n = rng.below(64);
    const bytes = new Uint8Array(n + (rng.below(4) === 0 ? 4104 * rng.below(3) : 0));
    for (let k = 0; k < n; k++) bytes[k] = rng.below(4) === 0 ? rng.below(256) : rng.below(3);
    for (const decode of [() => decodeDisks(bytes, 0, bytes.length), () => decodeBlocks(bytes, 0, bytes.length, DISKS)]) {
      try {
        const r = decode();
        if (!Array.isArray(r)) assert.ok(r.firstBlock + r.count <= DISKS[r.disk].blocks, `input ${i}`);
      } catch (err) {
        assert.is((err as { code?: string }).code, MALFORMED, `input ${i}: ${(err as Error).message}`);
      }
    }
  }
});

test.run();
