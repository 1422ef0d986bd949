// Control messages: everything on a channel that is not a page batch or the handshake.
//
//   ITERATION_END  := iteration:u32 reserved:u32(0) pages:u64 bytes:u64                 (src → dst)
//   DEVICE_STATE   := state bytes (≤ MAX_DEVICE_STATE_BYTES)                              (src → dst)
//   SWITCHOVER     := mode:u8 reserved:u8[3] iterations:u32 digest:u64 guestSteps:u64
//                     pagesSent:u64 missingPages:u64                                      (src → dst)
//   RESUMED        := digest:u64 pagesReceived:u64 applyMs:f64 stateMs:f64 digestMs:f64 resumeMs:f64
//                                                                                         (dst → src)
//   COMPLETE       := (empty): the source has released the guest                          (src → dst)
//                     (v3: RESUMED and COMPLETE may also travel on a QUERY channel, after the
//                     bulk link was lost past SWITCHOVER; the bodies are the same)
//   ERROR          := codeLength:u8 code[codeLength] messageLength:u16 message[messageLength]
//   PAGE_REQUEST   := region:u16 reserved:u16(0) page:u32 count:u32 requestId:u32          (dst → src, urgent)
//   MISSING_PAGES  := region:u16 reserved:u16(0) firstPage:u32 pageCount:u32 reserved:u32(0) bitmap
//                     bitmap = ceil(pageCount/64) u64 words, bit i = page firstPage + i   (src → dst)
//   POSTCOPY_DONE  := digest:u64 pagesReceived:u64 faults:u64 faultP50Us:f64 faultP99Us:f64
//                     faultMaxUs:f64 postcopyMs:f64                                      (dst → src)
//   PAGE_HASHES    := region:u16 reserved:u16(0) firstPage:u32 count:u32 reserved:u32(0) hash:u64{count}
//                     the hash of each page as the destination holds it                   (dst → src, v4)
//
// A SWITCHOVER with mode POSTCOPY is preceded by MISSING_PAGES frames naming every page the
// destination does not hold yet (hybrid); in pure post-copy they name every page.

import { ErrorCode, MemshiftError } from '../errors.js';
import { BodyReader, BodyWriter, malformed } from './codec-util.js';
import { FrameType, Limits, SwitchoverMode } from './constants.js';
import { encodeFrame } from './frame.js';

export interface IterationEnd { iteration: number; pages: number; bytes: number }
export interface Switchover { mode: number; iterations: number; digest: bigint; guestSteps: number; pagesSent: number; missingPages: number }
export interface Resumed { digest: bigint; pagesReceived: number; applyMs: number; stateMs: number; digestMs: number; resumeMs: number }
export interface ErrorMessage { code: string; message: string }
export interface PageRequest { regionId: number; page: number; count: number; requestId: number }
export interface MissingPages { regionId: number; firstPage: number; pageCount: number; bitmap: Uint8Array }
export interface PageHashes { regionId: number; firstPage: number; hashes: BigUint64Array }
export interface PostcopyDone {
  digest: bigint; pagesReceived: number; faults: number; faultP50Us: number; faultP99Us: number; faultMaxUs: number; postcopyMs: number;
}

/** Most pages one PAGE_REQUEST may ask for (the faulting page and its neighbours). */
export const MAX_PAGES_PER_REQUEST = 64;

export function encodeIterationEnd(m: IterationEnd): Uint8Array {
  return encodeFrame(FrameType.ITERATION_END, new BodyWriter().u32(m.iteration).u32(0).u64(m.pages).u64(m.bytes).finish());
}

export function decodeIterationEnd(buf: Uint8Array, offset: number, length: number): IterationEnd {
  const r = new BodyReader(buf, offset, length, 'ITERATION_END');
  const iteration = r.u32('iteration');
  if (r.u32('reserved') !== 0) throw malformed('ITERATION_END: reserved field is not zero');
  const m = { iteration, pages: r.u64('pages'), bytes: r.u64('bytes') };
  r.done();
  return m;
}

export function encodeDeviceState(state: Uint8Array): Uint8Array {
  if (state.length > Limits.MAX_DEVICE_STATE_BYTES) throw malformed(`DEVICE_STATE of ${state.length} bytes exceeds ${Limits.MAX_DEVICE_STATE_BYTES}`);
  return encodeFrame(FrameType.DEVICE_STATE, state);
}

export function encodeSwitchover(m: Switchover): Uint8Array {
  return encodeFrame(FrameType.SWITCHOVER, new BodyWriter().u8(m.mode).u8(0).u16(0).u32(m.iterations).u64(m.digest)
    .u64(m.guestSteps).u64(m.pagesSent).u64(m.missingPages).finish());
}

