// Helpers for the protocol suites (test/protocol): hex fixtures, a bit-at-a-time CRC-32C oracle, page
// hashes and XBZRLE deltas from the kernels, one valid frame of every type from a seed, a FrameReader
// driven by random chunk splits, and small guests for BatchApplier. Not a suite: uvu runs only files
// matching `\.test\.js$`.
//
// Fixture format (test/_support/fixtures/*.hex), read from the source tree so that dist/ needs no copy:
//   `#` starts a comment; whitespace separates tokens; a token is an even number of hex digits, or
//   `hh*N` for N copies of byte hh (a raw page is mostly zeros and must stay readable).

import { readFileSync } from 'node:fs';
import * as assert from 'uvu/assert';
import { GuestMemory, type RegionSpec } from '../../src/memory/guest-memory.js';
import { Capability, ChannelRole, DISK_REGION_BASE, FrameType, Limits, MIGRATION_MODES, PageEncoding } from '../../src/protocol/constants.js';
import {
  encodeComplete, encodeDeviceState, encodeError, encodeIterationEnd, encodeMissingPages, encodePageRequest,
  encodePostcopyDone, encodeResumed, encodeSwitchover, MAX_PAGES_PER_REQUEST, type PostcopyDone,
} from '../../src/protocol/control.js';
import { crc32c } from '../../src/protocol/crc32c.js';
import { FRAME_HEADER_BYTES } from '../../src/protocol/frame.js';
import { FrameReader, receiveBufferBytes } from '../../src/protocol/frame-reader.js';
import { encodeHello, encodeHelloAck, type Hello } from '../../src/protocol/handshake.js';
import { encodeBatchFrame, type BatchEntry } from '../../src/protocol/page-batch.js';
import { Kernels } from '../../src/wasm/kernels.js';
import type { Rng } from './seeded.js';

export { expectCode } from './guest-helpers.js';

// ---- fixtures -----------------------------------------------------------------------------------

const FIXTURES = new URL('../../../test/_support/fixtures/', import.meta.url);

export function parseHex(text: string): Uint8Array {
  const out: number[] = [];
  for (const line of text.split('\n')) {
    for (const token of line.replace(/#.*/, '').split(/\s+/).filter((t) => t.length > 0)) {
      const rep = /^([0-9a-fA-F]{2})\*(\d+)$/.exec(token);
      if (rep !== null) {
        for (let i = 0; i < Number(rep[2]); i++) out.push(parseInt(rep[1], 16));
      } else if (/^([0-9a-fA-F]{2})+$/.test(token)) {
        for (let i = 0; i < token.length; i += 2) out.push(parseInt(token.slice(i, i + 2), 16));
      } else {
        throw new Error(`bad fixture token ${JSON.stringify(token)}`);
      }
    }
  }
  return new Uint8Array(out);
}

export function readFixture(name: string): Uint8Array {
  return parseHex(readFileSync(new URL(name, FIXTURES), 'utf8'));
}

/** Asserts byte equality, naming the first differing offset (a hex dump of 32 MiB helps nobody). */
export function assertBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  const n = Math.min(actual.length, expected.length);
  let at = -1;
  if (!Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength))) {
    at = n;
    for (let i = 0; i < n; i++) if (actual[i] !== expected[i]) { at = i; break; }
  }
  assert.is(at, -1, `${what}: first difference at byte ${at} (lengths ${actual.length} / ${expected.length})`);
}

// ---- CRC oracle ---------------------------------------------------------------------------------

/** CRC-32C one bit at a time, from the definition (reflected, polynomial 0x82F63B78, init and xorout ~0). */
export function refCrc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

// ---- frames as bytes ----------------------------------------------------------------------------

export interface RawHeader { bodyLength: number; type: number; flags: number; reserved: number; checkedLength: number; crc: number }

export function headerOf(frame: Uint8Array): RawHeader {
  const dv = new DataView(frame.buffer, frame.byteOffset, FRAME_HEADER_BYTES);
  return {
    bodyLength: dv.getUint32(0, true), type: dv.getUint8(4), flags: dv.getUint8(5), reserved: dv.getUint16(6, true),
    checkedLength: dv.getUint32(8, true), crc: dv.getUint32(12, true),
  };
}

export function bodyOf(frame: Uint8Array): Uint8Array {
  return frame.subarray(FRAME_HEADER_BYTES);
}

