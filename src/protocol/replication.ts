// Replication on the wire: a primary's REPLICA link to its standby (replication/primary.ts,
// replication/standby.ts). After the prefaces the primary sends HELLO with role REPLICA (its regions;
// mode live, no capabilities) and the standby answers HELLO_ACK. Then:
//
//   epoch 0, the base:  EPOCH_PAGES* of every page, read while the guest runs, then EPOCH_END(0)
//   epoch e ≥ 1:        EPOCH_PAGES* of the pages written during e (captured paused), then EPOCH_END(e)
//                       with the vCPU state at the pause
//   standby → primary:  EPOCH_ACK(e) once epoch e is applied whole (never before: it commits e's outputs)
//   both ways:          HEARTBEAT when nothing else was sent for a while; GOODBYE: the primary ends on purpose
//
//   EPOCH_PAGES := epoch:u32 region:u16 0:u16 count:u32 0:u32 page:u32{count} hash:u64{count} data[count × pageSize]
//   EPOCH_END   := epoch:u32 pages:u32 steps:u64 stateLength:u32 0:u32 state[stateLength]
//   EPOCH_ACK   := epoch:u32 0:u32
//   HEARTBEAT   := (empty)          GOODBYE := (empty)
//
// As in BLOCKS, the frame CRC of EPOCH_PAGES covers its head, page numbers and hashes
// (checkedLength = 16 + 12 × count) and each mxh64 hash its page. Base pages are not a checkpoint:
// epoch 1's END is the first state a standby may run. Pure codecs; every count, index and size checked.

import { FrameType, Limits } from './constants.js';
import { BodyReader, BodyWriter, malformed } from './codec-util.js';
import { EPOCH_END_HEAD_BYTES, EPOCH_PAGES_HEAD_BYTES, FRAME_HEADER_BYTES, encodeFrame, sealFrame } from './frame.js';

export interface EpochRegion {
  readonly id: number;
  readonly pageSize: number;
  readonly pageCount: number;
}

/** A checked EPOCH_PAGES body; offsets are absolute in the buffer decoded. */
export interface EpochPages {
  epoch: number;
  regionId: number;
  pageSize: number;
  count: number;
  pagesOffset: number;
  hashesOffset: number;
  dataOffset: number;
}

export interface EpochEnd {
  epoch: number;
  /** Pages the epoch carried (its EPOCH_PAGES counts added up). */
  pages: number;
  /** The guest's steps at the pause that ended the epoch (0 for the base). */
  steps: number;
  /** The vCPU state at that pause (empty for the base). */
  state: Uint8Array;
}

/** Most pages of `pageSize` one EPOCH_PAGES frame carries. */
export function maxPagesPerEpochFrame(pageSize: number): number {
  return Math.min(Limits.MAX_PAGES_PER_EPOCH_FRAME, Math.floor(Limits.MAX_BATCH_PAYLOAD_BYTES / pageSize));
}

/** Bytes of the head segment of an EPOCH_PAGES frame of `count` pages: frame header, head, page numbers, hashes. */
export function epochPagesHeadBytes(count: number): number {
  return FRAME_HEADER_BYTES + EPOCH_PAGES_HEAD_BYTES + 12 * count;
}

/**
 * The head segment of an EPOCH_PAGES frame (sealed: its CRC covers head, page numbers and hashes); the
 * frame is this followed by the pages' `count × pageSize` bytes, in the order `pages` names them.
 */
export function encodeEpochPagesHead(epoch: number, regionId: number, pageSize: number, pages: ArrayLike<number>, hashes: BigUint64Array): Uint8Array {
  const count = pages.length;
  if (count < 1 || count > maxPagesPerEpochFrame(pageSize)) throw malformed(`EPOCH_PAGES: ${count} pages (1 to ${maxPagesPerEpochFrame(pageSize)})`, FrameType.EPOCH_PAGES);
  if (hashes.length !== count) throw malformed(`EPOCH_PAGES: ${hashes.length} hashes for ${count} pages`, FrameType.EPOCH_PAGES);
  const out = new Uint8Array(epochPagesHeadBytes(count));
  const dv = new DataView(out.buffer);
  const h = FRAME_HEADER_BYTES;
  dv.setUint32(h, epoch, true);
  dv.setUint16(h + 4, regionId, true);
  dv.setUint32(h + 8, count, true);
  for (let i = 0; i < count; i++) {
    dv.setUint32(h + EPOCH_PAGES_HEAD_BYTES + 4 * i, pages[i], true);
    dv.setBigUint64(h + EPOCH_PAGES_HEAD_BYTES + 4 * count + 8 * i, hashes[i], true);
  }
  const checked = EPOCH_PAGES_HEAD_BYTES + 12 * count;
  sealFrame(out, 0, FrameType.EPOCH_PAGES, checked + count * pageSize, checked);
  return out;
}

