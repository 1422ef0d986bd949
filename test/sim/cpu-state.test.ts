// cpu-state: the simulated vCPU's device state is 64 fixed bytes (layout in src/sim/cpu-state.ts).
// It arrives from the peer, so every field is hostile input: each bad value is rejected with
// MS_ERR_DEVICE_STATE_INVALID before anything is loaded, and so is every truncation.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CPU_STATE_BYTES, decodeCpuState, encodeCpuState, type CpuState } from '../../src/sim/cpu-state.js';
import { initialCounters, workloadShape } from '../../src/sim/workload.js';
import { SimulatedGuest, ramRegions } from '../../src/sim/index.js';
import { SMALL_SLABS, expectCode, guestConfig } from '../_support/guest-helpers.js';

const INVALID = 'MS_ERR_DEVICE_STATE_INVALID';
const EXPECT = { pageSize: 4096, pageCount: 2048 };

const STATE: CpuState = {
  shape: { kind: 'hotset', pageCount: 2048, pageSize: 4096, hotStart: 100, hotPages: 128, hotThreshold: 922, diskBlocks: [] },
  fill: 'mixed',
  seed: 7,
  stepsPerSecond: 0,
  counters: { prng: [0x01234567, 0x89abcdef | 0, 0xdeadbeef | 0, 1], steps: 123456 },
};

// Written out by hand from the layout in the header of cpu-state.ts, not produced by the encoder.
const STATE_HEX = [
  '4d534350', '0100', '02', '02', // magic "MSCP", version 1, workload hotset, fill mixed
  '00100000', '00080000', // pageSize 4096, pageCount 2048
  '64000000', '80000000', // hotStart 100, hotPages 128
  '9a03', '0000', '00000000', // hotThreshold 922, reserved, stepsPerSecond 0
  '0000000000001c40', // seed 7.0
  '000000000024fe40', // steps 123456.0
  '67452301', 'efcdab89', 'efbeadde', '01000000', // prng
].join('');

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const fromHex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
const u32 = (p: readonly number[]): number[] => p.map((x) => x >>> 0);

/** The fixture with `edit` applied to a DataView over a copy. */
function edited(edit: (dv: DataView) => void): Uint8Array {
  const b = fromHex(STATE_HEX);
  edit(new DataView(b.buffer));
  return b;
}

test('encodes the fixture state to the documented 64 bytes', () => {
  const bytes = encodeCpuState(STATE);
  assert.is(bytes.byteLength, CPU_STATE_BYTES);
  assert.is(hex(bytes), STATE_HEX);
});

test('decodes the documented bytes to the fixture state', () => {
  const s = decodeCpuState(fromHex(STATE_HEX), EXPECT);
  assert.equal(s.shape, STATE.shape);
  assert.equal([s.fill, s.seed, s.stepsPerSecond, s.counters.steps], ['mixed', 7, 0, 123456]);
  assert.equal(u32(s.counters.prng), u32(STATE.counters.prng));
});

test('decode(encode(x)) keeps every field, for every workload and fill', () => {
  for (const kind of ['idle', 'uniform', 'hotset'] as const) {
    for (const fill of ['zero', 'random', 'mixed'] as const) {
      const x: CpuState = {
        shape: { kind, pageCount: 0xffffffff, pageSize: 65536, hotStart: 0xfffffffe, hotPages: 1, hotThreshold: 1024, diskBlocks: [] },
        fill,
        seed: 2 ** 53 - 1,
        stepsPerSecond: 0x7fffffff,
        counters: { prng: [0xffffffff, 0, 0x80000000, 0x7fffffff], steps: 2 ** 53 - 1 },
      };
      const y = decodeCpuState(encodeCpuState(x), { pageSize: 65536, pageCount: 0xffffffff });
      assert.equal(y.shape, x.shape, `${kind}/${fill}`);
      assert.equal([y.fill, y.seed, y.stepsPerSecond, y.counters.steps], [fill, x.seed, x.stepsPerSecond, x.counters.steps]);
      assert.equal(u32(y.counters.prng), u32(x.counters.prng));
      assert.is(hex(encodeCpuState(y)), hex(encodeCpuState(x)), 're-encoding gives the same bytes');
    }
  }
});

test('decodes a state that sits at an offset inside a larger buffer', () => {
  const big = new Uint8Array(200).fill(0xee);
  big.set(fromHex(STATE_HEX), 37);
  const s = decodeCpuState(big.subarray(37, 37 + 64), EXPECT);
  assert.is(s.counters.steps, 123456);
  assert.equal(s.shape, STATE.shape);
});

test('a saved guest state carries the config-derived shape and the exact step count', async () => {
  const config = guestConfig({ memoryBytes: 8 << 20, seed: 11, hotBytes: 1 << 20, hotPermille: 750, stepsPerSecond: 5000, fill: 'random' });
  const g = SimulatedGuest.create(config, SMALL_SLABS);
  try {
    await g.runUntil(4321);
    const s = decodeCpuState(g.saveState(), { pageSize: 4096, pageCount: config.memoryBytes / config.pageSize });
    assert.equal(s.shape, workloadShape(config));
    assert.equal([s.fill, s.seed, s.stepsPerSecond, s.counters.steps], ['random', 11, 5000, 4321]);
    assert.not.equal(u32(s.counters.prng), u32(initialCounters(config).prng), 'PRNG advanced');
  } finally {
    await g.close();
  }
});

