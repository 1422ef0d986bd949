// Control messages (src/protocol/control.ts): hex fixtures for ITERATION_END, SWITCHOVER, RESUMED,
// ERROR, PAGE_REQUEST and MISSING_PAGES; random round trips of every encode/decode pair; every
// truncation of every body is MS_ERR_FRAME_MALFORMED; and each field rule at its limit.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FrameType, Limits, SwitchoverMode } from '../../src/protocol/constants.js';
import {
  decodeComplete, decodeError, decodeIterationEnd, decodeMissingPages, decodePageRequest, decodePostcopyDone, decodeResumed,
  decodeSwitchover, encodeComplete, encodeDeviceState, encodeError, encodeIterationEnd, encodeMissingPages, encodePageRequest,
  encodePostcopyDone, encodeResumed, encodeSwitchover, MAX_PAGES_PER_REQUEST, peerError, decodePageHashes, encodePageHashes, MAX_HASHES_PER_FRAME,
} from '../../src/protocol/control.js';
import { maxBodyBytes, readFrameHeader, verifyFrame } from '../../src/protocol/frame.js';
import {
  assertBytes, bodyOf, expectCode, randomBytes, randomF64, randomPostcopyDone, randomSafe, randomU64, readFixture,
} from '../_support/protocol-helpers.js';
import { seeded, type Rng } from '../_support/seeded.js';

type Decoder<T> = (buf: Uint8Array, offset: number, length: number) => T;

function checkedBody(frame: Uint8Array, type: number): Uint8Array {
  const h = readFrameHeader(frame, 0, frame.length);
  assert.ok(h !== null);
  assert.is(h.type, type);
  assert.is(h.bodyLength, frame.length - 16);
  verifyFrame(frame, 0, h);
  return bodyOf(frame);
}

function decodeFrame<T>(frame: Uint8Array, type: number, decode: Decoder<T>): T {
  const body = checkedBody(frame, type);
  return decode(body, 0, body.length);
}

/** Body bytes with little-endian fields, for hand-made hostile bodies. */
function le(...fields: Array<[number, number | bigint]>): Uint8Array {
  const size = fields.reduce((n, [w]) => n + w, 0);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  let at = 0;
  for (const [w, v] of fields) {
    if (w === 1) dv.setUint8(at, Number(v));
    else if (w === 2) dv.setUint16(at, Number(v), true);
    else if (w === 4) dv.setUint32(at, Number(v), true);
    else dv.setBigUint64(at, BigInt(v), true);
    at += w;
  }
  return out;
}

// ---- fixtures ------------------------------------------------------------------------------------

test('ITERATION_END matches its fixture both ways', () => {
  const m = { iteration: 3, pages: 1000, bytes: 4096000 };
  const fixture = readFixture('iteration-end.hex');
  assertBytes(encodeIterationEnd(m), fixture, 'encode');
  assert.equal(decodeFrame(fixture, FrameType.ITERATION_END, decodeIterationEnd), m);
});

test('SWITCHOVER matches its fixture both ways', () => {
  const m = { mode: SwitchoverMode.POSTCOPY, iterations: 5, digest: 0x0123456789abcdefn, guestSteps: 123456, pagesSent: 2048, missingPages: 17 };
  const fixture = readFixture('switchover.hex');
  assertBytes(encodeSwitchover(m), fixture, 'encode');
  assert.equal(decodeFrame(fixture, FrameType.SWITCHOVER, decodeSwitchover), m);
});

test('RESUMED matches its fixture both ways', () => {
  const m = { digest: 0xfedcba9876543210n, pagesReceived: 2048, applyMs: 1.5, stateMs: 0.25, digestMs: 3, resumeMs: 0.125 };
  const fixture = readFixture('resumed.hex');
  assertBytes(encodeResumed(m), fixture, 'encode');
  assert.equal(decodeFrame(fixture, FrameType.RESUMED, decodeResumed), m);
});

