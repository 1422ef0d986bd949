// LZ4 page payloads (src/protocol/encodings/lz4.ts): a valid payload decodes to its page; every way a
// payload can be wrong (size prefix, missing block, truncation, garbage, a block of the wrong length)
// is MS_ERR_LZ4_MALFORMED — never the library's raw string error or a WebAssembly RuntimeError — and
// the library keeps working after each failure.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { lz4Decode, lz4Encode } from '../../src/protocol/encodings/lz4.js';
import { LZ4_PREFIX_BYTES } from '../../src/protocol/page-batch.js';
import { assertBytes, expectCode, randomBytes } from '../_support/protocol-helpers.js';
import { seeded, type Rng } from '../_support/seeded.js';

const PS = 4096;

/** Text-like page: runs of a few symbols, compresses well. */
function textPage(rng: Rng, size = PS): Uint8Array {
  const p = new Uint8Array(size);
  for (let i = 0; i < size;) {
    const run = 1 + rng.below(40);
    p.fill(0x61 + rng.below(6), i, Math.min(size, i + run));
    i += run;
  }
  return p;
}

/** Sparse page: zeros with a few random bytes. */
function sparsePage(rng: Rng, size = PS): Uint8Array {
  const p = new Uint8Array(size);
  for (let i = 0; i < 30; i++) p[rng.below(size)] = 1 + rng.below(255);
  return p;
}

const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];

test('a compressed page starts with its u32 LE size and decodes back to the page (4 KiB and 64 KiB)', () => {
  const rng = seeded(51);
  for (const size of [4096, 16384, 65536]) {
    for (const page of [textPage(rng, size), sparsePage(rng, size), new Uint8Array(size)]) {
      const payload = lz4Encode(page, size);
      assert.ok(payload !== null, `${size}: compressible page`);
      assert.equal([...payload.subarray(0, 4)], le32(size));
      assert.ok(payload.length < size);
      assertBytes(lz4Decode(payload, size), page, `${size}-byte page`);
    }
  }
});

test('lz4Encode returns null when the payload would exceed the limit, and the payload when it fits exactly', () => {
  const rng = seeded(52);
  const noise = randomBytes(rng, PS);
  assert.is(lz4Encode(noise, PS - PS / 8), null, 'random page, limit 7/8 of a page');
  const text = textPage(rng);
  const full = lz4Encode(text, PS)!;
  assert.ok(lz4Encode(text, full.length) !== null, 'limit = payload size');
  assert.is(lz4Encode(text, full.length - 1), null, 'limit = payload size - 1');
});

test('decodes a payload held in a SharedArrayBuffer view (as the apply path hands it over)', () => {
  const page = textPage(seeded(53));
  const payload = lz4Encode(page, PS)!;
  const shared = new Uint8Array(new SharedArrayBuffer(payload.length + 100));
  shared.set(payload, 37);
  assertBytes(lz4Decode(shared.subarray(37, 37 + payload.length), PS), page, 'shared view');
});

test('rejects a size prefix other than the page size before decompressing', () => {
  const page = textPage(seeded(54));
  const payload = lz4Encode(page, PS)!;
  for (const declared of [0, 1, PS - 1, PS + 1, 2 * PS, 0x7fffffff, 0xffffffff]) {
    const bad = payload.slice();
    bad.set(le32(declared), 0);
    const e = expectCode(() => lz4Decode(bad, PS), 'MS_ERR_LZ4_MALFORMED', `prefix ${declared}`);
    assert.ok(e.message.includes(String(declared >>> 0)), e.message);
  }
  expectCode(() => lz4Decode(payload, 2 * PS), 'MS_ERR_LZ4_MALFORMED', 'valid payload for another page size');
});

test('rejects a payload of 0..4 bytes (no block after the prefix)', () => {
  for (let n = 0; n <= LZ4_PREFIX_BYTES; n++) {
    expectCode(() => lz4Decode(new Uint8Array(le32(PS).slice(0, n)), PS), 'MS_ERR_LZ4_MALFORMED', `${n} bytes`);
  }
});

test('every truncation of a valid block is MS_ERR_LZ4_MALFORMED', () => {
  const rng = seeded(55);
  for (const page of [textPage(rng), sparsePage(rng), textPage(rng)]) {
    const payload = lz4Encode(page, PS)!;
    for (let k = LZ4_PREFIX_BYTES + 1; k < payload.length; k++) {
      expectCode(() => lz4Decode(payload.subarray(0, k), PS), 'MS_ERR_LZ4_MALFORMED', `cut to ${k} of ${payload.length}`);
    }
    assertBytes(lz4Decode(payload, PS), page, 'whole payload still decodes');
  }
});

test('a block that decompresses to fewer bytes than a page is MS_ERR_LZ4_MALFORMED', () => {
  const half = lz4Encode(textPage(seeded(56), PS / 2), PS / 2)!;
  const bad = half.slice();
  bad.set(le32(PS), 0);
  expectCode(() => lz4Decode(bad, PS), 'MS_ERR_LZ4_MALFORMED');
});

test('a garbage block is MS_ERR_LZ4_MALFORMED', () => {
  const bad = new Uint8Array([...le32(PS), 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x02, 0x03, 0xf0, 0xff, 0xff]);
  expectCode(() => lz4Decode(bad, PS), 'MS_ERR_LZ4_MALFORMED');
  // Token 0x04: no literals, then a match at offset 0x1061, before the first byte of output.
  const offsetPastStart = new Uint8Array([...le32(PS), 0x04, 0x61, 0x10, 0x00]);
  expectCode(() => lz4Decode(offsetPastStart, PS), 'MS_ERR_LZ4_MALFORMED', 'match offset before the start');
});

test('thousands of random blocks and mutated payloads give a page of exactly pageSize or MS_ERR_LZ4_MALFORMED', () => {
  const rng = seeded(57);
  const page = textPage(rng);
  const valid = lz4Encode(page, PS)!;
  let errors = 0;
  let pages = 0;
  for (let i = 0; i < 3000; i++) {
    let payload: Uint8Array;
    if (i % 2 === 0) {
      payload = new Uint8Array([...le32(PS), ...randomBytes(rng, 1 + rng.below(600))]);
    } else {
      payload = valid.slice();
      for (let n = 1 + rng.below(4); n > 0; n--) payload[LZ4_PREFIX_BYTES + rng.below(payload.length - LZ4_PREFIX_BYTES)] = rng.u32() & 0xff;
    }
    let out: Uint8Array | undefined;
    try {
      out = lz4Decode(payload, PS);
    } catch (err) {
      assert.is((err as { code?: string }).code, 'MS_ERR_LZ4_MALFORMED', `case ${i}: ${String(err)}`);
      errors++;
      continue;
    }
    assert.is(out.length, PS, `case ${i}`);
    pages++;
  }
  assert.ok(errors > 1000, `${errors} errors, ${pages} pages`);
  assertBytes(lz4Decode(valid, PS), page, 'the library still decodes after 3000 hostile inputs');
});

test.run();