export function decodeSwitchover(buf: Uint8Array, offset: number, length: number): Switchover {
  const r = new BodyReader(buf, offset, length, 'SWITCHOVER');
  const mode = r.u8('mode');
  if (mode !== SwitchoverMode.STOP_AND_COPY && mode !== SwitchoverMode.POSTCOPY) throw malformed(`SWITCHOVER: unknown mode ${mode}`);
  if (r.u8('reserved') !== 0 || r.u16('reserved') !== 0) throw malformed('SWITCHOVER: reserved field is not zero');
  const m = {
    mode, iterations: r.u32('iterations'), digest: r.u64big('digest'), guestSteps: r.u64('guestSteps'),
    pagesSent: r.u64('pagesSent'), missingPages: r.u64('missingPages'),
  };
  r.done();
  return m;
}

export function encodeResumed(m: Resumed): Uint8Array {
  return encodeFrame(FrameType.RESUMED, new BodyWriter().u64(m.digest).u64(m.pagesReceived).f64(m.applyMs).f64(m.stateMs)
    .f64(m.digestMs).f64(m.resumeMs).finish());
}

export function decodeResumed(buf: Uint8Array, offset: number, length: number): Resumed {
  const r = new BodyReader(buf, offset, length, 'RESUMED');
  const m = {
    digest: r.u64big('digest'), pagesReceived: r.u64('pagesReceived'), applyMs: r.f64('applyMs'), stateMs: r.f64('stateMs'),
    digestMs: r.f64('digestMs'), resumeMs: r.f64('resumeMs'),
  };
  r.done();
  return m;
}

export function encodeComplete(): Uint8Array {
  return encodeFrame(FrameType.COMPLETE, new Uint8Array(0));
}

export function decodeComplete(_buf: Uint8Array, _offset: number, length: number): void {
  if (length !== 0) throw malformed(`COMPLETE: body must be empty, has ${length} bytes`);
}

export function encodeError(m: ErrorMessage): Uint8Array {
  const code = Buffer.from(m.code.slice(0, 255), 'latin1');
  let message = Buffer.from(m.message, 'utf8');
  if (message.length > Limits.MAX_ERROR_MESSAGE_BYTES) message = message.subarray(0, Limits.MAX_ERROR_MESSAGE_BYTES);
  return encodeFrame(FrameType.ERROR, new BodyWriter().u8(code.length).bytes(code).u16(message.length).bytes(message).finish());
}

export function decodeError(buf: Uint8Array, offset: number, length: number): ErrorMessage {
  const r = new BodyReader(buf, offset, length, 'ERROR');
  const code = Buffer.from(r.bytes(r.u8('codeLength'), 'code')).toString('latin1');
  const messageLength = r.u16('messageLength');
  if (messageLength > Limits.MAX_ERROR_MESSAGE_BYTES) throw malformed(`ERROR: message of ${messageLength} bytes exceeds ${Limits.MAX_ERROR_MESSAGE_BYTES}`);
  const message = Buffer.from(r.bytes(messageLength, 'message')).toString('utf8');
  r.done();
  if (!/^[A-Z0-9_]{1,64}$/.test(code)) throw malformed(`ERROR: code ${JSON.stringify(code)} is not an error code`);
  return { code, message };
}

/** The peer's error as a local one: code MS_ERR_PEER_ERROR, the peer's code in `peerCode`. */
export function peerError(m: ErrorMessage, peer: string): MemshiftError {
  return new MemshiftError(ErrorCode.PEER_ERROR, `${peer} reported ${m.code}: ${m.message}`, { peerCode: m.code, peer });
}

export function encodePageRequest(m: PageRequest): Uint8Array {
  return encodeFrame(FrameType.PAGE_REQUEST, new BodyWriter().u16(m.regionId).u16(0).u32(m.page).u32(m.count).u32(m.requestId).finish());
}

export function decodePageRequest(buf: Uint8Array, offset: number, length: number): PageRequest {
  const r = new BodyReader(buf, offset, length, 'PAGE_REQUEST');
  const regionId = r.u16('region');
  if (r.u16('reserved') !== 0) throw malformed('PAGE_REQUEST: reserved field is not zero');
  const m = { regionId, page: r.u32('page'), count: r.u32('count'), requestId: r.u32('requestId') };
  r.done();
  if (m.count < 1 || m.count > MAX_PAGES_PER_REQUEST) throw malformed(`PAGE_REQUEST: count ${m.count} outside [1, ${MAX_PAGES_PER_REQUEST}]`);
  return m;
}

