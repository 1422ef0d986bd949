// Disks on the wire (block migration, capability BLOCKS): the source names its disks once, after
// HELLO_ACK and before the first pass, and sends their blocks in the passes beside RAM pages, as runs of
// consecutive blocks. The frame CRC covers a BLOCKS body whole (checkedLength = bodyLength), so each
// block is verified before it is written. Pure codecs; every count, size and index is checked.
//
//   DISKS  := count:u16 0:u16 (log2BlockBytes:u8 0:u8 0:u16 blocks:u32){count}
//   BLOCKS := disk:u16 0:u16 firstBlock:u32 count:u32 0:u32 data[count × blockBytes]

import { FrameType, Limits } from './constants.js';
import { BodyReader, BodyWriter, malformed } from './codec-util.js';
import { BLOCKS_HEAD_BYTES, FRAME_HEADER_BYTES, encodeFrame, sealFrame } from './frame.js';

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

/** A frame's bytes for `count` blocks of `disk` from `firstBlock`: fill `data` (the blocks' bytes), then `seal`. */
export interface BlocksFrame {
  frame: Uint8Array;
  data: Uint8Array;
  seal(): Uint8Array;
}

export function blocksFrame(disk: number, firstBlock: number, count: number, blockBytes: number): BlocksFrame {
  const dataBytes = count * blockBytes;
  const frame = new Uint8Array(FRAME_HEADER_BYTES + BLOCKS_HEAD_BYTES + dataBytes);
  const dv = new DataView(frame.buffer, FRAME_HEADER_BYTES, BLOCKS_HEAD_BYTES);
  dv.setUint16(0, disk, true);
  dv.setUint32(4, firstBlock, true);
  dv.setUint32(8, count, true);
  const data = frame.subarray(FRAME_HEADER_BYTES + BLOCKS_HEAD_BYTES);
  return {
    frame, data,
    seal: () => {
      sealFrame(frame, 0, FrameType.BLOCKS, BLOCKS_HEAD_BYTES + dataBytes);
      return frame;
    },
  };
}

export interface Blocks {
  disk: number;
  firstBlock: number;
  count: number;
  /** Where the blocks' bytes start in the buffer decoded. */
  dataOffset: number;
}

/**
 * Decodes a BLOCKS body against the disks DISKS named: the disk must exist, the run must lie inside it,
 * and the body must hold exactly its blocks.
 */
export function decodeBlocks(buf: Uint8Array, offset: number, length: number, disks: readonly DiskShape[]): Blocks {
  const r = new BodyReader(buf, offset, length, 'BLOCKS');
  const disk = r.u16('disk');
  if (r.u16('reserved') !== 0) throw malformed('BLOCKS: reserved field is not zero', FrameType.BLOCKS);
  const firstBlock = r.u32('firstBlock');
  const count = r.u32('count');
  if (r.u32('reserved') !== 0) throw malformed('BLOCKS: reserved field is not zero', FrameType.BLOCKS);
  const shape = disks[disk];
  if (shape === undefined) throw malformed(`BLOCKS: disk ${disk} was not named (${disks.length} disks)`, FrameType.BLOCKS);
  if (count < 1 || count > Limits.MAX_BLOCKS_PER_FRAME) throw malformed(`BLOCKS: ${count} blocks (1 to ${Limits.MAX_BLOCKS_PER_FRAME})`, FrameType.BLOCKS);
  if (firstBlock + count > shape.blocks) throw malformed(`BLOCKS: blocks [${firstBlock}, +${count}) outside disk ${disk} of ${shape.blocks}`, FrameType.BLOCKS);
  if (r.remaining !== count * shape.blockBytes) throw malformed(`BLOCKS: ${r.remaining} bytes for ${count} blocks of ${shape.blockBytes}`, FrameType.BLOCKS);
  return { disk, firstBlock, count, dataOffset: r.offset };
}
