// The per-encoding ops table (src/protocol/encodings/): each entry sits at its wire value with its
// report name, negotiation bit, payload bounds and size rule; lz4 round-trips through the table, and
// the table's encode declines what would not save an eighth of the page.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Capability, PageEncoding } from '../../src/protocol/constants.js';
import { ENCODINGS, addEncodingCounts, emptyEncodingCounts, encodingName, encodingOf } from '../../src/protocol/encodings/index.js';
import { LZ4_PREFIX_BYTES } from '../../src/protocol/encodings/lz4.js';
import { randomBytes } from '../_support/protocol-helpers.js';
import { seeded } from '../_support/seeded.js';

test('the table is indexed by wire value and names each encoding as reports do', () => {
  assert.equal(ENCODINGS.map((e) => [e.id, e.name]), [[0, 'zero'], [1, 'raw'], [2, 'xbzrle'], [3, 'lz4']]);
  assert.is(encodingOf(PageEncoding.XBZRLE)!.name, 'xbzrle');
  assert.is(encodingOf(4), undefined);
  assert.is(encodingOf(-1), undefined);
  assert.is(encodingName(0xff), '#255');
});

test('maxEncodedSize per encoding, for 4 KiB and 64 KiB pages', () => {
  for (const ps of [4096, 65536]) {
    assert.equal(ENCODINGS.map((e) => e.maxEncodedSize(ps)), [0, ps, ps, ps], `page size ${ps}`);
  }
});

test('negotiation bits and where the per-page work runs', () => {
  assert.equal(ENCODINGS.map((e) => e.capability), [0, 0, Capability.XBZRLE, Capability.LZ4]);
  assert.equal(ENCODINGS.map((e) => e.perPage), ['kernel', 'kernel', 'kernel', 'host']);
  assert.equal([ENCODINGS[PageEncoding.XBZRLE].keepLimit(4096), ENCODINGS[PageEncoding.LZ4].keepLimit(4096)], [3584, 3584]);
});

test('each size rule accepts its bounds and rejects one past them', () => {
  const ps = 4096;
  const ok = (e: number, size: number): boolean => ENCODINGS[e].sizeError(size, ps) === null;
  assert.equal([ok(0, 0), ok(0, 1)], [true, false]);
  assert.equal([ok(1, ps), ok(1, ps - 1), ok(1, ps + 1)], [true, false, false]);
  assert.equal([ok(2, 0), ok(2, ps), ok(2, ps + 1)], [true, true, false]);
  assert.equal([ok(3, LZ4_PREFIX_BYTES), ok(3, LZ4_PREFIX_BYTES + 1), ok(3, ps), ok(3, ps + 1)], [false, true, true, false]);
  assert.is(ENCODINGS[1].sizeError(100, ps), 'raw page of 100 bytes, page size is 4096');
});

test('lz4 through the table: decode(encode(page)) is the page', () => {
  const lz4 = ENCODINGS[PageEncoding.LZ4];
  const rng = seeded(77);
  for (const ps of [4096, 65536]) {
    const page = new Uint8Array(ps);
    for (let i = 0; i < ps; i += 1 + rng.below(64)) page[i] = 0x61 + rng.below(4);
    const payload = lz4.encode(page, ps);
    assert.ok(payload !== null, `${ps}: a text-like page compresses`);
    assert.ok(payload.length <= lz4.keepLimit(ps) && lz4.sizeError(payload.length, ps) === null);
    assert.ok(Buffer.from(lz4.decode(payload, ps)).equals(Buffer.from(page)), `${ps}: round trip`);
  }
});

test('lz4 through the table declines a page that does not compress, and rejects a malformed payload', () => {
  const lz4 = ENCODINGS[PageEncoding.LZ4];
  assert.is(lz4.encode(randomBytes(seeded(5), 4096), 4096), null);
  assert.throws(() => lz4.decode(new Uint8Array([0, 16, 0, 0, 1, 2, 3]), 4096), (e: Error & { code?: string }) => e.code === 'MS_ERR_LZ4_MALFORMED');
});

test('counts by name add up per wire value', () => {
  const c = addEncodingCounts(emptyEncodingCounts(), [3, 2, 1, 7]);
  assert.equal(c, { zero: 3, raw: 2, xbzrle: 1, lz4: 7 });
  assert.equal(addEncodingCounts(c, [1, 0, 0, 0]).zero, 4);
});

test.run();
