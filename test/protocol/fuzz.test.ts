// Seeded fuzzing of the receive path: random bytes and mutated valid streams (bit flips, byte
// insertions and deletions, length overwrites, batch field overwrites with the CRC resealed so they
// reach the body decoders, payload flips the CRC cannot see) go through FrameReader in random chunks,
// then every control frame through its decoder and every PAGE_BATCH through BatchApplier on a small
// two-region guest. Claims checked on every input:
//
//   - every thrown error carries a code starting with MS_ERR_ (nothing raw escapes: no RangeError,
//     no WebAssembly RuntimeError, no lz4 string);
//   - a batch the decoder rejects changes no byte of either region;
//   - a batch that fails on content changes only pages it names *before* the failing page, each to
//     bytes that hash to its entry's hash; a batch that applies changes only the pages it names;
//   - the bytes around RAM in each slab (padding) are never written, and digest() always equals a
//     from-scratch contentDigest() at each checkpoint;
//   - the loop ends (no input makes the reader or applier spin).
//
//   guest:  region 0 "ram"  150 pages × 4 KiB  → slabs of 128 + 22 pages (the second has 40 KiB of tail padding)
//           region 1 "disk"  20 pages × 8 KiB  → one slab (32 KiB of tail padding)

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BatchApplier } from '../../src/pipeline/apply.js';
import type { GuestMemory } from '../../src/memory/guest-memory.js';
import type { Slab } from '../../src/memory/slab.js';
import { FrameType, Limits, PageEncoding, PROTOCOL_VERSION } from '../../src/protocol/constants.js';
import {
  decodeComplete, decodeError, decodeIterationEnd, decodeMissingPages, decodePageRequest, decodePostcopyDone, decodeResumed,
  decodeSwitchover, decodePageHashes,
} from '../../src/protocol/control.js';
import { lz4Encode } from '../../src/protocol/encodings/lz4.js';
import { FRAME_HEADER_BYTES } from '../../src/protocol/frame.js';
import { FrameReader, type Frame } from '../../src/protocol/frame-reader.js';
import { decodeHello, decodeHelloAck, decodePreface, encodePreface } from '../../src/protocol/handshake.js';
import { batchEntry, decodeBatch, encodeBatchFrame, type BatchEntry, type BatchRegion } from '../../src/protocol/page-batch.js';
import {
  ALL_CAPABILITIES, allocateGuest, concat, pageHash, randomBytes, randomChunks, readerBytes, reseal, sampleFrames, xbzrleDelta,
} from '../_support/protocol-helpers.js';
import { seeded, type Rng } from '../_support/seeded.js';

const MAX_BODY = 256 * 1024;
const CANARY = 0xa7;
const REGIONS = [{ id: 0, pageSize: 4096, pageCount: 150 }, { id: 1, pageSize: 8192, pageCount: 20 }] as const;

type Page = BatchEntry & { payload: Uint8Array };

const CONTROL_DECODERS: Record<number, (buf: Uint8Array, offset: number, length: number) => unknown> = {
  [FrameType.HELLO]: decodeHello,
  [FrameType.HELLO_ACK]: decodeHelloAck,
  [FrameType.ITERATION_END]: decodeIterationEnd,
  [FrameType.SWITCHOVER]: decodeSwitchover,
  [FrameType.RESUMED]: decodeResumed,
  [FrameType.COMPLETE]: decodeComplete,
  [FrameType.ERROR]: decodeError,
  [FrameType.PAGE_REQUEST]: decodePageRequest,
  [FrameType.MISSING_PAGES]: decodeMissingPages,
  [FrameType.POSTCOPY_DONE]: decodePostcopyDone,
  [FrameType.PAGE_HASHES]: decodePageHashes,
  [FrameType.DEVICE_STATE]: () => undefined,
};

/** The guest, its applier, and a model of what every region page must hold. */
class Harness {
  readonly mem: GuestMemory;
  readonly applier: BatchApplier;
  readonly model: Buffer[] = [];
  readonly codes = new Map<string, number>();
  applied = 0;
  partial = 0;
  private readonly ringPlain = new Uint8Array(readerBytes(MAX_BODY));
  private readonly ringSlab: Uint8Array;

