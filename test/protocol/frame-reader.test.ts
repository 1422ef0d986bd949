// FrameReader (src/protocol/frame-reader.ts): reassembly from arbitrary chunks, through both push()
// and the socket-style writable()/commit(); every proper prefix is "need more"; the channel limit
// (maxBody) at limit and limit+1; every single-bit flip of a header or checked region is an error
// (or "need more" when it grew the length), never a frame; and the preface/skip path.
//
// Prefix and bit-flip checks build a fresh reader per case over one shared buffer that already holds
// the whole (or unflipped) frame past the committed bytes: a reader that looked past `end` would find
// real bytes there and wrongly succeed.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FrameType, Limits } from '../../src/protocol/constants.js';
import { encodeDeviceState, encodeIterationEnd } from '../../src/protocol/control.js';
import { FRAME_HEADER_BYTES, frameTypeName, maxBodyBytes } from '../../src/protocol/frame.js';
import { CACHED_WINDOW_BYTES, FrameReader } from '../../src/protocol/frame-reader.js';
import { encodePreface } from '../../src/protocol/handshake.js';
import {
  assertBytes, bigRawBatch, concat, copyFrame, expectCode, flipBit, headerOf, randomChunks, readerBytes, readStream, sampleFrames,
  type ReadFrame,
} from '../_support/protocol-helpers.js';
import { seeded } from '../_support/seeded.js';

const SMALL_MAX = Limits.MAX_CONTROL_BODY_BYTES;
const shared = new Uint8Array(readerBytes(SMALL_MAX));

/** A fresh reader over `shared` after writing `bytes` into it and committing only `commit` of them. */
function readerWith(bytes: Uint8Array, commit = bytes.length, maxBody = SMALL_MAX): FrameReader {
  const r = new FrameReader(shared, maxBody);
  const free = r.writable();
  free.set(bytes);
  r.commit(commit);
  return r;
}

function assertFrames(got: readonly ReadFrame[], expected: readonly Uint8Array[], what: string): void {
  assert.is(got.length, expected.length, `${what}: frame count`);
  for (let i = 0; i < expected.length; i++) {
    assert.is(got[i].type, headerOf(expected[i]).type, `${what}: frame ${i} type`);
    assertBytes(got[i].bytes, expected[i], `${what}: frame ${i} (${frameTypeName(got[i].type)})`);
  }
}

// ---- construction -------------------------------------------------------------------------------

test('rejects a receive buffer that cannot hold a maximal frame plus one read', () => {
  expectCode(() => new FrameReader(new Uint8Array(readerBytes(1000) - 1), 1000), 'MS_ERR_INVALID_ARGUMENT');
  assert.is(new FrameReader(new Uint8Array(readerBytes(1000)), 1000).maxBody, 1000);
});

test('defaults maxBody to the largest frame body of the protocol', () => {
  assert.is(new FrameReader(new Uint8Array(readerBytes(Limits.MAX_FRAME_BODY_BYTES))).maxBody, Limits.MAX_FRAME_BODY_BYTES);
});

// ---- every prefix --------------------------------------------------------------------------------

test('every proper prefix of a frame of each type is "need more", and the whole frame is one frame', () => {
  for (const s of sampleFrames(seeded(1))) {
    for (let k = 0; k < s.bytes.length; k++) {
      const r = readerWith(s.bytes, k);
      assert.is(r.next(), null, `${s.name}: prefix of ${k} of ${s.bytes.length} bytes`);
      assert.is(r.buffered, k);
    }
    const r = readerWith(s.bytes);
    const f = r.next();
    assert.ok(f !== null, `${s.name}: whole frame`);
    assert.equal([f.type, f.offset, f.bodyOffset, f.bodyLength], [s.type, 0, 16, s.bytes.length - 16]);
    assert.is(r.next(), null, `${s.name}: nothing after it`);
    assert.equal([r.buffered, r.frames], [0, 1]);
  }
});

test('byte-at-a-time delivery yields each frame exactly when its last byte arrives', () => {
  const frames = sampleFrames(seeded(2)).map((s) => s.bytes);
  const stream = concat(frames);
  const ends = new Set<number>();
  frames.reduce((at, f) => { ends.add(at + f.length); return at + f.length; }, 0);
  const r = new FrameReader(new Uint8Array(readerBytes(SMALL_MAX)), SMALL_MAX);
  const got: ReadFrame[] = [];
  for (let i = 0; i < stream.length; i++) {
    r.push(stream.subarray(i, i + 1), () => {
      const f = r.next();
      if (f !== null) got.push(copyFrame(f));
      assert.is(f !== null, ends.has(i + 1), `after byte ${i + 1}`);
      assert.is(r.next(), null);
    });
  }
  assertFrames(got, frames, 'byte at a time');
});