export function encodeMissingPages(m: MissingPages): Uint8Array {
  const words = Math.ceil(m.pageCount / 64);
  if (m.bitmap.length !== words * 8) throw malformed(`MISSING_PAGES: bitmap of ${m.bitmap.length} bytes for ${m.pageCount} pages (needs ${words * 8})`);
  return encodeFrame(FrameType.MISSING_PAGES, writeRangeHead(new BodyWriter(), m.regionId, m.firstPage, m.pageCount).bytes(m.bitmap).finish());
}

/** The 16-byte head MISSING_PAGES and PAGE_HASHES share: region u16, 0 u16, first page u32, count u32, 0 u32. */
function writeRangeHead(w: BodyWriter, regionId: number, firstPage: number, count: number): BodyWriter {
  return w.u16(regionId).u16(0).u32(firstPage).u32(count).u32(0);
}

function readRangeHead(r: BodyReader, frame: string): { regionId: number; firstPage: number; count: number } {
  const regionId = r.u16('region');
  if (r.u16('reserved') !== 0) throw malformed(`${frame}: reserved field is not zero`);
  const firstPage = r.u32('firstPage');
  const count = r.u32('count');
  if (r.u32('reserved') !== 0) throw malformed(`${frame}: reserved field is not zero`);
  return { regionId, firstPage, count };
}

/** Decodes MISSING_PAGES; `bitmap` is a view into `buf` (copy it to keep it). */
export function decodeMissingPages(buf: Uint8Array, offset: number, length: number): MissingPages {
  const r = new BodyReader(buf, offset, length, 'MISSING_PAGES');
  const { regionId, firstPage, count: pageCount } = readRangeHead(r, 'MISSING_PAGES');
  if (firstPage % 64 !== 0) throw malformed(`MISSING_PAGES: first page ${firstPage} is not a multiple of 64`);
  if (pageCount < 1 || pageCount > Limits.MAX_MISSING_BITMAP_BYTES * 8) throw malformed(`MISSING_PAGES: page count ${pageCount} outside [1, ${Limits.MAX_MISSING_BITMAP_BYTES * 8}]`);
  const bitmap = r.bytes(Math.ceil(pageCount / 64) * 8, 'bitmap');
  r.done();
  return { regionId, firstPage, pageCount, bitmap };
}

/** Most hashes in one PAGE_HASHES: its body fits a control frame (the source reads control frames only). */
export const MAX_HASHES_PER_FRAME = Math.floor((Limits.MAX_CONTROL_BODY_BYTES - 16) / 8);

export function encodePageHashes(m: PageHashes): Uint8Array {
  const count = m.hashes.length;
  if (count < 1 || count > MAX_HASHES_PER_FRAME) throw malformed(`PAGE_HASHES: ${count} hashes outside [1, ${MAX_HASHES_PER_FRAME}]`);
  const w = writeRangeHead(new BodyWriter(), m.regionId, m.firstPage, count);
  for (const h of m.hashes) w.u64(h);
  return encodeFrame(FrameType.PAGE_HASHES, w.finish());
}

export function decodePageHashes(buf: Uint8Array, offset: number, length: number): PageHashes {
  const r = new BodyReader(buf, offset, length, 'PAGE_HASHES');
  const { regionId, firstPage, count } = readRangeHead(r, 'PAGE_HASHES');
  if (count < 1 || count > MAX_HASHES_PER_FRAME) throw malformed(`PAGE_HASHES: ${count} hashes outside [1, ${MAX_HASHES_PER_FRAME}]`);
  const hashes = new BigUint64Array(count);
  for (let i = 0; i < count; i++) hashes[i] = r.u64big('hash');
  r.done();
  return { regionId, firstPage, hashes };
}

export function encodePostcopyDone(m: PostcopyDone): Uint8Array {
  return encodeFrame(FrameType.POSTCOPY_DONE, new BodyWriter().u64(m.digest).u64(m.pagesReceived).u64(m.faults)
    .f64(m.faultP50Us).f64(m.faultP99Us).f64(m.faultMaxUs).f64(m.postcopyMs).finish());
}

export function decodePostcopyDone(buf: Uint8Array, offset: number, length: number): PostcopyDone {
  const r = new BodyReader(buf, offset, length, 'POSTCOPY_DONE');
  const m = {
    digest: r.u64big('digest'), pagesReceived: r.u64('pagesReceived'), faults: r.u64('faults'),
    faultP50Us: r.f64('faultP50Us'), faultP99Us: r.f64('faultP99Us'), faultMaxUs: r.f64('faultMaxUs'), postcopyMs: r.f64('postcopyMs'),
  };
  r.done();
  return m;
}