  constructor(rng: Rng) {
    this.mem = allocateGuest(REGIONS.map((r) => ({ id: r.id, name: r.id === 0 ? 'ram' : 'disk', kind: r.id === 0 ? 'ram' : 'disk', pageSize: r.pageSize, pageCount: r.pageCount })), 512 * 1024, 1 << 20);
    assert.equal(this.mem.slabsOf(0).map((s) => s.pageCount), [128, 22]);
    this.applier = new BatchApplier(this.mem, ALL_CAPABILITIES, 0);
    for (const s of this.mem.allSlabs()) for (const [a, b] of this.padding(s)) new Uint8Array(s.memory.buffer, a, b - a).fill(CANARY);
    const s0 = this.mem.slabsOf(0)[0];
    this.ringSlab = new Uint8Array(s0.memory.buffer, s0.layout.arena, readerBytes(MAX_BODY));
    // Known content everywhere but a few pages, written through the applier so hashes are consistent.
    for (const r of REGIONS) {
      for (let first = 0; first < r.pageCount; first += 16) {
        const pages: Page[] = [];
        for (let p = first; p < Math.min(r.pageCount, first + 16); p++) {
          if (p % 7 === 3) continue;
          const c = randomBytes(rng, r.pageSize);
          pages.push({ page: p, encoding: PageEncoding.RAW, size: r.pageSize, hash: pageHash(c), payload: c });
        }
        const frame = encodeBatchFrame(r.id, 0, pages);
        this.applier.apply(frame, FRAME_HEADER_BYTES, frame.length - FRAME_HEADER_BYTES, 16 + 16 * pages.length);
      }
    }
  }

  /** Byte ranges of a slab that no apply may write: between arena end and RAM, and after RAM. */
  padding(s: Slab): Array<[number, number]> {
    const L = s.layout;
    return [[L.arena + L.arenaBytes, L.ram], [L.ram + L.ramBytes, L.totalBytes]].filter(([a, b]) => b > a) as Array<[number, number]>;
  }

  ring(rng: Rng): Uint8Array {
    return rng.chance(0.5) ? this.ringPlain : this.ringSlab;
  }

  snapshotModel(): void {
    this.model.length = 0;
    for (const r of REGIONS) {
      const out = Buffer.alloc(r.pageSize * r.pageCount);
      for (const s of this.mem.slabsOf(r.id)) out.set(new Uint8Array(s.memory.buffer, s.layout.ram, s.layout.ramBytes), s.firstPage * r.pageSize);
      this.model.push(out);
    }
  }

  /** A live, uncopied Buffer over a region page. */
  page(regionId: number, page: number): Buffer {
    const { slab, local } = this.mem.locate(regionId, page);
    return Buffer.from(slab.memory.buffer as ArrayBuffer, slab.layout.ram + local * slab.layout.pageSize, slab.layout.pageSize);
  }

  modelPage(regionId: number, page: number): Buffer {
    const ps = REGIONS[regionId].pageSize;
    return this.model[regionId].subarray(page * ps, (page + 1) * ps);
  }

  /** Region pages whose bytes differ from the model. */
  changed(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (const r of REGIONS) {
      for (const s of this.mem.slabsOf(r.id)) {
        const live = Buffer.from(s.memory.buffer as ArrayBuffer, s.layout.ram, s.layout.ramBytes);
        const model = this.model[r.id].subarray(s.firstPage * r.pageSize, (s.firstPage + s.pageCount) * r.pageSize);
        if (live.equals(model)) continue;
        const ps = r.pageSize;
        for (let g = 0; g < s.pageCount; g += 16) {
          const end = Math.min(s.pageCount, g + 16);
          if (live.compare(model, g * ps, end * ps, g * ps, end * ps) === 0) continue;
          for (let p = g; p < end; p++) {
            if (live.compare(model, p * ps, (p + 1) * ps, p * ps, (p + 1) * ps) !== 0) out.push([r.id, s.firstPage + p]);
          }
        }
      }
    }
    return out;
  }