// ---- random chunk splits -----------------------------------------------------------------------

/** Mixed frames: every type, small batches, and 1, 2.5 and 4 MiB page batches. */
function mixedStream(seed: number): Uint8Array[] {
  const rng = seeded(seed);
  const frames: Uint8Array[] = [];
  for (let round = 0; round < 4; round++) frames.push(...sampleFrames(rng).map((s) => s.bytes));
  frames.splice(5, 0, bigRawBatch(rng, 0, 256));
  frames.splice(20, 0, bigRawBatch(rng, 1000, 640));
  frames.splice(30, 0, bigRawBatch(rng, 5000, 1024));
  frames.push(bigRawBatch(rng, 9000, 300));
  return frames;
}

const bigShared = new Uint8Array(readerBytes(Limits.MAX_FRAME_BODY_BYTES));
const frames = mixedStream(100);
const stream = concat(frames);

for (const api of ['push', 'socket'] as const) {
  test(`random chunks of 1 B .. 1 MiB through ${api === 'push' ? 'push()' : 'writable()/commit()'} yield the same frames in order (6 seeds)`, () => {
    assert.ok(stream.length > 8 * 2 ** 20, 'stream holds several MiB');
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const sizes = randomChunks(seeded(seed), stream.length, 20);
      const reader = new FrameReader(bigShared);
      assertFrames(readStream(reader, stream, sizes, api), frames, `${api}, seed ${seed}, ${sizes.length} chunks`);
      assert.is(reader.buffered, 0);
      assert.is(reader.frames, frames.length);
    }
  });

  test(`chunks of 1..17 bytes through ${api === 'push' ? 'push()' : 'writable()/commit()'} yield the same small frames`, () => {
    const rng = seeded(7);
    const small = [...sampleFrames(rng), ...sampleFrames(rng), ...sampleFrames(rng)].map((s) => s.bytes);
    const bytes = concat(small);
    const sizes: number[] = [];
    for (let left = bytes.length; left > 0;) { const n = Math.min(left, 1 + rng.below(17)); sizes.push(n); left -= n; }
    const reader = new FrameReader(new Uint8Array(readerBytes(SMALL_MAX)), SMALL_MAX);
    assertFrames(readStream(reader, bytes, sizes, api), small, api);
  });
}

test('a stream longer than the receive buffer compacts and still yields every frame (64 KiB reader)', () => {
  // The reader's buffer is ~320 KiB; 3 MiB of control frames forces the free tail under 256 KiB
  // many times, with a partial frame to move to the front each time.
  const rng = seeded(8);
  const list: Uint8Array[] = [];
  while (list.reduce((n, f) => n + f.length, 0) < 3 * 2 ** 20) list.push(encodeDeviceState(new Uint8Array(1 + rng.below(SMALL_MAX)).fill(list.length & 0xff)));
  const bytes = concat(list);
  for (const api of ['push', 'socket'] as const) {
    const reader = new FrameReader(new Uint8Array(readerBytes(SMALL_MAX)), SMALL_MAX);
    assertFrames(readStream(reader, bytes, randomChunks(seeded(9), bytes.length, 18), api), list, api);
  }
});

test('past the cached window, the partial frame moves to the front and reads go on after it', () => {
  const reader = new FrameReader(new Uint8Array(readerBytes(Limits.MAX_FRAME_BODY_BYTES)), Limits.MAX_FRAME_BODY_BYTES);
  const whole = encodeDeviceState(new Uint8Array(CACHED_WINDOW_BYTES));
  const next = bigRawBatch(seeded(11), 0, 300);
  const got = readStream(reader, concat([whole, next.subarray(0, 5000)]), [whole.length + 5000], 'socket');
  assert.is(got.length, 1, 'the first frame came out whole');
  assert.is(reader.buffered, 5000);
  const free = reader.writable();
  // The 5000 buffered bytes now start the buffer, and the read lands right behind them.
  assert.is(free.byteOffset - reader.buf.byteOffset, 5000, 'read offset after the move');
  assertBytes(reader.peek(), next.subarray(0, 5000), 'moved bytes');
  free.set(next.subarray(5000));
  reader.commit(next.length - 5000);
  const f = reader.next();
  assert.ok(f !== null && f.type === FrameType.PAGE_BATCH, 'the moved frame completes');
  assert.is(f!.offset, 0);
});