test('ERROR matches its fixture both ways, with a UTF-8 message', () => {
  const m = { code: 'MS_ERR_DIGEST_MISMATCH', message: 'dst ≠ src' };
  const fixture = readFixture('error.hex');
  assertBytes(encodeError(m), fixture, 'encode');
  assert.equal(decodeFrame(fixture, FrameType.ERROR, decodeError), m);
});

test('PAGE_REQUEST matches its fixture both ways', () => {
  const m = { regionId: 2, page: 0x1234, count: 8, requestId: 7 };
  const fixture = readFixture('page-request.hex');
  assertBytes(encodePageRequest(m), fixture, 'encode');
  assert.equal(decodeFrame(fixture, FrameType.PAGE_REQUEST, decodePageRequest), m);
});

test('MISSING_PAGES matches its fixture both ways', () => {
  const bitmap = new Uint8Array(16);
  bitmap[0] = 0x03;
  bitmap[7] = 0x80;
  bitmap[8] = 0x20;
  const m = { regionId: 1, firstPage: 64, pageCount: 70, bitmap };
  const fixture = readFixture('missing-pages.hex');
  assertBytes(encodeMissingPages(m), fixture, 'encode');
  const got = decodeFrame(fixture, FrameType.MISSING_PAGES, decodeMissingPages);
  assert.equal({ ...got, bitmap: [...got.bitmap] }, { ...m, bitmap: [...bitmap] });
});

// ---- round trips -------------------------------------------------------------------------------------

interface Case<T> { name: string; type: number; make: (rng: Rng) => T; encode: (m: T) => Uint8Array; decode: Decoder<T>; norm?: (m: T) => unknown }

const CASES: Array<Case<any>> = [
  { name: 'ITERATION_END', type: FrameType.ITERATION_END, make: (r) => ({ iteration: r.u32(), pages: randomSafe(r), bytes: randomSafe(r) }), encode: encodeIterationEnd, decode: decodeIterationEnd },
  {
    name: 'SWITCHOVER', type: FrameType.SWITCHOVER, encode: encodeSwitchover, decode: decodeSwitchover,
    make: (r) => ({ mode: r.below(2), iterations: r.u32(), digest: randomU64(r), guestSteps: randomSafe(r), pagesSent: randomSafe(r), missingPages: randomSafe(r) }),
  },
  {
    name: 'RESUMED', type: FrameType.RESUMED, encode: encodeResumed, decode: decodeResumed,
    make: (r) => ({ digest: randomU64(r), pagesReceived: randomSafe(r), applyMs: randomF64(r), stateMs: randomF64(r), digestMs: randomF64(r), resumeMs: randomF64(r) }),
  },
  {
    name: 'ERROR', type: FrameType.ERROR, encode: encodeError, decode: decodeError,
    make: (r) => ({ code: `MS_ERR_${'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_'.split('').filter(() => r.chance(0.5)).join('')}X`, message: Buffer.from(randomBytes(r, r.below(300))).toString('base64') + 'ü€𝄞' }),
  },
  { name: 'PAGE_REQUEST', type: FrameType.PAGE_REQUEST, make: (r) => ({ regionId: r.below(0x10000), page: r.u32(), count: 1 + r.below(MAX_PAGES_PER_REQUEST), requestId: r.u32() }), encode: encodePageRequest, decode: decodePageRequest },
  {
    name: 'MISSING_PAGES', type: FrameType.MISSING_PAGES, encode: encodeMissingPages, decode: decodeMissingPages,
    make: (r) => { const pageCount = 1 + r.below(5000); return { regionId: r.below(0x10000), firstPage: 64 * r.below(2 ** 26), pageCount, bitmap: randomBytes(r, Math.ceil(pageCount / 64) * 8) }; },
    norm: (m) => ({ ...m, bitmap: [...m.bitmap] }),
  },
  { name: 'POSTCOPY_DONE', type: FrameType.POSTCOPY_DONE, make: randomPostcopyDone, encode: encodePostcopyDone, decode: decodePostcopyDone },
  {
    name: 'PAGE_HASHES', type: FrameType.PAGE_HASHES, encode: encodePageHashes, decode: decodePageHashes,
    make: (r) => ({ regionId: r.below(0x10000), firstPage: r.u32(), hashes: BigUint64Array.from({ length: 1 + r.below(MAX_HASHES_PER_FRAME) }, () => randomU64(r)) }),
    norm: (m) => ({ ...m, hashes: [...m.hashes] }),
  },
];