  count(code: string): void {
    this.codes.set(code, (this.codes.get(code) ?? 0) + 1);
  }

  checkpoint(what: string): void {
    for (const s of this.mem.allSlabs()) {
      for (const [a, b] of this.padding(s)) {
        assert.ok(new Uint8Array(s.memory.buffer, a, b - a).every((x) => x === CANARY), `${what}: padding of region ${s.regionId} slab ${s.index} written`);
      }
    }
    assert.is(this.mem.digest(), this.mem.contentDigest(), `${what}: recorded digest vs content`);
  }
}

/** Any thrown value must be a memshift error; returns its code. */
function codeOf(err: unknown, what: string): string {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== 'string' || !code.startsWith('MS_ERR_')) {
    assert.unreachable(`${what}: non-memshift error escaped: ${err instanceof Error ? `${err.name}: ${err.message}\n${err.stack}` : String(err)}`);
  }
  return code as string;
}

// ---- base frames -----------------------------------------------------------------------------------

/** Incompressible pages, drawn once per page size (generating noise per page would dominate the run). */
const noise = new Map<number, Uint8Array[]>();

/** New content for a page: a few changed bytes (delta-friendly), a sparse page, or noise. */
function nextContent(rng: Rng, current: Uint8Array): Uint8Array {
  const k = rng.below(4);
  let pool = noise.get(current.length);
  if (pool === undefined) noise.set(current.length, pool = Array.from({ length: 16 }, () => randomBytes(rng, current.length)));
  const out = k === 0 ? pool[rng.below(pool.length)].slice() : k === 1 ? new Uint8Array(current.length) : new Uint8Array(current);
  for (let i = 1 + rng.below(12); i > 0; i--) out[rng.below(out.length)] = rng.u32() & 0xff;
  return out;
}

/** A PAGE_BATCH that is valid against the model (the guest's current content). */
function validBatch(h: Harness, rng: Rng): Uint8Array {
  const r = REGIONS[rng.chance(0.7) ? 0 : 1];
  const count = 1 + rng.below(rng.chance(0.2) ? 30 : 6);
  const pages = new Set<number>();
  while (pages.size < Math.min(count, r.pageCount)) pages.add(rng.below(r.pageCount));
  const entries: Page[] = [...pages].sort((a, b) => a - b).map((page) => {
    const current = h.modelPage(r.id, page);
    const enc = rng.below(4);
    if (enc === PageEncoding.ZERO) return { page, encoding: enc, size: 0, hash: pageHash(new Uint8Array(r.pageSize)), payload: new Uint8Array(0) };
    const next = nextContent(rng, current);
    const hash = pageHash(next);
    if (enc === PageEncoding.XBZRLE) {
      const delta = xbzrleDelta(current, next);
      if (delta !== null) return { page, encoding: enc, size: delta.length, hash, payload: delta };
    } else if (enc === PageEncoding.LZ4) {
      const payload = lz4Encode(next, r.pageSize);
      if (payload !== null) return { page, encoding: enc, size: payload.length, hash, payload };
    }
    return { page, encoding: PageEncoding.RAW, size: r.pageSize, hash, payload: next };
  });
  return encodeBatchFrame(r.id, rng.u32(), entries);
}

const INTERESTING = [0, 1, 15, 16, 17, 31, 32, 33, 48, 4095, 4096, 4097, 65535, 65536, MAX_BODY, MAX_BODY + 1, Limits.MAX_FRAME_BODY_BYTES, 0x7fffffff, 0xffffffff];

function interesting(rng: Rng, near: number): number {
  return rng.chance(0.5) ? INTERESTING[rng.below(INTERESTING.length)] : Math.max(0, near + rng.below(9) - 4) >>> 0;
}

