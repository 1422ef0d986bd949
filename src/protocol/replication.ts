// Replication on the wire: a primary's REPLICA link to its standby (replication/primary.ts,
// replication/standby.ts). After the prefaces the primary sends HELLO with role REPLICA (its regions;
// mode live, no capabilities) and the standby answers HELLO_ACK. Then:
//
//   epoch 0, the base:  EPOCH_PAGES* of every page, read while the guest runs, then EPOCH_END(0)
//   epoch e ≥ 1:        EPOCH_PAGES* of the pages written during e (captured paused), BLOCKS* of the
//                       disk blocks written (local disks: DISKS named them once, before the base),
//                       then EPOCH_END(e) with the vCPU state at the pause
//   standby → primary:  EPOCH_ACK(e) once epoch e is applied whole (never before: it commits e's outputs)
//   both ways:          HEARTBEAT when nothing else was sent for a while; GOODBYE: the primary ends on purpose
//
//   EPOCH_PAGES := epoch:u32 region:u16 0:u16 count:u32 payloadBytes:u32 entry{count} payload
//   entry       := page:u32 sizeAndEncoding:u32 hash:u64          sizeAndEncoding = size | encoding << 24
//   encoding 1 raw     size = page size     the page
//            2 xbzrle  0 ≤ size < page size  an XOR delta (assembly/xbzrle.ts) against the page as the
//                                           standby holds it: its last committed epoch, or the base
//   EPOCH_END   := epoch:u32 pages:u32 steps:u64 stateLength:u32 blocks:u32 state[stateLength]
//   EPOCH_ACK   := epoch:u32 0:u32
//   HEARTBEAT   := (empty)          GOODBYE := (empty)
//
// The entries are PAGE_BATCH's. The frame CRC covers the head and the entries (checkedLength =
// 16 + 16 × count, which the decoder insists on) and each mxh64 hash the page after decoding, so a
// delta against a page the standby does not hold is caught too. A page written a few words an epoch
// goes as a few dozen bytes. Base pages are not a checkpoint: epoch 1's END is the first state a
// standby may run. Pure codecs; every count, index and size checked.

import { FrameType, Limits } from './constants.js';
import { BodyReader, BodyWriter, malformed } from './codec-util.js';
import { EPOCH_PAGES_HEAD_BYTES, FRAME_HEADER_BYTES, encodeFrame, sealFrame } from './frame.js';

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
  /** Where the entries (16 bytes each) start. */
  entriesOffset: number;
  payloadOffset: number;
  payloadBytes: number;
}

export interface EpochEnd {
  epoch: number;
  /** Pages the epoch carried (its EPOCH_PAGES counts added up). */
  pages: number;
  /** Disk blocks the epoch carried (its BLOCKS counts added up). */
  blocks: number;
  /** The guest's steps at the pause that ended the epoch (0 for the base). */
  steps: number;
  /** The vCPU state at that pause (empty for the base). */
  state: Uint8Array;
}

export const EpochEncoding = { RAW: 1, XBZRLE: 2 } as const;
const SIZE_MASK = 0xffffff;

/** Most pages of `pageSize` one EPOCH_PAGES frame carries (their payload is at most 16 MiB even raw). */
export function maxPagesPerEpochFrame(pageSize: number): number {
  return Math.min(Limits.MAX_PAGES_PER_EPOCH_FRAME, Math.floor(Limits.MAX_BATCH_PAYLOAD_BYTES / pageSize));
}

/** Bytes of the head segment of an EPOCH_PAGES frame of `count` pages: frame header, head, entries. */
export function epochPagesHeadBytes(count: number): number {
  return FRAME_HEADER_BYTES + EPOCH_PAGES_HEAD_BYTES + 16 * count;
}

/**
 * The head segment of an EPOCH_PAGES frame, sealed: its CRC covers head and entries. The frame is this
 * followed by the `payloadBytes` of payload, the entries' payloads in order. `sizes[i]` is page i's
 * payload size | encoding << 24.
 */
export function encodeEpochPagesHead(epoch: number, regionId: number, pageSize: number, pages: ArrayLike<number>, sizes: ArrayLike<number>, hashes: BigUint64Array): Uint8Array {
  const count = pages.length;
  if (count < 1 || count > maxPagesPerEpochFrame(pageSize)) throw malformed(`EPOCH_PAGES: ${count} pages (1 to ${maxPagesPerEpochFrame(pageSize)})`, FrameType.EPOCH_PAGES);
  if (hashes.length !== count || sizes.length !== count) throw malformed(`EPOCH_PAGES: ${hashes.length} hashes and ${sizes.length} sizes for ${count} pages`, FrameType.EPOCH_PAGES);
  const out = new Uint8Array(epochPagesHeadBytes(count));
  const dv = new DataView(out.buffer);
  const h = FRAME_HEADER_BYTES;
  let payloadBytes = 0;
  for (let i = 0; i < count; i++) {
    const e = h + EPOCH_PAGES_HEAD_BYTES + 16 * i;
    dv.setUint32(e, pages[i], true);
    dv.setUint32(e + 4, sizes[i], true);
    dv.setBigUint64(e + 8, hashes[i], true);
    payloadBytes += sizes[i] & SIZE_MASK;
  }
  dv.setUint32(h, epoch, true);
  dv.setUint16(h + 4, regionId, true);
  dv.setUint32(h + 8, count, true);
  dv.setUint32(h + 12, payloadBytes, true);
  const checked = EPOCH_PAGES_HEAD_BYTES + 16 * count;
  sealFrame(out, 0, FrameType.EPOCH_PAGES, checked + payloadBytes, checked);
  return out;
}

