// CRC-32C (src/protocol/crc32c.ts), slicing-by-8, against published vectors (the check value and the
// RFC 3720 iSCSI vectors) and a bit-at-a-time reference written from the definition. Random lengths
// and offsets reach every path: the 8-byte loop, the byte tail, and unaligned starts; from
// KERNEL_MIN_BYTES on, the kernels (assembly/crc32c.ts), in place in kernel memory or through the
// thread's scratch, whose 64 KiB pieces a long input crosses.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { KERNEL_MIN_BYTES, crc32c, crc32cInJs } from '../../src/protocol/crc32c.js';
import { KERNEL_RESERVED_BYTES, Kernels, WASM_PAGE_BYTES } from '../../src/wasm/kernels.js';
import { flipBit, randomBytes, refCrc32c } from '../_support/protocol-helpers.js';
import { seeded } from '../_support/seeded.js';

const ascii = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
const hex32 = (v: number): string => `0x${v.toString(16).padStart(8, '0')}`;

test('the check value of "123456789" is 0xE3069283', () => {
  assert.is(hex32(crc32c(ascii('123456789'))), '0xe3069283');
  assert.is(hex32(refCrc32c(ascii('123456789'))), '0xe3069283');
});

test('the CRC of no bytes is 0', () => {
  assert.is(crc32c(new Uint8Array(0)), 0);
  assert.is(crc32c(ascii('abc'), 2, 2), 0);
});

test('matches the RFC 3720 (iSCSI) vectors', () => {
  const cases: Array<[string, Uint8Array, number]> = [
    ['32 zero bytes', new Uint8Array(32), 0x8a9136aa],
    ['32 bytes of 0xff', new Uint8Array(32).fill(0xff), 0x62a8ab43],
    ['bytes 0..31', Uint8Array.from({ length: 32 }, (_, i) => i), 0x46dd794e],
    ['bytes 31..0', Uint8Array.from({ length: 32 }, (_, i) => 31 - i), 0x113fdb5c],
  ];
  for (const [name, bytes, expected] of cases) assert.is(hex32(crc32c(bytes)), hex32(expected), name);
});

test('continuing from a split point equals the one-shot CRC, at every split', () => {
  const data = randomBytes(seeded(11), 301);
  const whole = crc32c(data);
  for (let cut = 0; cut <= data.length; cut++) {
    assert.is(crc32c(data, cut, data.length, crc32c(data, 0, cut)), whole, `split at ${cut}`);
  }
});

test('continuing over many random pieces equals the one-shot CRC', () => {
  const rng = seeded(12);
  for (let round = 0; round < 50; round++) {
    const data = randomBytes(rng, rng.below(5000));
    let c = 0;
    for (let at = 0; at < data.length;) {
      const n = Math.min(data.length - at, 1 + rng.below(40));
      c = crc32c(data, at, at + n, c);
      at += n;
    }
    assert.is(c, crc32c(data), `round ${round}, ${data.length} bytes`);
  }
});

test('equals the bit-at-a-time reference on random inputs of every length up to 300', () => {
  const rng = seeded(13);
  for (let len = 0; len <= 300; len++) {
    const data = randomBytes(rng, len);
    assert.is(crc32c(data), refCrc32c(data), `length ${len}`);
  }
});

test('equals the reference on random sub-ranges, including unaligned starts and views with a byteOffset', () => {
  const rng = seeded(14);
  const big = randomBytes(rng, 4096);
  for (let round = 0; round < 500; round++) {
    const start = rng.below(big.length);
    const end = start + rng.below(big.length - start + 1);
    assert.is(crc32c(big, start, end), refCrc32c(big.subarray(start, end)), `[${start}, ${end})`);
    const view = big.subarray(start);
    assert.is(crc32c(view, 0, end - start), refCrc32c(big.subarray(start, end)), `view at ${start}, ${end - start} bytes`);
  }
});

test('changes with every single-bit flip of a 64-byte message', () => {
  const data = randomBytes(seeded(15), 64);
  const c = crc32c(data);
  const seen = new Set<number>();
  for (let bit = 0; bit < 64 * 8; bit++) {
    const flipped = crc32c(flipBit(data, bit));
    assert.is.not(flipped, c, `bit ${bit}`);
    seen.add(flipped);
  }
  assert.is(seen.size, 512, 'each flip gives its own CRC');
});

test('in kernel memory, the CRC runs in place there and equals the JS one at any offset and length', () => {
  const memory = new WebAssembly.Memory({ initial: 4, maximum: 4, shared: true });
  new Kernels(memory);
  const u8 = new Uint8Array(memory.buffer);
  const rng = seeded(16);
  u8.set(randomBytes(rng, 3 * WASM_PAGE_BYTES), KERNEL_RESERVED_BYTES);
  for (let round = 0; round < 200; round++) {
    const start = KERNEL_RESERVED_BYTES + rng.below(WASM_PAGE_BYTES);
    const len = KERNEL_MIN_BYTES + rng.below(WASM_PAGE_BYTES);
    const view = new Uint8Array(memory.buffer, start, len);
    assert.is(crc32c(view), crc32cInJs(view), `[${start}, +${len})`);
    assert.is(crc32c(u8, start, start + len, 0x1234), crc32cInJs(u8, start, start + len, 0x1234), `[${start}, +${len}) continued`);
  }
  assert.is(crc32c(u8, KERNEL_RESERVED_BYTES, KERNEL_RESERVED_BYTES + 300), refCrc32c(u8.subarray(KERNEL_RESERVED_BYTES, KERNEL_RESERVED_BYTES + 300)));
});

test('a second instance on the same memory (a worker\'s) leaves the first one\'s CRC right', () => {
  const memory = new WebAssembly.Memory({ initial: 2, maximum: 2, shared: true });
  const first = new Kernels(memory);
  const u8 = new Uint8Array(memory.buffer);
  u8.set(randomBytes(seeded(18), 4096), KERNEL_RESERVED_BYTES);
  const want = crc32cInJs(u8, KERNEL_RESERVED_BYTES, KERNEL_RESERVED_BYTES + 4096);
  assert.is(first.raw.crc32c(KERNEL_RESERVED_BYTES, 4096, 0) >>> 0, want, 'first instance');
  const second = new Kernels(memory);
  assert.is(first.raw.crc32c(KERNEL_RESERVED_BYTES, 4096, 0) >>> 0, want, 'first instance, after the second was made');
  assert.is(second.raw.crc32c(KERNEL_RESERVED_BYTES, 4096, 0) >>> 0, want, 'second instance');
});

test('outside kernel memory, a long input goes through the scratch in pieces and equals the JS CRC', () => {
  const rng = seeded(17);
  for (const len of [KERNEL_MIN_BYTES - 1, KERNEL_MIN_BYTES, 65_535, 65_536, 65_537, 200_003]) {
    const data = randomBytes(rng, len + 11);
    assert.is(crc32c(data, 11, len + 11), crc32cInJs(data, 11, len + 11), `${len} bytes`);
  }
  const data = randomBytes(rng, 1000);
  assert.is(crc32c(data), refCrc32c(data));
});

test.run();