test('writable() offers the free tail, and at least what the pending frame still needs', () => {
  const reader = new FrameReader(new Uint8Array(readerBytes(4 * 2 ** 20)), 4 * 2 ** 20);
  const capacity = reader.buf.length;
  assert.is(reader.writable().length, capacity);
  const big = bigRawBatch(seeded(10), 0, 1000);
  // Fill most of the buffer with control frames so the batch header lands near the end.
  const filler = encodeDeviceState(new Uint8Array(capacity - 300_000 - 16));
  const got = readStream(reader, concat([filler, big.subarray(0, 100)]), [filler.length + 100], 'socket');
  assert.is(got.length, 1);
  assert.is(reader.next(), null);
  assert.is(reader.buffered, 100);
  const free = reader.writable();
  assert.ok(free.length >= big.length - 100, `free ${free.length} must fit the rest (${big.length - 100})`);
  free.set(big.subarray(100));
  reader.commit(big.length - 100);
  const f = reader.next();
  assert.ok(f !== null);
  assertBytes(f.buf.subarray(f.offset, f.offset + big.length), big, 'batch after compaction');
});

// ---- limits --------------------------------------------------------------------------------------

test('accepts a body of exactly maxBody and rejects maxBody+1 with MS_ERR_FRAME_TOO_LARGE from the header alone', () => {
  const maxBody = 1000;
  const ok = encodeDeviceState(new Uint8Array(maxBody).fill(3));
  const r1 = readerWith(ok, ok.length, maxBody);
  assert.is(r1.next()?.bodyLength, maxBody);
  const tooBig = encodeDeviceState(new Uint8Array(maxBody + 1));
  const r2 = readerWith(tooBig, FRAME_HEADER_BYTES, maxBody);
  const e = expectCode(() => r2.next(), 'MS_ERR_FRAME_TOO_LARGE', 'maxBody+1 with only its header buffered');
  assert.equal([(e as unknown as { details: { limit: number } }).details.limit, (e as unknown as { details: { value: number } }).details.value], [maxBody, maxBody + 1]);
});

test('the type limit applies before the channel limit: a control frame of 64 KiB + 1 is TOO_LARGE on a 16 MiB channel', () => {
  const h = new Uint8Array(16);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, SMALL_MAX + 1, true);
  dv.setUint8(4, FrameType.ERROR);
  dv.setUint32(8, SMALL_MAX + 1, true);
  const r = new FrameReader(bigShared);
  r.writable().set(h);
  r.commit(16);
  const e = expectCode(() => r.next(), 'MS_ERR_FRAME_TOO_LARGE');
  assert.is((e as unknown as { details: { limit: number } }).details.limit, maxBodyBytes(FrameType.ERROR));
});

test('commit rejects more bytes than the buffer holds, negative and fractional counts', () => {
  const r = new FrameReader(new Uint8Array(readerBytes(1000)), 1000);
  expectCode(() => r.commit(r.buf.length + 1), 'MS_ERR_INVALID_ARGUMENT', 'overrun');
  expectCode(() => r.commit(-1), 'MS_ERR_INVALID_ARGUMENT', 'negative');
  expectCode(() => r.commit(1.5), 'MS_ERR_INVALID_ARGUMENT', 'fractional');
  assert.is(r.buffered, 0);
});

// ---- preface -------------------------------------------------------------------------------------

test('peek() shows a preface and skip() consumes it, leaving the frames after it', () => {
  const frame = encodeIterationEnd({ iteration: 9, pages: 1, bytes: 2 });
  const r = readerWith(concat([encodePreface(), frame]));
  assertBytes(r.peek().subarray(0, 12), encodePreface(), 'peek');
  r.discard(12);
  assert.is(r.buffered, frame.length);
  const f = r.next();
  assert.equal([f?.type, f?.offset], [FrameType.ITERATION_END, 12]);
});

test('skip() rejects more bytes than are buffered, and skipping while a frame header is pending', () => {
  const frame = encodeIterationEnd({ iteration: 9, pages: 1, bytes: 2 });
  const r = readerWith(frame, 20);
  expectCode(() => r.discard(21), 'MS_ERR_INVALID_ARGUMENT', 'more than buffered');
  assert.is(r.next(), null);
  expectCode(() => r.discard(1), 'MS_ERR_INVALID_ARGUMENT', 'header pending');
});