test('PAGE_HASHES: a count of 0 or past one control frame, a non-zero reserved field, or a body shorter than its count is refused', () => {
  const one = encodePageHashes({ regionId: 1, firstPage: 64, hashes: BigUint64Array.of(5n) });
  const body = one.slice(16);
  assert.is(MAX_HASHES_PER_FRAME * 8 + 16 <= 64 * 1024, true, 'a full frame fits a control body');
  const withCount = (n: number): Uint8Array => { const b = body.slice(); new DataView(b.buffer).setUint32(8, n, true); return b; };
  expectCode(() => decodePageHashes(withCount(0), 0, body.length), 'MS_ERR_FRAME_MALFORMED', 'count 0');
  expectCode(() => decodePageHashes(withCount(MAX_HASHES_PER_FRAME + 1), 0, body.length), 'MS_ERR_FRAME_MALFORMED', 'count past a frame');
  expectCode(() => decodePageHashes(withCount(2), 0, body.length), 'MS_ERR_FRAME_MALFORMED', 'body shorter than its count');
  const reserved = body.slice();
  reserved[2] = 1;
  expectCode(() => decodePageHashes(reserved, 0, body.length), 'MS_ERR_FRAME_MALFORMED', 'reserved');
  expectCode(() => encodePageHashes({ regionId: 0, firstPage: 0, hashes: new BigUint64Array(0) }), 'MS_ERR_FRAME_MALFORMED', 'encode 0');
});

test('every control message round-trips random values through a sealed frame', () => {
  const rng = seeded(31);
  for (const c of CASES) {
    const norm = c.norm ?? ((m: unknown) => m);
    for (let i = 0; i < 300; i++) {
      const m = c.make(rng);
      assert.equal(norm(decodeFrame(c.encode(m), c.type, c.decode)), norm(m), `${c.name} case ${i}`);
    }
  }
});

test('RESUMED keeps -0, subnormals and the largest finite double exactly', () => {
  const m = { digest: 0n, pagesReceived: 0, applyMs: -0, stateMs: 5e-324, digestMs: Number.MAX_VALUE, resumeMs: -Number.MAX_VALUE };
  const got = decodeFrame(encodeResumed(m), FrameType.RESUMED, decodeResumed);
  assert.ok(Object.is(got.applyMs, -0));
  assert.equal([got.stateMs, got.digestMs, got.resumeMs], [5e-324, Number.MAX_VALUE, -Number.MAX_VALUE]);
});

test('u64 counters round-trip at 2^53-1 and a counter of 2^53 is MS_ERR_FRAME_MALFORMED', () => {
  const max = Number.MAX_SAFE_INTEGER;
  assert.equal(decodeFrame(encodeIterationEnd({ iteration: 0xffffffff, pages: max, bytes: max }), FrameType.ITERATION_END, decodeIterationEnd), { iteration: 0xffffffff, pages: max, bytes: max });
  const body = le([4, 1], [4, 0], [8, 2n ** 53n], [8, 0]);
  expectCode(() => decodeIterationEnd(body, 0, body.length), 'MS_ERR_FRAME_MALFORMED', 'pages 2^53');
  const pd = le([8, 0], [8, 0], [8, 2n ** 64n - 1n], [8, 0], [8, 0], [8, 0], [8, 0]);
  assert.is(pd.length, bodyOf(encodePostcopyDone({ digest: 0n, pagesReceived: 0, faults: 0, faultP50Us: 0, faultP99Us: 0, faultMaxUs: 0, postcopyMs: 0 })).length);
  expectCode(() => decodePostcopyDone(pd, 0, pd.length), 'MS_ERR_FRAME_MALFORMED', 'faults 2^64-1');
});

