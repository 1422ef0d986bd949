// The simulated guest's disks: sparse image files written by one step in 256, deterministically, so
// that a replay reproduces them; the RAM of a guest is the same with or without disks; the vCPU thread
// writes exactly what the replay writes; the device state carries the disks (version 2) and a receiving
// guest checks them against the shared storage it was given.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SimulatedGuest, decodeCpuState, encodeCpuState, ramRegions, replay, type CpuState } from '../../src/sim/index.js';
import { SMALL_SLABS, expectCode, guestConfig, regionImage } from '../_support/guest-helpers.js';
import { writtenBlocks } from '../_support/migration.js';

const MiB = 1 << 20;
let dir = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'memshift-disk-'));
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

function sub(name: string): string {
  const d = join(dir, name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d);
  return d;
}

test('disks change no byte of RAM, and two replays write identical disks; about one step in 256 writes one', () => {
  const plain = guestConfig({ memoryBytes: 8 * MiB, seed: 3 });
  const withDisks = guestConfig({ memoryBytes: 8 * MiB, seed: 3, disks: [4 * MiB, 1 * MiB] });
  const a = sub('a');
  const b = sub('b');
  const ram = regionImage(replay(plain, 300_000));
  assert.ok(Buffer.compare(Buffer.from(regionImage(replay(withDisks, 300_000, {}, a))), Buffer.from(ram)) === 0, 'RAM unchanged by disks');
  replay(withDisks, 300_000, {}, b);
  for (const name of ['disk0.img', 'disk1.img']) assert.ok(readFileSync(join(a, name)).equals(readFileSync(join(b, name))), name);
  const blocks = writtenBlocks(join(a, 'disk0.img')) + writtenBlocks(join(a, 'disk1.img'));
  // 300k steps / 256 ≈ 1170 writes over 1280 blocks, some twice: several hundred distinct blocks.
  assert.ok(blocks > 500 && blocks < 1280, `${blocks} blocks written`);
  replay(withDisks, 300_001, {}, b);
  const differing = ['disk0.img', 'disk1.img'].filter((n) => !readFileSync(join(a, n)).equals(readFileSync(join(b, n))));
  assert.ok(differing.length <= 1, 'one more step writes at most one record');
});

test('the vCPU thread writes the disks exactly as the replay does, and flushes them at each pause', async () => {
  const config = guestConfig({ memoryBytes: 8 * MiB, seed: 9, disks: [2 * MiB] });
  const live = sub('live');
  const g = SimulatedGuest.create(config, SMALL_SLABS, { storage: { diskDir: live, shared: false } });
  try {
    await g.runUntil(123_457);
    const ref = sub('ref');
    const memory = replay(config, 123_457, {}, ref);
    assert.ok(readFileSync(join(live, 'disk0.img')).equals(readFileSync(join(ref, 'disk0.img'))), 'disk equals the replay');
    assert.ok(Buffer.from(regionImage(g.memory)).equals(Buffer.from(regionImage(memory))), 'RAM equals the replay');
    assert.ok(g.diskImages[0].blocks === 512);
    // The dirty-block bitmap marks every block the vCPU wrote.
    const dirty = g.diskImages[0].dirty;
    let marked = 0;
    for (const w of dirty) for (let bit = 0; bit < 32; bit++) if ((w >>> bit) & 1) marked++;
    assert.is(marked, writtenBlocks(join(live, 'disk0.img')));
  } finally {
    await g.close();
  }
});

test('--disk-fill: the first bytes of each disk hold seeded data from the start, marked written; the replay has the same; bad sizes are refused', async () => {
  const config = guestConfig({ memoryBytes: 8 * MiB, seed: 21, workload: 'idle', disks: [2 * MiB, 1 * MiB], diskFillBytes: 512 * 1024 });
  const live = sub('filled');
  const g = SimulatedGuest.create(config, SMALL_SLABS, { storage: { diskDir: live, shared: false } });
  try {
    const ref = sub('filled-ref');
    replay(config, 0, {}, ref);
    for (const name of ['disk0.img', 'disk1.img']) assert.ok(readFileSync(join(live, name)).equals(readFileSync(join(ref, name))), name);
    assert.is(writtenBlocks(join(live, 'disk0.img')), 128, 'exactly the filled blocks hold data');
    const d0 = readFileSync(join(live, 'disk0.img'));
    const d1 = readFileSync(join(live, 'disk1.img'));
    assert.not.ok(d0.subarray(0, 4096).equals(d0.subarray(4096, 8192)), 'blocks differ from each other');
    assert.not.ok(d0.subarray(0, 4096).equals(d1.subarray(0, 4096)), 'disks differ from each other');
    const marked = [...g.diskImages[0].dirty].reduce((n, w) => n + [...Array(32).keys()].filter((b) => ((w >>> b) & 1) === 1).length, 0);
    assert.is(marked, 128, 'the filled blocks are marked, so the first pass sends them');
  } finally {
    await g.close();
  }
  expectCode(() => guestConfig({ disks: [MiB], diskFillBytes: 2 * MiB }), 'MS_ERR_INVALID_ARGUMENT');
  expectCode(() => guestConfig({ disks: [MiB], diskFillBytes: 1000 }), 'MS_ERR_INVALID_ARGUMENT');
});