// ---- bit flips -------------------------------------------------------------------------------------

const FRAME_ERRORS = ['MS_ERR_FRAME_CHECKSUM', 'MS_ERR_FRAME_TYPE_UNKNOWN', 'MS_ERR_FRAME_TOO_LARGE', 'MS_ERR_FRAME_MALFORMED'];

test('every single-bit flip of a header or checked region is an error, never "need more", even when the length grew', () => {
  let flips = 0;
  for (const seed of [1, 2, 3]) {
    for (const s of sampleFrames(seeded(seed))) {
      const h = headerOf(s.bytes);
      const bits = (FRAME_HEADER_BYTES + h.checkedLength) * 8;
      for (let bit = 0; bit < bits; bit++) {
        const flipped = flipBit(s.bytes, bit);
        const what = `${s.name} bit ${bit} (byte ${bit >>> 3})`;
        const r = readerWith(flipped);
        let code: string | undefined;
        let result: unknown;
        try {
          result = r.next();
        } catch (err) {
          code = (err as { code?: string }).code;
        }
        flips++;
        // The whole checked region is in, so the CRC is checked whatever the (flipped) length says.
        assert.ok(code !== undefined, `${what}: ${result === null ? '"need more"' : 'accepted as a frame'}`);
        assert.ok(FRAME_ERRORS.includes(code), `${what}: ${code}`);
        const byte = bit >>> 3;
        // Where the field makes the outcome certain, check the exact code.
        if (byte >= 12) assert.is(code, 'MS_ERR_FRAME_CHECKSUM', `${what} (CRC field or checked body)`);
        if (byte >= 5 && byte < 8) assert.is(code, 'MS_ERR_FRAME_MALFORMED', `${what} (flags/reserved)`);
        if (byte >= 8 && byte < 12 && s.type !== FrameType.PAGE_BATCH) assert.is(code, 'MS_ERR_FRAME_MALFORMED', `${what} (checked length)`);
      }
    }
  }
  assert.ok(flips > 10_000, `${flips} flips`);
});

test('a flip that grows a PAGE_BATCH length fails the checksum once the checked bytes are in, without waiting for the body', () => {
  const s = sampleFrames(seeded(4)).find((x) => x.type === FrameType.PAGE_BATCH)!;
  const flipped = flipBit(s.bytes, 20); // bit 4 of byte 2: body length + 0x100000
  const h = headerOf(flipped);
  assert.is(h.bodyLength, headerOf(s.bytes).bodyLength + 0x100000);
  const arrived = (n: number): FrameReader => {
    const r = new FrameReader(bigShared);
    r.writable().set(flipped);
    r.commit(n);
    return r;
  };
  // Only the header and the checked bytes arrive: the frame's end is a megabyte away.
  expectCode(() => arrived(FRAME_HEADER_BYTES + h.checkedLength).next(), 'MS_ERR_FRAME_CHECKSUM');
  // One byte short of the checked region, it is still "need more".
  assert.is(arrived(FRAME_HEADER_BYTES + h.checkedLength - 1).next(), null);
});

test('an intact PAGE_BATCH whose payload is still arriving is "need more" after its CRC passed, then one frame', () => {
  const s = sampleFrames(seeded(5)).find((x) => x.type === FrameType.PAGE_BATCH && headerOf(x.bytes).checkedLength < headerOf(x.bytes).bodyLength)!;
  const h = headerOf(s.bytes);
  const r = new FrameReader(bigShared);
  r.writable().set(s.bytes);
  r.commit(FRAME_HEADER_BYTES + h.checkedLength);
  assert.is(r.next(), null, 'payload pending');
  r.commit(s.bytes.length - FRAME_HEADER_BYTES - h.checkedLength);
  const f = r.next();
  assert.is(f?.type, FrameType.PAGE_BATCH);
  assert.is(f?.bodyLength, h.bodyLength);
});

test('a frame followed by garbage is returned before the garbage is rejected', () => {
  const frame = encodeIterationEnd({ iteration: 1, pages: 2, bytes: 3 });
  const junk = new Uint8Array(16).fill(0xff);
  const r = readerWith(concat([frame, junk]));
  assert.is(r.next()?.type, FrameType.ITERATION_END);
  expectCode(() => r.next(), 'MS_ERR_FRAME_TYPE_UNKNOWN');
});

test.run();