/** Overwrites a field of a batch body (header or entry) and reseals, so the change reaches decodeBatch/apply. */
function mutateBatchField(rng: Rng, frame: Uint8Array): Uint8Array {
  const out = frame.slice();
  if (out.length < FRAME_HEADER_BYTES + 32) return out;
  const dv = new DataView(out.buffer);
  const b = FRAME_HEADER_BYTES;
  const count = Math.min(dv.getUint32(b + 4, true), Math.floor((out.length - b - 16) / 16));
  const e = b + 16 + 16 * rng.below(Math.max(1, count));
  switch (rng.below(9)) {
    case 0: dv.setUint16(b, rng.below(4), true); break; // region
    case 1: dv.setUint16(b + 2, 1 << rng.below(16), true); break; // reserved
    case 2: dv.setUint32(b + 4, interesting(rng, dv.getUint32(b + 4, true)), true); break; // count
    case 3: dv.setUint32(b + 8, interesting(rng, dv.getUint32(b + 8, true)), true); break; // payloadBytes
    case 4: dv.setUint32(e, rng.chance(0.5) ? interesting(rng, dv.getUint32(e, true)) : rng.below(160), true); break; // page
    case 5: dv.setUint8(e + 7, rng.below(6)); break; // encoding
    case 6: dv.setUint32(e + 4, (dv.getUint32(e + 4, true) & 0xff000000) | (interesting(rng, dv.getUint32(e + 4, true) & 0xffffff) & 0xffffff), true); break; // size
    case 7: dv.setBigUint64(e + 8, BigInt(rng.u32()), true); break; // hash
    default: { // size and payloadBytes move together, body length too: only content checks can catch it
      const d = rng.below(9) - 4;
      dv.setUint32(e + 4, (dv.getUint32(e + 4, true) + d) >>> 0, true);
      dv.setUint32(b + 8, (dv.getUint32(b + 8, true) + d) >>> 0, true);
      dv.setUint32(0, (dv.getUint32(0, true) + d) >>> 0, true);
    }
  }
  return reseal(out);
}

function mutate(rng: Rng, frames: Uint8Array[]): Uint8Array {
  const i = rng.below(frames.length);
  let f: Uint8Array = frames[i].slice();
  switch (rng.below(10)) {
    case 0: break; // valid
    case 1: for (let n = 1 + rng.below(4); n > 0; n--) f[rng.below(f.length)] ^= 1 << rng.below(8); break;
    case 2: { // one bit of header or checked region, then resealed: only the decoders can catch it
      const checked = Math.min(new DataView(f.buffer).getUint32(8, true), f.length - 16);
      const at = rng.below(12 + checked);
      f[at < 12 ? at : at + 4] ^= 1 << rng.below(8);
      f = reseal(f);
      break;
    }
    case 3: { // payload bit of a batch (not covered by the CRC)
      const checked = new DataView(f.buffer).getUint32(8, true);
      if (f[4] === FrameType.PAGE_BATCH && f.length > 16 + checked) f[16 + checked + rng.below(f.length - 16 - checked)] ^= 1 << rng.below(8);
      break;
    }
    case 4: { const at = rng.below(f.length + 1); f = concat([f.subarray(0, at), randomBytes(rng, 1 + rng.below(8)), f.subarray(at)]); break; }
    case 5: { const at = rng.below(f.length); f = concat([f.subarray(0, at), f.subarray(Math.min(f.length, at + 1 + rng.below(8)))]); break; }
    case 6: { // length field overwrite, sometimes resealed
      const dv = new DataView(f.buffer, f.byteOffset);
      dv.setUint32(rng.chance(0.5) ? 0 : 8, interesting(rng, dv.getUint32(0, true)), true);
      if (rng.chance(0.5)) f = reseal(f);
      break;
    }
    case 7: case 8: f = f[4] === FrameType.PAGE_BATCH ? mutateBatchField(rng, f) : reseal(f.map((x) => (rng.chance(0.05) ? rng.u32() & 0xff : x))); break;
    default: f = f.subarray(0, rng.below(f.length)); break; // truncated (then the next frame's bytes follow)
  }
  const out = frames.slice();
  out[i] = f;
  return concat(out);
}