const STATE: CpuState = {
  shape: { kind: 'hotset', pageCount: 2048, pageSize: 4096, hotStart: 0, hotPages: 128, hotThreshold: 922, diskBlocks: [1024, 256] },
  fill: 'mixed', seed: 7, stepsPerSecond: 0, counters: { prng: [1, 2, 3, 4], steps: 99 }, storage: 'shared',
};
const EXPECT = { pageSize: 4096, pageCount: 2048 };

test('a device state with disks is version 2 and round-trips; one without is still version 1, 64 bytes', () => {
  const bytes = encodeCpuState(STATE);
  assert.is(bytes.length, 64 + 4 + 4 + 8);
  assert.is(new DataView(bytes.buffer).getUint16(4, true), 2);
  assert.equal(decodeCpuState(bytes, EXPECT), STATE);
  const plain = encodeCpuState({ ...STATE, shape: { ...STATE.shape, diskBlocks: [] }, storage: undefined });
  assert.is(plain.length, 64);
  assert.is(new DataView(plain.buffer).getUint16(4, true), 1);
  expectCode(() => encodeCpuState({ ...STATE, storage: undefined }), 'MS_ERR_DEVICE_STATE_INVALID');
  assert.equal(decodeCpuState(encodeCpuState({ ...STATE, storage: 'local' }), EXPECT).storage, 'local');
});

test('a hostile disk section is refused before anything is loaded', () => {
  const good = encodeCpuState(STATE);
  const edit = (f: (dv: DataView) => void, bytes: Uint8Array = good.slice()): Uint8Array => {
    f(new DataView(bytes.buffer));
    return bytes;
  };
  const cases: [string, Uint8Array, RegExp][] = [
    ['no disk', edit((dv) => dv.setUint8(68, 0)), /0 disks/],
    ['nine disks', edit((dv) => dv.setUint8(68, 9)), /9 disks/],
    ['more disks than bytes', edit((dv) => dv.setUint8(68, 3)), /for 3 disks/],
    ['an unknown storage', edit((dv) => dv.setUint8(69, 3)), /storage 3/],
    ['reserved bits', edit((dv) => dv.setUint16(70, 1, true)), /reserved/],
    ['an unknown section', edit((dv) => dv.setUint16(64, 9, true)), /unknown section 9/],
    ['a section longer than the state', edit((dv) => dv.setUint16(66, 200, true)), /does not fit/],
    ['version 2 without a section', edit((dv) => dv.setUint16(4, 2, true), encodeCpuState({ ...STATE, shape: { ...STATE.shape, diskBlocks: [] }, storage: undefined })), /at least one section/],
    ['a disk of no block', edit((dv) => dv.setUint32(72, 0, true)), /0 blocks/],
    ['a disk past 1 TiB', edit((dv) => dv.setUint32(76, 2 ** 28 + 1, true)), /blocks/],
    ['a byte too many', new Uint8Array([...good, 0]), /length/],
    ['the disk section cut short', good.slice(0, 70), /length/],
  ];
  for (const [what, bytes, message] of cases) {
    const e = expectCode(() => decodeCpuState(bytes, EXPECT), 'MS_ERR_DEVICE_STATE_INVALID', what);
    assert.match(e.message, message, what);
  }
});