test('DEVICE_STATE carries its bytes as the body, up to MAX_DEVICE_STATE_BYTES and not one more', () => {
  const state = randomBytes(seeded(32), 333);
  assertBytes(checkedBody(encodeDeviceState(state), FrameType.DEVICE_STATE), state, 'body');
  const max = new Uint8Array(Limits.MAX_DEVICE_STATE_BYTES);
  assert.is(readFrameHeader(encodeDeviceState(max), 0, 16)?.bodyLength, maxBodyBytes(FrameType.DEVICE_STATE));
  expectCode(() => encodeDeviceState(new Uint8Array(Limits.MAX_DEVICE_STATE_BYTES + 1)), 'MS_ERR_FRAME_MALFORMED');
});

test('COMPLETE has an empty body, and a non-empty one is MS_ERR_FRAME_MALFORMED', () => {
  assert.is(checkedBody(encodeComplete(), FrameType.COMPLETE).length, 0);
  decodeComplete(new Uint8Array(0), 0, 0);
  expectCode(() => decodeComplete(new Uint8Array(1), 0, 1), 'MS_ERR_FRAME_MALFORMED');
});

// ---- truncation --------------------------------------------------------------------------------------

test('every truncation of every control body throws MS_ERR_FRAME_MALFORMED and never returns a value', () => {
  const rng = seeded(33);
  let cuts = 0;
  for (const c of CASES) {
    for (let round = 0; round < 5; round++) {
      const body = bodyOf(c.encode(c.make(rng)));
      for (let k = 0; k < body.length; k++) {
        expectCode(() => c.decode(body, 0, k), 'MS_ERR_FRAME_MALFORMED', `${c.name} cut to ${k} of ${body.length} (rest in buffer)`);
        expectCode(() => c.decode(body.slice(0, k), 0, k), 'MS_ERR_FRAME_MALFORMED', `${c.name} cut to ${k} (exact buffer)`);
        cuts++;
      }
      expectCode(() => c.decode(body, 0, body.length + 1), 'MS_ERR_FRAME_MALFORMED', `${c.name} length past its buffer`);
    }
  }
  assert.ok(cuts > 1000, `${cuts} cuts`);
});

test('a trailing byte after any control body is MS_ERR_FRAME_MALFORMED', () => {
  const rng = seeded(34);
  for (const c of CASES) {
    const body = bodyOf(c.encode(c.make(rng)));
    const longer = new Uint8Array(body.length + 1);
    longer.set(body);
    expectCode(() => c.decode(longer, 0, longer.length), 'MS_ERR_FRAME_MALFORMED', c.name);
  }
});

// ---- field rules ---------------------------------------------------------------------------------------

test('non-zero reserved fields are MS_ERR_FRAME_MALFORMED in ITERATION_END, SWITCHOVER, PAGE_REQUEST and MISSING_PAGES', () => {
  const poke = (frame: Uint8Array, at: number, decode: Decoder<unknown>, what: string): void => {
    const body = bodyOf(frame).slice();
    body[at] = 1;
    expectCode(() => decode(body, 0, body.length), 'MS_ERR_FRAME_MALFORMED', what);
  };
  const ie = encodeIterationEnd({ iteration: 1, pages: 2, bytes: 3 });
  for (const at of [4, 5, 6, 7]) poke(ie, at, decodeIterationEnd, `ITERATION_END byte ${at}`);
  const sw = encodeSwitchover({ mode: 0, iterations: 1, digest: 2n, guestSteps: 3, pagesSent: 4, missingPages: 5 });
  for (const at of [1, 2, 3]) poke(sw, at, decodeSwitchover, `SWITCHOVER byte ${at}`);
  const pr = encodePageRequest({ regionId: 1, page: 2, count: 3, requestId: 4 });
  for (const at of [2, 3]) poke(pr, at, decodePageRequest, `PAGE_REQUEST byte ${at}`);
  const mp = encodeMissingPages({ regionId: 1, firstPage: 0, pageCount: 64, bitmap: new Uint8Array(8) });
  for (const at of [2, 3, 12, 13, 14, 15]) poke(mp, at, decodeMissingPages, `MISSING_PAGES byte ${at}`);
});