/** One input stream: garbage, or 1..4 frames (mostly batches) with one of them mutated. */
function input(h: Harness, rng: Rng): Uint8Array {
  if (rng.chance(0.08)) {
    const g = randomBytes(rng, rng.below(200));
    if (g.length >= 16 && rng.chance(0.5)) g[4] = 1 + rng.below(12); // a known type, so the length checks run
    return g;
  }
  const frames: Uint8Array[] = [];
  const samples = rng.chance(0.3) ? sampleFrames(rng) : [];
  for (let n = 1 + rng.below(4); n > 0; n--) {
    frames.push(samples.length > 0 && rng.chance(0.4) ? samples[rng.below(samples.length)].bytes : validBatch(h, rng));
  }
  return mutate(rng, frames);
}

// ---- one frame --------------------------------------------------------------------------------------

function regionOf(id: number): BatchRegion | undefined {
  const r = REGIONS.find((x) => x.id === id);
  return r === undefined ? undefined : { pageSize: r.pageSize, pageCount: r.pageCount };
}

function handleBatch(h: Harness, f: Frame, what: string): void {
  let named: Array<BatchEntry> = [];
  let regionId = -1;
  let decodeCode: string | undefined;
  try {
    const view = decodeBatch(f.buf, f.bodyOffset, f.bodyLength, f.checkedLength, regionOf, ALL_CAPABILITIES);
    regionId = view.regionId;
    named = Array.from({ length: view.count }, (_, i) => batchEntry(view, i));
  } catch (err) {
    decodeCode = codeOf(err, `${what}: decodeBatch`);
  }
  let applyCode: string | undefined;
  let failedPage: number | undefined;
  try {
    h.applier.apply(f.buf, f.bodyOffset, f.bodyLength, f.checkedLength);
  } catch (err) {
    applyCode = codeOf(err, `${what}: apply`);
    failedPage = (err as { details?: { page?: number } }).details?.page;
  }
  h.count(applyCode ?? 'applied');
  const changed = h.changed();
  if (decodeCode !== undefined) {
    assert.is(applyCode, decodeCode, `${what}: apply and decodeBatch disagree`);
    assert.equal(changed, [], `${what}: a batch the decoder rejects (${decodeCode}) changed pages`);
    return;
  }
  const byPage = new Map(named.map((e) => [e.page, e]));
  // MS_ERR_LZ4_MALFORMED does not name its page (see apply.test.ts), so only the hash rule applies to it.
  const limit = applyCode === undefined || (failedPage === undefined && applyCode === 'MS_ERR_LZ4_MALFORMED') ? Infinity : failedPage ?? -1;
  if (applyCode === undefined) h.applied++;
  else if (changed.length > 0) h.partial++;
  for (const [r, p] of changed) {
    const e = byPage.get(p);
    assert.ok(r === regionId && e !== undefined, `${what}: page ${p} of region ${r} changed but the batch (region ${regionId}) does not name it`);
    assert.ok(p < limit, `${what}: page ${p} changed although the batch failed at page ${failedPage} (${applyCode})`);
    assert.is(pageHash(h.page(r, p)), e.hash, `${what}: page ${p} holds bytes that do not match its entry hash`);
    h.modelPage(r, p).set(h.page(r, p));
  }
}

function handleFrame(h: Harness, f: Frame, what: string): void {
  if (f.type === FrameType.PAGE_BATCH) {
    handleBatch(h, f, what);
    return;
  }
  try {
    CONTROL_DECODERS[f.type](f.buf, f.bodyOffset, f.bodyLength);
    h.count(`control ok`);
  } catch (err) {
    h.count(codeOf(err, `${what}: ${f.type} decoder`));
  }
}