test('rejects every truncation of a valid state', () => {
  const full = fromHex(STATE_HEX);
  for (let n = 0; n < full.length; n++) {
    const err = expectCode(() => decodeCpuState(full.subarray(0, n), EXPECT), INVALID, `prefix of ${n} bytes`);
    assert.ok(err.message.includes(`length ${n}`), err.message);
  }
});

const hostile: [string, Uint8Array, RegExp][] = [
  ['one byte too long', new Uint8Array([...fromHex(STATE_HEX), 0]), /length 65/],
  ['a bad magic', edited((dv) => dv.setUint32(0, 0x5043534e, true)), /magic/],
  ['a byte-swapped magic', edited((dv) => dv.setUint32(0, 0x5043534d, false)), /magic/],
  ['version 2', edited((dv) => dv.setUint16(4, 2, true)), /version 2/],
  ['version 0', edited((dv) => dv.setUint16(4, 0, true)), /version 0/],
  ['an unknown workload byte', edited((dv) => dv.setUint8(6, 4)), /workload 4/],
  ['workload byte 255', edited((dv) => dv.setUint8(6, 255)), /workload 255/],
  ['an unknown fill byte', edited((dv) => dv.setUint8(7, 3)), /fill 3/],
  ['a page size that differs from the memory', edited((dv) => dv.setUint32(8, 8192, true)), /pages of 8192 B/],
  ['a page count that differs from the memory', edited((dv) => dv.setUint32(12, 2049, true)), /2049 pages/],
  ['a hot set that runs past the end of memory', edited((dv) => dv.setUint32(16, 2048 - 127, true)), /hot set/],
  ['a hot set that starts past the end of memory', edited((dv) => dv.setUint32(16, 0xffffffff, true)), /hot set/],
  ['an empty hot set', edited((dv) => dv.setUint32(20, 0, true)), /hot set/],
  ['a hot threshold above 1024', edited((dv) => dv.setUint16(24, 1025, true)), /threshold/],
  ['a step rate of 2^31', edited((dv) => dv.setUint32(28, 2 ** 31, true)), /step rate/],
  ['a fractional seed', edited((dv) => dv.setFloat64(32, 7.5, true)), /seed/],
  ['a negative seed', edited((dv) => dv.setFloat64(32, -1, true)), /seed/],
  ['a NaN seed', edited((dv) => dv.setFloat64(32, NaN, true)), /seed/],
  ['a fractional step count', edited((dv) => dv.setFloat64(40, 1.5, true)), /step count/],
  ['a negative step count', edited((dv) => dv.setFloat64(40, -1, true)), /step count/],
  ['an infinite step count', edited((dv) => dv.setFloat64(40, Infinity, true)), /step count/],
  ['a step count of 2^53', edited((dv) => dv.setFloat64(40, 2 ** 53, true)), /step count/],
  ['an all-zero PRNG', edited((dv) => [48, 52, 56, 60].forEach((o) => dv.setUint32(o, 0, true))), /PRNG/],
];
for (const [what, bytes, message] of hostile) {
  test(`rejects a state with ${what}`, () => {
    const err = expectCode(() => decodeCpuState(bytes, EXPECT), INVALID, what);
    assert.match(err.message, message);
    assert.ok(err.message.startsWith('device state: '), err.message);
  });
}

test('accepts a hot set that ends exactly at the last page', () => {
  const s = decodeCpuState(edited((dv) => dv.setUint32(16, 2048 - 128, true)), EXPECT);
  assert.is(s.shape.hotStart + s.shape.hotPages, 2048);
});

test('every single bit flip either decodes or is rejected with MS_ERR_DEVICE_STATE_INVALID', () => {
  let rejected = 0;
  for (let bit = 0; bit < 64 * 8; bit++) {
    const b = fromHex(STATE_HEX);
    b[bit >> 3] ^= 1 << (bit & 7);
    try {
      decodeCpuState(b, EXPECT);
    } catch (err) {
      assert.is((err as { code?: string }).code, INVALID, `bit ${bit}: ${(err as Error).message}`);
      rejected++;
    }
  }
  // Magic (32), version (16), page size and count (64) bits alone make 112 rejected flips.
  assert.ok(rejected >= 112, `${rejected} flips rejected`);
});

test('a state the guest cannot hold is rejected by checkState and loadState of a receiving guest', async () => {
  const src = guestConfig({ memoryBytes: 8 << 20 });
  const g = SimulatedGuest.create(src, SMALL_SLABS);
  const dst = SimulatedGuest.receiving(ramRegions({ memoryBytes: 16 << 20, pageSize: 4096, ramRegions: 1 }), SMALL_SLABS);
  try {
    const state = g.saveState();
    expectCode(() => dst.checkState(state), INVALID, 'checkState of an 8 MiB guest on 16 MiB');
    expectCode(() => dst.loadState(state), INVALID, 'loadState of an 8 MiB guest on 16 MiB');
    assert.is(dst.config, null, 'nothing was loaded');
  } finally {
    await g.close();
    await dst.close();
  }
});

test.run();
