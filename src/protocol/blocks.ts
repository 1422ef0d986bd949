// Disks on the wire (block migration, capability BLOCKS): the source names its disks once, after
// HELLO_ACK and before the first pass, and sends their blocks in the passes beside RAM pages, as runs of
// consecutive blocks. As a PAGE_BATCH, a BLOCKS frame's CRC covers its head and a 64-bit mxh64 hash per
// block (checkedLength = 16 + 8 × count), and each hash its block, checked before the run is written
// (pipeline/block-buffers.ts). Pure codecs; every count, size and index is checked.
//
//   DISKS  := count:u16 0:u16 (log2BlockBytes:u8 0:u8 0:u16 blocks:u32){count}
//   BLOCKS := disk:u16 flags:u16 firstBlock:u32 count:u32 0:u32 hash:u64{count} data[count × blockBytes]
//             flags bit 0 (ZERO, capability ZERO_BLOCKS): the run's blocks are all zero, and neither
//             hashes nor data follow (the CRC covers the head): how a post-copy push names the
//             never-sent holes a destination waits for without carrying their bytes.

import { FrameType, Limits } from './constants.js';
import { BodyReader, BodyWriter, malformed } from './codec-util.js';
import { BLOCKS_HEAD_BYTES, encodeFrame } from './frame.js';

export interface DiskShape {
  blockBytes: number;
  blocks: number;
}

const MIN_LOG2_BLOCK = 9;
const MAX_LOG2_BLOCK = 16;

export function encodeDisks(disks: readonly DiskShape[]): Uint8Array {
  const w = new BodyWriter().u16(disks.length).u16(0);
  for (const d of disks) w.u8(Math.log2(d.blockBytes)).u8(0).u16(0).u32(d.blocks);
  return encodeFrame(FrameType.DISKS, w.finish());
}

export function decodeDisks(buf: Uint8Array, offset: number, length: number): DiskShape[] {
  const r = new BodyReader(buf, offset, length, 'DISKS');
  const count = r.u16('count');
  if (r.u16('reserved') !== 0) throw malformed('DISKS: reserved field is not zero', FrameType.DISKS);
  if (count < 1 || count > Limits.MAX_DISKS) throw malformed(`DISKS: ${count} disks (1 to ${Limits.MAX_DISKS})`, FrameType.DISKS);
  const disks: DiskShape[] = [];
  for (let i = 0; i < count; i++) {
    const log2 = r.u8('log2BlockBytes');
    if (r.u8('reserved') !== 0 || r.u16('reserved') !== 0) throw malformed(`DISKS: disk ${i}: reserved field is not zero`, FrameType.DISKS);
    const blocks = r.u32('blocks');
    if (log2 < MIN_LOG2_BLOCK || log2 > MAX_LOG2_BLOCK) throw malformed(`DISKS: disk ${i}: block size 2^${log2}`, FrameType.DISKS);
    if (blocks < 1) throw malformed(`DISKS: disk ${i} has no block`, FrameType.DISKS);
    disks.push({ blockBytes: 2 ** log2, blocks });
  }
  r.done();
  return disks;
}

export interface Blocks {
  disk: number;
  firstBlock: number;
  count: number;
  /** Where the blocks' hashes (u64 each) start in the buffer decoded. */
  hashesOffset: number;
  /** Where the blocks' bytes start in the buffer decoded. */
  dataOffset: number;
  /** A run of zero blocks, without hashes or data. */
  zero: boolean;
}

/** BLOCKS flags. */
export const BlocksFlag = { ZERO: 1 } as const;

/** Bytes of a BLOCKS body the frame CRC covers: the head and the hashes (the head alone for a zero run). */
export function blocksCheckedLength(count: number, zero = false): number {
  return BLOCKS_HEAD_BYTES + (zero ? 0 : 8 * count);
}

/** A BLOCKS frame naming `count` zero blocks of `disk` from `firstBlock` (capability ZERO_BLOCKS). */
export function encodeZeroBlocks(disk: number, firstBlock: number, count: number): Uint8Array {
  return encodeFrame(FrameType.BLOCKS, new BodyWriter().u16(disk).u16(BlocksFlag.ZERO).u32(firstBlock).u32(count).u32(0).finish());
}

/**
 * Decodes a BLOCKS body against the disks DISKS named: the disk must exist, the run must lie inside it,
 * and the body must hold exactly its blocks.
 */
export function decodeBlocks(buf: Uint8Array, offset: number, length: number, disks: readonly DiskShape[]): Blocks {
  const r = new BodyReader(buf, offset, length, 'BLOCKS');
  const disk = r.u16('disk');
  const flags = r.u16('flags');
  if ((flags & ~BlocksFlag.ZERO) !== 0) throw malformed(`BLOCKS: unknown flags 0x${flags.toString(16)}`, FrameType.BLOCKS);
  const zero = flags === BlocksFlag.ZERO;
  const firstBlock = r.u32('firstBlock');
  const count = r.u32('count');
  if (r.u32('reserved') !== 0) throw malformed('BLOCKS: reserved field is not zero', FrameType.BLOCKS);
  const shape = disks[disk];
  if (shape === undefined) throw malformed(`BLOCKS: disk ${disk} was not named (${disks.length} disks)`, FrameType.BLOCKS);
  if (count < 1 || count > Limits.MAX_BLOCKS_PER_FRAME) throw malformed(`BLOCKS: ${count} blocks (1 to ${Limits.MAX_BLOCKS_PER_FRAME})`, FrameType.BLOCKS);
  if (firstBlock + count > shape.blocks) throw malformed(`BLOCKS: blocks [${firstBlock}, +${count}) outside disk ${disk} of ${shape.blocks}`, FrameType.BLOCKS);
  const bytes = zero ? 0 : count * (8 + shape.blockBytes);
  if (r.remaining !== bytes) throw malformed(`BLOCKS: ${r.remaining} bytes for ${count} ${zero ? 'zero blocks (none expected)' : `blocks of ${shape.blockBytes} and their hashes`}`, FrameType.BLOCKS);
  return { disk, firstBlock, count, hashesOffset: r.offset, dataOffset: r.offset + (zero ? 0 : 8 * count), zero };
}