function feed(h: Harness, rng: Rng, stream: Uint8Array, what: string): void {
  const reader = new FrameReader(h.ring(rng), MAX_BODY);
  const drain = (): void => {
    for (let f = reader.next(); f !== null; f = reader.next()) handleFrame(h, f, `${what} frame ${reader.frames}`);
  };
  try {
    const sizes = rng.chance(0.2) ? [stream.length] : randomChunks(rng, stream.length, 12);
    let at = 0;
    for (const n of sizes) {
      const chunk = stream.subarray(at, at + n);
      at += n;
      if (rng.chance(0.5)) {
        reader.push(chunk, drain);
      } else {
        const free = reader.writable();
        free.set(chunk.subarray(0, Math.min(free.length, chunk.length)));
        reader.commit(Math.min(free.length, chunk.length));
        drain();
        if (chunk.length > free.length) reader.push(chunk.subarray(free.length), drain);
      }
    }
  } catch (err) {
    if ((err as Error)?.name === 'Assertion') throw err; // a failed claim from handleFrame, not a reader error
    h.count(codeOf(err, `${what}: reader`));
  }
}

function run(seed: number, iterations: number): Harness {
  const rng = seeded(seed);
  const h = new Harness(rng);
  h.snapshotModel();
  h.checkpoint(`seed ${seed} start`);
  for (let i = 0; i < iterations; i++) {
    feed(h, rng, input(h, rng), `seed ${seed} input ${i}`);
    if (i % 1000 === 999) h.checkpoint(`seed ${seed} after ${i + 1} inputs`);
  }
  h.checkpoint(`seed ${seed} end`);
  return h;
}

// ---- the suites ----------------------------------------------------------------------------------------

test('the harness starts with known content in every region and consistent digests', () => {
  const h = new Harness(seeded(1));
  h.snapshotModel();
  assert.equal(h.changed(), []);
  assert.is.not(h.mem.digest(), 0n);
  // RAM is fenced by canary-filled padding after the 22-page slab (40 KiB) and the disk slab (32 KiB).
  const tails = h.mem.allSlabs().map((s) => s.layout.totalBytes - (s.layout.ram + s.layout.ramBytes));
  assert.equal(tails, [0, 40 * 1024, 32 * 1024]);
  h.checkpoint('fresh harness');
});

for (const seed of [101, 202, 303]) {
  test(`seed ${seed}: 7000 hostile inputs never escape as non-memshift errors and never write outside the pages an entry names`, () => {
    const h = run(seed, 7000);
    const c = (code: string): number => h.codes.get(code) ?? 0;
    const summary = JSON.stringify(Object.fromEntries([...h.codes].sort()));
    if (process.env.FUZZ_STATS) console.log(seed, h.applied, h.partial, summary);
    // The fuzz reached every layer: valid batches applied, content errors caught after the CRC.
    assert.ok(h.applied > 500, `applied ${h.applied}: ${summary}`);
    for (const code of ['MS_ERR_FRAME_CHECKSUM', 'MS_ERR_FRAME_TYPE_UNKNOWN', 'MS_ERR_FRAME_TOO_LARGE', 'MS_ERR_FRAME_MALFORMED',
      'MS_ERR_PAGE_HASH_MISMATCH', 'MS_ERR_BATCH_ENCODING', 'MS_ERR_BATCH_PAGE_RANGE', 'MS_ERR_BATCH_REGION_UNKNOWN']) {
      assert.ok(c(code) > 0, `${code} never seen: ${summary}`);
    }
    assert.ok(c('MS_ERR_DELTA_MALFORMED') + c('MS_ERR_LZ4_MALFORMED') > 0, `no delta or lz4 errors: ${summary}`);
  });
}

test('random bytes as a preface are null, a version, or a memshift error', () => {
  const rng = seeded(404);
  const codes = new Set<string>();
  const valid = encodePreface();
  for (let i = 0; i < 5000; i++) {
    const buf = rng.chance(0.5) ? randomBytes(rng, rng.below(20)) : valid.map((x) => (rng.chance(0.1) ? rng.u32() & 0xff : x));
    const end = rng.below(buf.length + 1);
    try {
      const v = decodePreface(buf, 0, end);
      assert.ok(v === null || v === PROTOCOL_VERSION, `input ${i}: ${v}`);
    } catch (err) {
      codes.add(codeOf(err, `preface ${i}`));
    }
  }
  assert.equal([...codes].sort(), ['MS_ERR_FRAME_MALFORMED', 'MS_ERR_HANDSHAKE_MAGIC', 'MS_ERR_HANDSHAKE_VERSION']);
});

test.run();