/**
 * Recomputes the CRC of a (possibly mutated) frame in place from its own header, so a mutation reaches
 * the body decoders instead of dying at the checksum. The checked length is clamped to the bytes present.
 */
export function reseal(frame: Uint8Array): Uint8Array {
  if (frame.length < FRAME_HEADER_BYTES) return frame;
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const checked = Math.min(dv.getUint32(8, true), frame.length - FRAME_HEADER_BYTES);
  dv.setUint32(12, crc32c(frame, FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + checked, crc32c(frame, 0, 12)), true);
  return frame;
}

export function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = bytes.slice();
  out[bit >>> 3] ^= 1 << (bit & 7);
  return out;
}

// ---- kernels outside a guest --------------------------------------------------------------------

const K_BASE = 65536;
const K_PAGE = 65536;
let scratchKernels: { k: Kernels; u8: Uint8Array } | undefined;

/** A private shared memory: [reserved 64K][prev 64K][cur 64K][out 64K]. */
function kernels(): { k: Kernels; u8: Uint8Array } {
  if (scratchKernels === undefined) {
    const memory = new WebAssembly.Memory({ initial: 4, maximum: 4, shared: true });
    scratchKernels = { k: new Kernels(memory), u8: new Uint8Array(memory.buffer) };
  }
  return scratchKernels;
}

/** mxh64 of one page, by the kernel (the hash a PAGE_BATCH entry carries). */
export function pageHash(page: Uint8Array): bigint {
  const { k, u8 } = kernels();
  u8.set(page, K_BASE);
  return k.hashPage(K_BASE, page.length);
}

/** The kernel's XBZRLE delta turning `prev` into `cur`, or null when it exceeds `limit` bytes. */
export function xbzrleDelta(prev: Uint8Array, cur: Uint8Array, limit = cur.length): Uint8Array | null {
  const { k, u8 } = kernels();
  u8.set(prev, K_BASE);
  u8.set(cur, K_BASE + K_PAGE);
  const n = k.xorDeltaEncode(K_BASE, K_BASE + K_PAGE, cur.length, K_BASE + 2 * K_PAGE, Math.min(limit, K_PAGE));
  return n < 0 ? null : u8.slice(K_BASE + 2 * K_PAGE, K_BASE + 2 * K_PAGE + n);
}

// ---- random values ------------------------------------------------------------------------------

export function randomBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  const words = new Uint32Array(out.buffer, 0, n >>> 2);
  for (let i = 0; i < words.length; i++) words[i] = rng.u32();
  for (let i = words.length * 4; i < n; i++) out[i] = rng.u32() & 0xff;
  return out;
}

/** An integer in [0, 2^53) with a random bit length, so small and huge values both occur. */
export function randomSafe(rng: Rng): number {
  const bits = rng.below(54);
  const v = rng.u32() * 2 ** 21 + (rng.u32() & 0x1fffff);
  return Math.floor(v / 2 ** (53 - bits));
}