/** Decodes an EPOCH_PAGES body: a known region, pages inside it, and exactly their bytes. */
export function decodeEpochPages(buf: Uint8Array, offset: number, length: number, regions: readonly EpochRegion[]): EpochPages {
  const r = new BodyReader(buf, offset, length, 'EPOCH_PAGES');
  const epoch = r.u32('epoch');
  const regionId = r.u16('region');
  if (r.u16('reserved') !== 0) throw malformed('EPOCH_PAGES: reserved field is not zero', FrameType.EPOCH_PAGES);
  const count = r.u32('count');
  if (r.u32('reserved') !== 0) throw malformed('EPOCH_PAGES: reserved field is not zero', FrameType.EPOCH_PAGES);
  const region = regions.find((x) => x.id === regionId);
  if (region === undefined) throw malformed(`EPOCH_PAGES: region ${regionId} is not the guest's`, FrameType.EPOCH_PAGES);
  const most = maxPagesPerEpochFrame(region.pageSize);
  if (count < 1 || count > most) throw malformed(`EPOCH_PAGES: ${count} pages (1 to ${most})`, FrameType.EPOCH_PAGES);
  if (r.remaining !== count * (12 + region.pageSize)) throw malformed(`EPOCH_PAGES: ${r.remaining} bytes for ${count} pages of ${region.pageSize} and their numbers and hashes`, FrameType.EPOCH_PAGES);
  const pagesOffset = r.offset;
  for (let i = 0; i < count; i++) {
    const page = r.u32('page');
    if (page >= region.pageCount) throw malformed(`EPOCH_PAGES: page ${page} outside region ${regionId} of ${region.pageCount} pages`, FrameType.EPOCH_PAGES);
  }
  return { epoch, regionId, pageSize: region.pageSize, count, pagesOffset, hashesOffset: pagesOffset + 4 * count, dataOffset: pagesOffset + 12 * count };
}

export function encodeEpochEnd(m: EpochEnd): Uint8Array {
  if (m.state.length > Limits.MAX_DEVICE_STATE_BYTES) throw malformed(`EPOCH_END: device state of ${m.state.length} bytes exceeds ${Limits.MAX_DEVICE_STATE_BYTES}`, FrameType.EPOCH_END);
  return encodeFrame(FrameType.EPOCH_END, new BodyWriter().u32(m.epoch).u32(m.pages).u64(m.steps).u32(m.state.length).u32(0).bytes(m.state).finish());
}

export function decodeEpochEnd(buf: Uint8Array, offset: number, length: number): EpochEnd {
  const r = new BodyReader(buf, offset, length, 'EPOCH_END');
  const epoch = r.u32('epoch');
  const pages = r.u32('pages');
  const steps = r.u64('steps');
  const stateLength = r.u32('stateLength');
  if (r.u32('reserved') !== 0) throw malformed('EPOCH_END: reserved field is not zero', FrameType.EPOCH_END);
  if (r.remaining !== stateLength) throw malformed(`EPOCH_END: state of ${stateLength} bytes in a body with ${r.remaining} left`, FrameType.EPOCH_END);
  if ((epoch === 0) !== (stateLength === 0)) throw malformed(`EPOCH_END: epoch ${epoch} with ${stateLength} bytes of state (only the base has none)`, FrameType.EPOCH_END);
  const state = r.bytes(stateLength, 'state').slice();
  r.done();
  return { epoch, pages, steps, state };
}

/** Head bytes of EPOCH_END (for callers sizing buffers). */
export const EPOCH_END_FIXED_BYTES = EPOCH_END_HEAD_BYTES;

export function encodeEpochAck(epoch: number): Uint8Array {
  return encodeFrame(FrameType.EPOCH_ACK, new BodyWriter().u32(epoch).u32(0).finish());
}

export function decodeEpochAck(buf: Uint8Array, offset: number, length: number): number {
  const r = new BodyReader(buf, offset, length, 'EPOCH_ACK');
  const epoch = r.u32('epoch');
  if (r.u32('reserved') !== 0) throw malformed('EPOCH_ACK: reserved field is not zero', FrameType.EPOCH_ACK);
  r.done();
  return epoch;
}

export function encodeHeartbeat(): Uint8Array {
  return encodeFrame(FrameType.HEARTBEAT, new Uint8Array(0));
}

export function encodeGoodbye(): Uint8Array {
  return encodeFrame(FrameType.GOODBYE, new Uint8Array(0));
}

/** HEARTBEAT and GOODBYE have empty bodies. */
export function decodeEmpty(what: string, frameType: number, length: number): void {
  if (length !== 0) throw malformed(`${what}: body of ${length} bytes, must be empty`, frameType);
}