/**
 * Decodes an EPOCH_PAGES body whose frame CRC covered `checkedLength` bytes (it must be the head and
 * every entry): a known region, pages inside it, encodings and sizes as in the table, payloads adding
 * up to exactly the rest of the body.
 */
export function decodeEpochPages(buf: Uint8Array, offset: number, length: number, checkedLength: number, regions: readonly EpochRegion[]): EpochPages {
  const r = new BodyReader(buf, offset, length, 'EPOCH_PAGES');
  const epoch = r.u32('epoch');
  const regionId = r.u16('region');
  if (r.u16('reserved') !== 0) throw malformed('EPOCH_PAGES: reserved field is not zero', FrameType.EPOCH_PAGES);
  const count = r.u32('count');
  const payloadBytes = r.u32('payloadBytes');
  const region = regions.find((x) => x.id === regionId);
  if (region === undefined) throw malformed(`EPOCH_PAGES: region ${regionId} is not the guest's`, FrameType.EPOCH_PAGES);
  const most = maxPagesPerEpochFrame(region.pageSize);
  if (count < 1 || count > most) throw malformed(`EPOCH_PAGES: ${count} pages (1 to ${most})`, FrameType.EPOCH_PAGES);
  if (checkedLength !== EPOCH_PAGES_HEAD_BYTES + 16 * count) throw malformed(`EPOCH_PAGES: the checksum covers ${checkedLength} bytes, not the head and ${count} entries (${EPOCH_PAGES_HEAD_BYTES + 16 * count})`, FrameType.EPOCH_PAGES);
  if (r.remaining !== 16 * count + payloadBytes) throw malformed(`EPOCH_PAGES: ${r.remaining} bytes for ${count} entries and ${payloadBytes} bytes of payload`, FrameType.EPOCH_PAGES);
  const entriesOffset = r.offset;
  let total = 0;
  for (let i = 0; i < count; i++) {
    const page = r.u32('page');
    const sizeAndEncoding = r.u32('sizeAndEncoding');
    r.u64big('hash');
    if (page >= region.pageCount) throw malformed(`EPOCH_PAGES: page ${page} outside region ${regionId} of ${region.pageCount} pages`, FrameType.EPOCH_PAGES);
    const size = sizeAndEncoding & SIZE_MASK;
    const encoding = sizeAndEncoding >>> 24;
    if (encoding === EpochEncoding.RAW) {
      if (size !== region.pageSize) throw malformed(`EPOCH_PAGES: raw page ${page} of ${size} bytes (the page size is ${region.pageSize})`, FrameType.EPOCH_PAGES);
    } else if (encoding === EpochEncoding.XBZRLE) {
      if (size >= region.pageSize) throw malformed(`EPOCH_PAGES: a delta of ${size} bytes for page ${page} (less than the page size ${region.pageSize})`, FrameType.EPOCH_PAGES);
    } else {
      throw malformed(`EPOCH_PAGES: page ${page} has encoding ${encoding} (1 raw, 2 xbzrle)`, FrameType.EPOCH_PAGES);
    }
    total += size;
  }
  if (total !== payloadBytes) throw malformed(`EPOCH_PAGES: entries add up to ${total} bytes of payload, the head says ${payloadBytes}`, FrameType.EPOCH_PAGES);
  return { epoch, regionId, pageSize: region.pageSize, count, entriesOffset, payloadOffset: entriesOffset + 16 * count, payloadBytes };
}

export function encodeEpochEnd(m: EpochEnd): Uint8Array {
  if (m.state.length > Limits.MAX_DEVICE_STATE_BYTES) throw malformed(`EPOCH_END: device state of ${m.state.length} bytes exceeds ${Limits.MAX_DEVICE_STATE_BYTES}`, FrameType.EPOCH_END);
  return encodeFrame(FrameType.EPOCH_END, new BodyWriter().u32(m.epoch).u32(m.pages).u64(m.steps).u32(m.state.length).u32(m.blocks).bytes(m.state).finish());
}

export function decodeEpochEnd(buf: Uint8Array, offset: number, length: number): EpochEnd {
  const r = new BodyReader(buf, offset, length, 'EPOCH_END');
  const epoch = r.u32('epoch');
  const pages = r.u32('pages');
  const steps = r.u64('steps');
  const stateLength = r.u32('stateLength');
  const blocks = r.u32('blocks');
  if (r.remaining !== stateLength) throw malformed(`EPOCH_END: state of ${stateLength} bytes in a body with ${r.remaining} left`, FrameType.EPOCH_END);
  if ((epoch === 0) !== (stateLength === 0)) throw malformed(`EPOCH_END: epoch ${epoch} with ${stateLength} bytes of state (only the base has none)`, FrameType.EPOCH_END);
  const state = r.bytes(stateLength, 'state').slice();
  r.done();
  return { epoch, pages, blocks, steps, state };
}

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