test('SWITCHOVER rejects an unknown mode', () => {
  for (const mode of [2, 255]) {
    const body = bodyOf(encodeSwitchover({ mode, iterations: 1, digest: 2n, guestSteps: 3, pagesSent: 4, missingPages: 5 }));
    expectCode(() => decodeSwitchover(body, 0, body.length), 'MS_ERR_FRAME_MALFORMED', `mode ${mode}`);
  }
});

test('RESUMED and POSTCOPY_DONE reject NaN and infinite timings', () => {
  for (const bad of [NaN, Infinity, -Infinity]) {
    for (const field of ['applyMs', 'stateMs', 'digestMs', 'resumeMs'] as const) {
      const body = bodyOf(encodeResumed({ digest: 1n, pagesReceived: 2, applyMs: 0, stateMs: 0, digestMs: 0, resumeMs: 0, [field]: bad }));
      expectCode(() => decodeResumed(body, 0, body.length), 'MS_ERR_FRAME_MALFORMED', `RESUMED ${field} = ${bad}`);
    }
    for (const field of ['faultP50Us', 'faultP99Us', 'faultMaxUs', 'postcopyMs'] as const) {
      const body = bodyOf(encodePostcopyDone({ digest: 1n, pagesReceived: 2, faults: 3, faultP50Us: 0, faultP99Us: 0, faultMaxUs: 0, postcopyMs: 0, [field]: bad }));
      expectCode(() => decodePostcopyDone(body, 0, body.length), 'MS_ERR_FRAME_MALFORMED', `POSTCOPY_DONE ${field} = ${bad}`);
    }
  }
});

test('ERROR accepts a message of MAX_ERROR_MESSAGE_BYTES and rejects one byte more', () => {
  const msg = (n: number): Uint8Array => new Uint8Array(n).fill(0x61);
  const body = (n: number): Uint8Array => new Uint8Array([4, ...Buffer.from('MS_X'), n & 0xff, n >>> 8, ...msg(n)]);
  const ok = body(Limits.MAX_ERROR_MESSAGE_BYTES);
  assert.is(decodeError(ok, 0, ok.length).message.length, 4096);
  const over = body(Limits.MAX_ERROR_MESSAGE_BYTES + 1);
  expectCode(() => decodeError(over, 0, over.length), 'MS_ERR_FRAME_MALFORMED', '4097-byte message');
  const claim = new Uint8Array([4, ...Buffer.from('MS_X'), 0xff, 0xff]);
  expectCode(() => decodeError(claim, 0, claim.length), 'MS_ERR_FRAME_MALFORMED', 'message length 65535, no bytes');
});

test('encodeError truncates a message longer than MAX_ERROR_MESSAGE_BYTES so that it still decodes', () => {
  const long = 'x'.repeat(Limits.MAX_ERROR_MESSAGE_BYTES + 500);
  const got = decodeFrame(encodeError({ code: 'MS_ERR_IO', message: long }), FrameType.ERROR, decodeError);
  assert.equal([got.code, got.message.length], ['MS_ERR_IO', Limits.MAX_ERROR_MESSAGE_BYTES]);
});

test('ERROR rejects a code that is empty, longer than 64 characters or not [A-Z0-9_]', () => {
  const bodyWith = (code: string): Uint8Array => new Uint8Array([code.length, ...Buffer.from(code, 'latin1'), 0, 0]);
  const ok = bodyWith('A'.repeat(64));
  assert.is(decodeError(ok, 0, ok.length).code.length, 64);
  for (const code of ['', 'A'.repeat(65), 'ms_err_io', 'MS ERR', 'MS-ERR', 'MS_ERR_\u00c9']) {
    const b = bodyWith(code);
    expectCode(() => decodeError(b, 0, b.length), 'MS_ERR_FRAME_MALFORMED', JSON.stringify(code));
  }
});

