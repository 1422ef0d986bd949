// guest-config: sizes parse to exact byte counts, and every rejected field is named in the error
// (code MS_ERR_INVALID_ARGUMENT, message and details.field), because the CLI and the facade show it as is.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatBytes, parseSize, resolveGuestConfig, GUEST_DEFAULTS, type GuestConfig } from '../../src/sim/index.js';
import { expectCode } from '../_support/guest-helpers.js';

const INVALID = 'MS_ERR_INVALID_ARGUMENT';
const MiB = 2 ** 20;
const GiB = 2 ** 30;

const accepted: [string, number][] = [
  ['4096', 4096],
  ['64KiB', 64 * 1024],
  ['64MiB', 64 * MiB],
  ['1GiB', GiB],
  ['1.5GiB', 1.5 * GiB],
  ['512k', 512 * 1024],
  [' 2 MiB ', 2 * MiB],
  ['3g', 3 * GiB],
  ['8mb', 8 * MiB],
  ['0.5KiB', 512],
];
for (const [text, bytes] of accepted) {
  test(`parseSize reads ${JSON.stringify(text)} as ${bytes} bytes`, () => {
    assert.is(parseSize(text, '--memory'), bytes);
  });
}

const rejected = ['', '12XB', '-1', '0', '0KiB', '1.5', '0.1k', 'MiB', '1e3', '64 MiB extra', '99999999999999999999'];
for (const text of rejected) {
  test(`parseSize rejects ${JSON.stringify(text)} naming the option`, () => {
    const err = expectCode(() => parseSize(text, '--memory'), INVALID, text);
    assert.ok(err.message.includes('--memory'), err.message);
    assert.is((err as unknown as { details: { field: string } }).details.field, '--memory');
  });
}

test('formatBytes output parses back to the same byte count', () => {
  for (const n of [1, 4095, 4096, 65536, 3 * MiB, 1.5 * GiB, 2 * GiB, 5 * GiB + 4096]) {
    assert.is(parseSize(formatBytes(n), 'size'), n, formatBytes(n));
  }
  assert.is(formatBytes(64 * MiB), '64MiB');
  assert.is(formatBytes(2 * GiB), '2GiB');
});

test('resolveGuestConfig fills the documented defaults', () => {
  const c = resolveGuestConfig({ memoryBytes: 64 * MiB, seed: 3 });
  const expected: GuestConfig = {
    memoryBytes: 64 * MiB,
    pageSize: 4096,
    fill: GUEST_DEFAULTS.fill,
    workload: GUEST_DEFAULTS.workload,
    hotBytes: 4 * MiB,
    hotPermille: 900,
    seed: 3,
    stepsPerSecond: 0,
    ramRegions: 1,
    disks: [],
    diskFillBytes: 0,
  };
  assert.equal(c, expected);
  assert.is(c.fill, 'mixed');
  assert.is(c.workload, 'hotset');
});

test('resolveGuestConfig gives a one-page guest a one-page hot set', () => {
  assert.is(resolveGuestConfig({ memoryBytes: 4096, seed: 0 }).hotBytes, 4096);
  assert.is(resolveGuestConfig({ memoryBytes: 65536, pageSize: 65536, seed: 0 }).hotBytes, 65536);
});

test('resolveGuestConfig keeps explicit values', () => {
  const c = resolveGuestConfig({
    memoryBytes: 16 * MiB, pageSize: 16384, fill: 'random', workload: 'uniform', hotBytes: 32768,
    hotPermille: 0, seed: 2 ** 53 - 1, stepsPerSecond: 0x7fffffff,
  });
  assert.equal([c.pageSize, c.fill, c.workload, c.hotBytes, c.hotPermille, c.seed, c.stepsPerSecond],
    [16384, 'random', 'uniform', 32768, 0, 2 ** 53 - 1, 0x7fffffff]);
});

type Case = [what: string, input: Partial<GuestConfig> & { memoryBytes: number; seed: number }, field: string];
const bad: Case[] = [
  ['memory that is not a page multiple', { memoryBytes: 64 * MiB + 100, seed: 1 }, 'memory'],
  ['memory of zero bytes', { memoryBytes: 0, seed: 1 }, 'memory'],
  ['memory that is not a multiple of a larger page size', { memoryBytes: 64 * MiB + 4096, pageSize: 65536, seed: 1 }, 'memory'],
  ['fractional memory', { memoryBytes: 4096.5, seed: 1 }, 'memory'],
  ['an unknown fill', { memoryBytes: 64 * MiB, seed: 1, fill: 'ones' as never }, 'fill'],
  ['an unknown workload', { memoryBytes: 64 * MiB, seed: 1, workload: 'busy' as never }, 'workload'],
  ['a hot size larger than memory', { memoryBytes: 64 * MiB, seed: 1, hotBytes: 64 * MiB + 4096 }, 'hotSize'],
  ['a hot size smaller than a page', { memoryBytes: 64 * MiB, seed: 1, hotBytes: 4095 }, 'hotSize'],
  ['a negative seed', { memoryBytes: 64 * MiB, seed: -1 }, 'seed'],
  ['a fractional seed', { memoryBytes: 64 * MiB, seed: 1.5 }, 'seed'],
  ['a seed of 2^53', { memoryBytes: 64 * MiB, seed: 2 ** 53 }, 'seed'],
  ['a page size that is not a power of two', { memoryBytes: 64 * MiB, seed: 1, pageSize: 12288 }, 'pageSize'],
  ['a page size below 4 KiB', { memoryBytes: 64 * MiB, seed: 1, pageSize: 2048 }, 'pageSize'],
  ['hotPermille above 1000', { memoryBytes: 64 * MiB, seed: 1, hotPermille: 1001 }, 'hotPermille'],
  ['a negative step rate', { memoryBytes: 64 * MiB, seed: 1, stepsPerSecond: -1 }, 'dirtyRate'],
  ['a step rate of 2^31', { memoryBytes: 64 * MiB, seed: 1, stepsPerSecond: 2 ** 31 }, 'dirtyRate'],
];
for (const [what, input, field] of bad) {
  test(`resolveGuestConfig rejects ${what}, naming ${field}`, () => {
    const err = expectCode(() => resolveGuestConfig(input), INVALID, what);
    assert.ok(err.message.startsWith(`${field} `), `message should name ${field}: ${err.message}`);
    assert.is((err as unknown as { details: { field: string } }).details.field, field);
  });
}

test('resolveGuestConfig rejects 2^32 pages and accepts 2^32 - 1', () => {
  expectCode(() => resolveGuestConfig({ memoryBytes: 2 ** 32 * 4096, seed: 1 }), INVALID, '2^32 pages');
  assert.is(resolveGuestConfig({ memoryBytes: (2 ** 32 - 1) * 4096, seed: 1 }).memoryBytes, (2 ** 32 - 1) * 4096);
});

test.run();