test('the network identity travels in its own section, after the disks, and every bad field is refused', () => {
  const network = { mac: '52:54:00:12:34:56', ip: '10.78.0.50', prefixLength: 24, servicePort: 7000 };
  const both = encodeCpuState({ ...STATE, network });
  assert.is(both.length, 64 + 16 + 4 + 14);
  assert.equal(decodeCpuState(both, EXPECT), { ...STATE, network });
  const alone = encodeCpuState({ ...STATE, shape: { ...STATE.shape, diskBlocks: [] }, storage: undefined, network });
  assert.equal(decodeCpuState(alone, EXPECT).network, network);
  const at = 64 + 4; // the network body, when it is the only section
  const edit = (f: (b: Uint8Array, dv: DataView) => void): Uint8Array => {
    const b = alone.slice();
    f(b, new DataView(b.buffer));
    return b;
  };
  const cases: [string, Uint8Array, RegExp][] = [
    ['a multicast MAC', edit((b) => { b[at] = 1; }), /multicast/],
    ['prefix /0', edit((b) => { b[at + 10] = 0; }), /prefix \/0/],
    ['prefix /33', edit((b) => { b[at + 10] = 33; }), /prefix \/33/],
    ['a reserved byte', edit((b) => { b[at + 11] = 1; }), /reserved/],
    ['a short body', edit((_, dv) => dv.setUint16(66, 13, true)), /length|network section/],
    ['network before disks', (() => {
      const b = both.slice();
      new DataView(b.buffer).setUint16(64, 2, true);
      return b;
    })(), /network section|after section/],
  ];
  for (const [what, bytes, message] of cases) assert.match(expectCode(() => decodeCpuState(bytes, EXPECT), 'MS_ERR_DEVICE_STATE_INVALID', what).message, message, what);
  expectCode(() => encodeCpuState({ ...STATE, network: { ...network, mac: '52:54:00:12:34' } }), 'MS_ERR_DEVICE_STATE_INVALID');
  expectCode(() => encodeCpuState({ ...STATE, network: { ...network, ip: '10.78.0.256' } }), 'MS_ERR_DEVICE_STATE_INVALID');
});

test('a receiving guest refuses disks it cannot reach: no shared storage, a missing image, an image of another size', async () => {
  const config = guestConfig({ memoryBytes: 8 * MiB, seed: 9, disks: [2 * MiB] });
  const shared = sub('shared');
  const source = SimulatedGuest.create(config, SMALL_SLABS, { storage: { diskDir: shared, shared: true } });
  try {
    const state = source.saveState();
    const regions = ramRegions(config);
    const local = SimulatedGuest.receiving(regions, SMALL_SLABS);
    assert.match(expectCode(() => local.checkState(state), 'MS_ERR_DEVICE_STATE_INVALID').message, /shared storage/);
    const elsewhere = SimulatedGuest.receiving(regions, SMALL_SLABS, { storage: { diskDir: sub('empty'), shared: true } });
    assert.match(expectCode(() => elsewhere.checkState(state), 'MS_ERR_DEVICE_STATE_INVALID').message, /disk0\.img/);
    const wrong = sub('wrong');
    writeFileSync(join(wrong, 'disk0.img'), '');
    truncateSync(join(wrong, 'disk0.img'), MiB);
    const resized = SimulatedGuest.receiving(regions, SMALL_SLABS, { storage: { diskDir: wrong, shared: true } });
    assert.match(expectCode(() => resized.checkState(state), 'MS_ERR_DEVICE_STATE_INVALID').message, /1048576 B/);
    const right = SimulatedGuest.receiving(regions, SMALL_SLABS, { storage: { diskDir: shared, shared: true } });
    right.checkState(state);
    for (const g of [local, elsewhere, resized, right]) await g.close();
  } finally {
    await source.close();
  }
});

test('a receiving guest takes only disks its directory can hold whole: refused by name past its free space, nothing made', async () => {
  const regions = ramRegions(guestConfig({ memoryBytes: 8 * MiB, seed: 10 }));
  const dir = sub('admission');
  const huge = SimulatedGuest.receiving(regions, SMALL_SLABS, { storage: { diskDir: dir, shared: false } });
  const small = SimulatedGuest.receiving(regions, SMALL_SLABS, { storage: { diskDir: sub('admission-ok'), shared: false } });
  try {
    // Eight disks of 1 TiB: more than this machine's disk holds, although each is allowed alone.
    const e = expectCode(() => huge.receiveBlockDevices(Array.from({ length: 8 }, () => ({ blockBytes: 4096, blocks: 2 ** 28 }))), 'MS_ERR_HANDSHAKE_REJECTED');
    assert.match(e.message, /the guest's disks need 8796093022208 bytes; .* has \d+ free/);
    assert.not.ok(existsSync(join(dir, 'disk0.img')), 'no image was made');
    assert.is(small.receiveBlockDevices([{ blockBytes: 4096, blocks: 512 }, { blockBytes: 4096, blocks: 256 }]).length, 2);
  } finally {
    await huge.close();
    await small.close();
  }
});

test.run();