test('peerError wraps a peer ERROR as MS_ERR_PEER_ERROR carrying the peer code', () => {
  const e = peerError({ code: 'MS_ERR_DIGEST_MISMATCH', message: 'differs' }, 'destination');
  assert.equal([e.code, e.details.peerCode, e.details.peer], ['MS_ERR_PEER_ERROR', 'MS_ERR_DIGEST_MISMATCH', 'destination']);
  assert.ok(e.message.includes('MS_ERR_DIGEST_MISMATCH'));
});

test('PAGE_REQUEST accepts counts 1 and 64 and rejects 0 and 65', () => {
  for (const count of [1, MAX_PAGES_PER_REQUEST]) {
    assert.is(decodeFrame(encodePageRequest({ regionId: 0, page: 0, count, requestId: 0 }), FrameType.PAGE_REQUEST, decodePageRequest).count, count);
  }
  assert.is(MAX_PAGES_PER_REQUEST, 64);
  for (const count of [0, MAX_PAGES_PER_REQUEST + 1, 0xffffffff]) {
    const body = bodyOf(encodePageRequest({ regionId: 0, page: 0, count, requestId: 0 }));
    expectCode(() => decodePageRequest(body, 0, body.length), 'MS_ERR_FRAME_MALFORMED', `count ${count}`);
  }
});

test('MISSING_PAGES at the bitmap limit (8 Mi pages, 1 MiB) fills the frame limit exactly; one page more is rejected', () => {
  const maxPages = Limits.MAX_MISSING_BITMAP_BYTES * 8;
  const bitmap = new Uint8Array(Limits.MAX_MISSING_BITMAP_BYTES).fill(0xa5);
  const frame = encodeMissingPages({ regionId: 3, firstPage: 0, pageCount: maxPages, bitmap });
  assert.is(frame.length - 16, maxBodyBytes(FrameType.MISSING_PAGES));
  const got = decodeFrame(frame, FrameType.MISSING_PAGES, decodeMissingPages);
  assert.equal([got.pageCount, got.bitmap.length], [maxPages, 1 << 20]);
  const over = le([2, 0], [2, 0], [4, 0], [4, maxPages + 1], [4, 0]);
  expectCode(() => decodeMissingPages(over, 0, over.length), 'MS_ERR_FRAME_MALFORMED', '8 Mi + 1 pages');
  const zero = le([2, 0], [2, 0], [4, 0], [4, 0], [4, 0]);
  expectCode(() => decodeMissingPages(zero, 0, zero.length), 'MS_ERR_FRAME_MALFORMED', '0 pages');
});

test('MISSING_PAGES needs exactly ceil(pageCount/64) words of bitmap and a first page that is a multiple of 64', () => {
  const head = (firstPage: number, pageCount: number): Uint8Array => le([2, 0], [2, 0], [4, firstPage], [4, pageCount], [4, 0]);
  const body = (firstPage: number, pageCount: number, bitmapBytes: number): Uint8Array => {
    const h = head(firstPage, pageCount);
    const out = new Uint8Array(h.length + bitmapBytes);
    out.set(h);
    return out;
  };
  for (const [pages, bytes] of [[1, 8], [64, 8], [65, 16], [128, 16], [129, 24]]) {
    const ok = body(0, pages, bytes);
    assert.is(decodeMissingPages(ok, 0, ok.length).bitmap.length, bytes, `${pages} pages`);
    for (const wrong of [bytes - 1, bytes + 1, bytes - 8, bytes + 8]) {
      const b = body(0, pages, wrong);
      expectCode(() => decodeMissingPages(b, 0, b.length), 'MS_ERR_FRAME_MALFORMED', `${pages} pages with ${wrong} bitmap bytes`);
    }
  }
  for (const first of [1, 63, 65]) {
    const b = body(first, 64, 8);
    expectCode(() => decodeMissingPages(b, 0, b.length), 'MS_ERR_FRAME_MALFORMED', `first page ${first}`);
  }
  expectCode(() => encodeMissingPages({ regionId: 0, firstPage: 0, pageCount: 65, bitmap: new Uint8Array(8) }), 'MS_ERR_FRAME_MALFORMED', 'encode with a short bitmap');
});

test.run();