export function randomU64(rng: Rng): bigint {
  return (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
}

/** A finite double from random bits (NaN and infinities replaced). */
export function randomF64(rng: Rng): number {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setUint32(0, rng.u32());
  dv.setUint32(4, rng.u32());
  const v = dv.getFloat64(0);
  return Number.isFinite(v) ? v : rng.u32() / 7;
}

/** A region name of `bytes` UTF-8 bytes at most, mixing ASCII and two-byte characters. */
export function randomName(rng: Rng, bytes: number): string {
  let s = '';
  let n = 0;
  for (;;) {
    const wide = rng.chance(0.2);
    if (n + (wide ? 2 : 1) > bytes) return s;
    s += wide ? String.fromCharCode(0xc0 + rng.below(0x100)) : String.fromCharCode(0x21 + rng.below(0x5e));
    n += wide ? 2 : 1;
  }
}

export function randomPostcopyDone(rng: Rng): PostcopyDone {
  return {
    digest: randomU64(rng), pagesReceived: randomSafe(rng), faults: randomSafe(rng),
    faultP50Us: randomF64(rng), faultP99Us: randomF64(rng), faultMaxUs: randomF64(rng), postcopyMs: randomF64(rng),
  };
}

export function randomHello(rng: Rng, regionCount = 1 + rng.below(Limits.MAX_REGIONS)): Hello {
  const ids = new Set<number>();
  // Ids from DISK_REGION_BASE name disks, never a HELLO's regions.
  while (ids.size < regionCount) ids.add(rng.below(DISK_REGION_BASE));
  return {
    session: randomBytes(rng, Limits.SESSION_ID_BYTES),
    role: rng.chance(0.5) ? ChannelRole.BULK : ChannelRole.URGENT,
    mode: MIGRATION_MODES[rng.below(MIGRATION_MODES.length)],
    capabilities: rng.u32(),
    regions: [...ids].map((id) => ({
      id, name: randomName(rng, rng.below(Limits.MAX_REGION_NAME_BYTES + 1)), kind: rng.chance(0.5) ? 'ram' as const : 'disk' as const,
      pageSize: 2 ** (12 + rng.below(5)), pageCount: 1 + rng.below(0xffffffff),
    })),
  };
}

/** Entries with strictly increasing pages below `pageCount`, random encodings and sizes valid for `pageSize`. */
export function randomEntries(rng: Rng, count: number, pageCount: number, pageSize: number): Array<BatchEntry & { payload: Uint8Array }> {
  const pages = new Set<number>();
  while (pages.size < count) pages.add(rng.below(pageCount));
  return [...pages].sort((a, b) => a - b).map((page) => {
    const encoding = rng.below(4);
    const size = encoding === PageEncoding.ZERO ? 0 : encoding === PageEncoding.RAW ? pageSize
      : encoding === PageEncoding.XBZRLE ? rng.below(pageSize + 1) : 5 + rng.below(pageSize - 4);
    return { page, encoding, size, hash: randomU64(rng), payload: randomBytes(rng, size) };
  });
}

/** A PAGE_BATCH of `pages` raw pages (random content, random hashes): bulk for FrameReader tests. */
export function bigRawBatch(rng: Rng, firstPage: number, pages: number, pageSize = 4096): Uint8Array {
  const content = randomBytes(rng, pages * pageSize);
  return encodeBatchFrame(0, rng.u32(), Array.from({ length: pages }, (_, i) => ({
    page: firstPage + i, encoding: PageEncoding.RAW, size: pageSize, hash: randomU64(rng),
    payload: content.subarray(i * pageSize, (i + 1) * pageSize),
  })));
}

export const ALL_CAPABILITIES = Capability.XBZRLE | Capability.LZ4 | Capability.POSTCOPY;

export interface SampleFrame { name: string; type: number; bytes: Uint8Array }

/** One valid frame of every type, with random field values. */
export function sampleFrames(rng: Rng): SampleFrame[] {
  const words = 1 + rng.below(4);
  const f = (name: keyof typeof FrameType, bytes: Uint8Array): SampleFrame => ({ name, type: FrameType[name], bytes });
  return [
    f('HELLO', encodeHello(randomHello(rng, 1 + rng.below(3)))),
    f('HELLO_ACK', encodeHelloAck({ session: randomBytes(rng, 16), capabilities: rng.u32(), urgentPort: rng.below(0x10000) })),
    f('PAGE_BATCH', encodeBatchFrame(rng.below(4), rng.u32(), randomEntries(rng, 1 + rng.below(3), 64, 4096))),
    f('ITERATION_END', encodeIterationEnd({ iteration: rng.u32(), pages: randomSafe(rng), bytes: randomSafe(rng) })),
    f('DEVICE_STATE', encodeDeviceState(randomBytes(rng, 1 + rng.below(200)))),
    f('SWITCHOVER', encodeSwitchover({ mode: rng.below(2), iterations: rng.u32(), digest: randomU64(rng), guestSteps: randomSafe(rng), pagesSent: randomSafe(rng), missingPages: randomSafe(rng) })),
    f('RESUMED', encodeResumed({ digest: randomU64(rng), pagesReceived: randomSafe(rng), applyMs: randomF64(rng), stateMs: randomF64(rng), digestMs: randomF64(rng), resumeMs: randomF64(rng) })),
    f('COMPLETE', encodeComplete()),
    f('ERROR', encodeError({ code: 'MS_ERR_PAGE_HASH_MISMATCH', message: `page ${rng.u32()} does not match` })),
    f('PAGE_REQUEST', encodePageRequest({ regionId: rng.below(0x10000), page: rng.u32(), count: 1 + rng.below(MAX_PAGES_PER_REQUEST), requestId: rng.u32() })),
    f('MISSING_PAGES', encodeMissingPages({ regionId: rng.below(0x10000), firstPage: 64 * rng.below(1000), pageCount: words * 64 - rng.below(64), bitmap: randomBytes(rng, words * 8) })),
    f('POSTCOPY_DONE', encodePostcopyDone(randomPostcopyDone(rng))),
  ];
}

// ---- FrameReader drivers ------------------------------------------------------------------------

/** Receive-buffer bytes FrameReader needs for `maxBody` (its constructor's rule). */
export const readerBytes = receiveBufferBytes;

/** A frame copied out of the reader's buffer (which the next write may overwrite). */
export interface ReadFrame { type: number; bodyLength: number; checkedLength: number; bytes: Uint8Array }

export function copyFrame(f: { type: number; bodyLength: number; checkedLength: number; buf: Uint8Array; offset: number }): ReadFrame {
  return { type: f.type, bodyLength: f.bodyLength, checkedLength: f.checkedLength, bytes: f.buf.slice(f.offset, f.offset + FRAME_HEADER_BYTES + f.bodyLength) };
}

/** Chunk sizes 1 .. 2^maxLog2, log-uniform, so single bytes and whole MiB both occur. */
export function randomChunks(rng: Rng, total: number, maxLog2 = 20): number[] {
  const sizes: number[] = [];
  for (let left = total; left > 0;) {
    const n = Math.min(left, Math.max(1, Math.floor(2 ** ((rng.u32() / 2 ** 32) * (maxLog2 + 1)))));
    sizes.push(n);
    left -= n;
  }
  return sizes;
}

/**
 * Feeds `stream` to `reader` in chunks of `sizes` and returns every frame, copied as it comes out.
 * 'push' uses FrameReader.push; 'socket' copies each chunk into writable() and commits, as a socket
 * read would (a chunk larger than the free space is read in several pieces).
 */
export function readStream(reader: FrameReader, stream: Uint8Array, sizes: readonly number[], api: 'push' | 'socket'): ReadFrame[] {
  const out: ReadFrame[] = [];
  const drain = (): void => {
    for (let f = reader.next(); f !== null; f = reader.next()) out.push(copyFrame(f));
  };
  let at = 0;
  for (const size of sizes) {
    const chunk = stream.subarray(at, at + size);
    at += size;
    if (api === 'push') {
      reader.push(chunk, drain);
    } else {
      for (let c = 0; c < chunk.length;) {
        const free = reader.writable();
        const n = Math.min(free.length, chunk.length - c);
        free.set(chunk.subarray(c, c + n));
        reader.commit(n);
        c += n;
        drain();
      }
    }
  }
  return out;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---- guests for BatchApplier --------------------------------------------------------------------

export function ramSpec(pageCount: number, id = 0, pageSize = 4096): RegionSpec {
  return { id, name: id === 0 ? 'ram' : `r${id}`, kind: 'ram', pageSize, pageCount };
}

export function allocateGuest(specs: readonly RegionSpec[], maxSlabBytes = 1 << 20, arenaBytes = 2 << 20): GuestMemory {
  return GuestMemory.allocate(specs, { maxSlabBytes, arenaBytes });
}

/** A copy of every RAM byte of a region, in page order. */
export function regionSnapshot(mem: GuestMemory, regionId: number): Buffer {
  const r = mem.region(regionId);
  const out = Buffer.alloc(r.pageSize * r.pageCount);
  for (const s of mem.slabsOf(regionId)) out.set(new Uint8Array(s.memory.buffer, s.layout.ram, s.layout.ramBytes), s.firstPage * r.pageSize);
  return out;
}

/** Region pages whose bytes differ from `before` (a regionSnapshot). */
export function changedPages(mem: GuestMemory, regionId: number, before: Buffer): number[] {
  const r = mem.region(regionId);
  const now = regionSnapshot(mem, regionId);
  const out: number[] = [];
  if (now.equals(before)) return out;
  for (let p = 0; p < r.pageCount; p++) {
    const o = p * r.pageSize;
    if (now.compare(before, o, o + r.pageSize, o, o + r.pageSize) !== 0) out.push(p);
  }
  return out;
}
