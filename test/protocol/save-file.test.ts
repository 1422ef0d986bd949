// The save file's header and trailer (src/protocol/save-file.ts): they round-trip; the layout puts
// pages at fixed, aligned offsets; every single-bit flip of the header's checked bytes is refused
// (MS_ERR_SAVE_FILE_INVALID), and so are offsets that disagree with the regions' shapes even under a
// valid checksum; a file shorter than its header says is truncated; a trailer that is missing is
// truncated and one that is damaged is corrupt.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { crc32c } from '../../src/protocol/crc32c.js';
import {
  SAVE_HEADER_BYTES, SAVE_TRAILER_BYTES, decodeSaveHeader, decodeSaveTrailer, encodeSaveHeader, encodeSaveTrailer, planSaveLayout,
} from '../../src/protocol/save-file.js';
import { expectCode } from '../_support/protocol-helpers.js';

const REGIONS = [
  { id: 0, name: 'ram0', kind: 'ram' as const, pageSize: 4096, pageCount: 1000 },
  { id: 1, name: 'ram1', kind: 'ram' as const, pageSize: 65536, pageCount: 3 },
];

test('the layout puts each region\'s pages at 64 KiB-aligned offsets after the header, then the hashes, the state and the trailer', () => {
  const l = planSaveLayout(REGIONS, 100);
  assert.is(l.regions[0].dataOffset, 65536);
  assert.is(l.regions[1].dataOffset, 65536 + Math.ceil((1000 * 4096) / 65536) * 65536);
  assert.is(l.regions[0].hashOffset, l.regions[1].dataOffset + 3 * 65536);
  assert.is(l.regions[1].hashOffset, l.regions[0].hashOffset + 8 * 1000);
  assert.is(l.stateOffset, l.regions[1].hashOffset + 8 * 3);
  assert.is(l.trailerOffset, l.stateOffset + 100);
  assert.is(l.fileBytes, l.trailerOffset + SAVE_TRAILER_BYTES);
});

test('header and trailer round-trip', () => {
  const l = planSaveLayout(REGIONS, 100, 1);
  const back = decodeSaveHeader(encodeSaveHeader(l), l.fileBytes);
  assert.equal(back.regions.map((r) => [r.id, r.kind, r.pageSize, r.pageCount, r.dataOffset, r.hashOffset]), l.regions.map((r) => [r.id, r.kind, r.pageSize, r.pageCount, r.dataOffset, r.hashOffset]));
  assert.is(back.flags, 1);
  assert.is(back.stateBytes, 100);
  const t = decodeSaveTrailer(encodeSaveTrailer({ digest: 0x0123456789abcdefn, pagesWritten: 4242 }));
  assert.equal(t, { digest: 0x0123456789abcdefn, pagesWritten: 4242 });
});

test('every single-bit flip of the header\'s checked bytes is MS_ERR_SAVE_FILE_INVALID', () => {
  const l = planSaveLayout(REGIONS, 100);
  const good = encodeSaveHeader(l);
  const checked = 48 + 32 * REGIONS.length + 4;
  for (let bit = 0; bit < checked * 8; bit++) {
    const b = good.slice();
    b[bit >> 3] ^= 1 << (bit & 7);
    expectCode(() => decodeSaveHeader(b, l.fileBytes), 'MS_ERR_SAVE_FILE_INVALID', `bit ${bit}`);
  }
});

test('offsets that disagree with the regions\' shapes are refused even with a valid checksum', () => {
  const l = planSaveLayout(REGIONS, 100);
  const b = encodeSaveHeader(l);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(48 + 16, BigInt(l.regions[0].dataOffset + 4096), true);
  const end = 48 + 32 * REGIONS.length;
  dv.setUint32(end, crc32c(b, 0, end), true);
  expectCode(() => decodeSaveHeader(b, l.fileBytes), 'MS_ERR_SAVE_FILE_INVALID', 'shifted data offset');
});

test('a file shorter than its header says is truncated; a header cut short or of another version is invalid', () => {
  const l = planSaveLayout(REGIONS, 100);
  const b = encodeSaveHeader(l);
  expectCode(() => decodeSaveHeader(b, l.fileBytes - 1), 'MS_ERR_SAVE_FILE_TRUNCATED', 'one byte short');
  expectCode(() => decodeSaveHeader(b.subarray(0, 60), l.fileBytes), 'MS_ERR_SAVE_FILE_INVALID', 'header cut');
  const v2 = b.slice();
  new DataView(v2.buffer).setUint32(8, 2, true);
  expectCode(() => decodeSaveHeader(v2, l.fileBytes), 'MS_ERR_SAVE_FILE_INVALID', 'version 2');
  assert.is(b.length, SAVE_HEADER_BYTES);
});

test('a trailer without its magic is truncated, one with a flipped bit corrupt', () => {
  const t = encodeSaveTrailer({ digest: 7n, pagesWritten: 1 });
  expectCode(() => decodeSaveTrailer(new Uint8Array(SAVE_TRAILER_BYTES)), 'MS_ERR_SAVE_FILE_TRUNCATED', 'zeros');
  for (let bit = 64; bit < 28 * 8; bit++) {
    const b = t.slice();
    b[bit >> 3] ^= 1 << (bit & 7);
    expectCode(() => decodeSaveTrailer(b), 'MS_ERR_SAVE_FILE_CORRUPT', `bit ${bit}`);
  }
});

test.run();
