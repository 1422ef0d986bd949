// `memshift save` → `memshift restore` in two processes: the restored guest, run K more steps, equals
// an uninterrupted replay of (saved steps + K) bit for bit, suspended and live, one region or several;
// a file damaged in any part (cut short, a page, its hash, the header, not a save file at all) is
// refused with its named error before the guest runs, and nothing is dumped.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeSync, copyFileSync, existsSync, openSync, readFileSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { deadline } from '../_support/deadline.js';
import { mkdirSync } from 'node:fs';
import { diffAgainstReplay, diffDisksAgainstReplay, nonZeroPages, type GuestCase } from '../_support/migration.js';
import { perTestDir } from '../_support/per-test-dir.js';
import { memshift, type Finished } from '../_support/processes.js';
import { SAVE_HEADER_BYTES, SAVE_TRAILER_BYTES, encodeSaveHeader, encodeSaveTrailer, planSaveLayout } from '../../src/protocol/save-file.js';

const dir = perTestDir(test, 'memshift-save-');

interface SaveReport {
  guestSteps: number;
  fileBytes: number;
  passes: { pass: number; pages: number; paused: boolean }[];
}

function guestArgs(c: GuestCase): string[] {
  const a = ['--memory', c.memory ?? '16MiB', '--seed', String(c.seed), '--fill', c.fill ?? 'mixed', '--workload', c.workload ?? 'hotset'];
  if (c.ramRegions !== undefined) a.push('--ram-regions', String(c.ramRegions));
  for (const d of c.disks ?? []) a.push('--disk', d);
  if (c.diskFill !== undefined) a.push('--disk-fill', c.diskFill);
  return a;
}

async function save(c: GuestCase, extra: string[] = []): Promise<{ file: string; report: SaveReport }> {
  const file = dir.file('guest.save');
  const run = await memshift(['save', '--to', file, ...guestArgs(c), '--warmup', '150', '--report', dir.file('save.json'), '--quiet', ...extra]).done;
  assert.is(run.code, 0, `save failed: ${run.stderr}`);
  return { file, report: JSON.parse(readFileSync(dir.file('save.json'), 'utf8')) as SaveReport };
}

async function restore(file: string, steps: number, extra: string[] = []): Promise<Finished> {
  return memshift(['restore', file, '--run-steps', String(steps), '--dump-memory', dir.file('restored.img'), '--report', dir.file('restore.json'), '--quiet', ...extra]).done;
}

async function assertRestoresExactly(c: GuestCase, file: string, savedSteps: number, k: number, extra: string[] = []): Promise<void> {
  const run = await restore(file, k, extra);
  assert.is(run.code, 0, `restore failed: ${run.stderr}`);
  const r = JSON.parse(readFileSync(dir.file('restore.json'), 'utf8')) as { savedSteps: number; guestSteps: number };
  assert.is(r.savedSteps, savedSteps, 'the restored guest starts at the step the save paused at');
  assert.is(r.guestSteps, savedSteps + k);
  const diff = diffAgainstReplay(dir.file('restored.img'), { memory: '16MiB', ...c }, savedSteps + k);
  assert.is(diff, null, diff ?? '');
}

test('a suspended save restores to exactly the replay of its steps plus K', deadline(60_000, async () => {
  const c: GuestCase = { seed: 201, workload: 'hotset' };
  const { file, report } = await save(c);
  assert.ok(report.guestSteps > 0, 'the guest ran before the save');
  assert.equal(report.passes.map((p) => p.paused), [true], 'one pass, paused');
  await assertRestoresExactly(c, file, report.guestSteps, 5000);
}));

test('a live save writes passes while the guest runs and restores exactly', deadline(60_000, async () => {
  const c: GuestCase = { seed: 202, workload: 'hotset', memory: '32MiB' };
  const { file, report } = await save(c, ['--live', '--dirty-rate', '100000']);
  assert.ok(report.passes.length >= 2, `${report.passes.length} passes`);
  assert.ok(!report.passes[0].paused && report.passes[report.passes.length - 1].paused, 'running passes, then a paused one');
  assert.ok(report.passes[1].pages < report.passes[0].pages, 'the second pass writes only what the guest dirtied since');
  await assertRestoresExactly({ ...c, memory: '32MiB' }, file, report.guestSteps, 3000);
}));

test('a guest of three RAM regions saves and restores exactly, and a never-written guest leaves a sparse file', deadline(60_000, async () => {
  const c: GuestCase = { seed: 203, ramRegions: 3, workload: 'uniform' };
  const { file, report } = await save(c);
  await assertRestoresExactly(c, file, report.guestSteps, 2000);
  const z: GuestCase = { seed: 204, fill: 'zero', workload: 'idle' };
  const zero = await save(z);
  assert.is(zero.report.passes[0].pages, 0, 'no page of a never-written guest is written');
  assert.ok(statSync(zero.file).blocks * 512 < 1 << 20, `${statSync(zero.file).blocks * 512} bytes allocated for a 16 MiB guest`);
  await assertRestoresExactly(z, zero.file, zero.report.guestSteps, 100);
}));

test('a lazy restore runs the guest before its pages are read, faults the pages it touches from the file, and ends exactly as the replay', deadline(60_000, async () => {
  // 256 MiB: the loader needs a few hundred ms for it, the vCPU starts (and faults) within ~50 ms.
  const c: GuestCase = { seed: 206, workload: 'hotset', memory: '256MiB' };
  const { file, report } = await save(c);
  await assertRestoresExactly(c, file, report.guestSteps, 20000, ['--lazy']);
  const r = JSON.parse(readFileSync(dir.file('restore.json'), 'utf8')) as { lazy: boolean; faultPages: number };
  assert.ok(r.lazy);
  assert.ok(r.faultPages > 0, 'the guest faulted some pages in from the file');
}));

test('a lazy restore that meets a damaged page fails with its name and dumps nothing', deadline(60_000, async () => {
  const c: GuestCase = { seed: 207, workload: 'hotset', memory: '32MiB' };
  const { file } = await save(c);
  const b = readFileSync(file);
  // The last page of the region: read by the loader (or a fault) after the guest started.
  const last = 32 * 256 - 1;
  b[65536 + last * 4096 + 9] ^= 0x01;
  writeFileSync(file, b);
  const run = await restore(file, 20000, ['--lazy']);
  assert.is(run.code, 1, run.stderr);
  assert.match(run.stderr, 'MS_ERR_SAVE_FILE_CORRUPT');
  assert.match(run.stderr, `page ${last} of region 0`);
  assert.not.ok(existsSync(dir.file('restored.img')), 'nothing was dumped');
}));

test('a header naming a guest larger than the host allows is refused before anything is allocated', deadline(30_000, async () => {
  // A valid header and trailer over a sparse file of a terabyte: only the size check stands in the way.
  const huge = planSaveLayout([{ id: 0, name: 'ram0', kind: 'ram', pageSize: 4096, pageCount: 2 ** 28 }], 0);
  const file = dir.file('huge.save');
  writeFileSync(file, encodeSaveHeader(huge));
  truncateSync(file, huge.fileBytes);
  const fd = openSync(file, 'r+');
  writeSync(fd, encodeSaveTrailer({ digest: 0n, pagesWritten: 0 }), 0, SAVE_TRAILER_BYTES, huge.trailerOffset);
  closeSync(fd);
  const run = await restore(file, 0);
  assert.is(run.code, 1, run.stderr);
  assert.match(run.stderr, 'MS_ERR_MEMORY_ALLOCATION');
}));

test('a damaged save file is refused with its named error before the guest runs', deadline(90_000, async () => {
  const c: GuestCase = { seed: 205 };
  const { file, report } = await save(c);
  const damaged = dir.file('damaged.save');
  const refuse = async (what: string, damage: () => void, code: string, names?: RegExp): Promise<void> => {
    copyFileSync(file, damaged);
    damage();
    const run = await restore(damaged, 10);
    assert.is(run.code, 1, `${what}: exit ${run.code}; ${run.stderr}`);
    assert.match(run.stderr, code, `${what}: ${run.stderr}`);
    if (names !== undefined) assert.match(run.stderr, names, `${what}: ${run.stderr}`);
    assert.not.ok(existsSync(dir.file('restored.img')), `${what}: nothing was dumped`);
  };
  const flip = (offset: number): (() => void) => () => {
    const b = readFileSync(damaged);
    b[offset] ^= 0x10;
    writeFileSync(damaged, b);
  };
  // Page 37 of region 0 is at the first data offset (64 KiB) + 37 pages.
  await refuse('a flipped page byte', flip(65536 + 37 * 4096 + 100), 'MS_ERR_SAVE_FILE_CORRUPT', /page 37 of region 0/);
  // The hash table follows the 16 MiB of pages.
  await refuse('a flipped hash byte', flip(65536 + 16 * 2 ** 20 + 8 * 9 + 3), 'MS_ERR_SAVE_FILE_CORRUPT', /page 9 of region 0/);
  await refuse('a flipped header byte', flip(20), 'MS_ERR_SAVE_FILE_INVALID');
  await refuse('a flipped trailer byte', flip(report.fileBytes - 20), 'MS_ERR_SAVE_FILE_CORRUPT');
  await refuse('a file cut in its pages', () => truncateSync(damaged, 5 * 2 ** 20), 'MS_ERR_SAVE_FILE_TRUNCATED');
  await refuse('a file missing its trailer (a save that stopped before its end)', () => {
    const b = readFileSync(damaged);
    b.fill(0, report.fileBytes - 32);
    writeFileSync(damaged, b);
  }, 'MS_ERR_SAVE_FILE_TRUNCATED');
  await refuse('a file that is not a save', () => writeFileSync(damaged, Buffer.alloc(SAVE_HEADER_BYTES, 7)), 'MS_ERR_SAVE_FILE_INVALID');
  // The original still restores: the damage was the copies'.
  await assertRestoresExactly(c, file, report.guestSteps, 10);
}));

for (const live of [false, true]) {
  test(`local disks ${live ? 'saved live' : 'saved suspended'} in the file, block by block: the restored guest's RAM and disks equal the replay's`, deadline(60_000, async () => {
    const c: GuestCase = { seed: 204 + Number(live), workload: 'hotset', memory: '16MiB', disks: ['4MiB', '2MiB'], diskFill: '1MiB' };
    const { file, report } = await save(c, ['--dirty-rate', '200000', ...(live ? ['--live'] : [])]);
    // The first pass wrote every RAM page the fill wrote (a mixed fill leaves about a third zero, never
    // written nor sent) and every filled disk block (2 × 256).
    const filled = nonZeroPages(c, 0);
    assert.ok(report.passes[0].pages >= filled + 512, `the first pass wrote ${report.passes[0].pages} pages and blocks; the fill ${filled} pages`);
    mkdirSync(dir.file('disks'));
    await assertRestoresExactly(c, file, report.guestSteps, 20_000, ['--dump-disk', dir.file('disks')]);
    assert.is(diffDisksAgainstReplay(dir.file('disks'), c, report.guestSteps + 20_000), null);
    // The file stays sparse: a 6 MiB pair of disks of which 2 MiB were filled and some blocks written.
    assert.ok(statSync(file).blocks * 512 < statSync(file).size, 'holes where neither RAM nor disk was written');
  }));
}

test('a damaged disk block in the file is refused, naming the disk and block, before the guest runs', deadline(60_000, async () => {
  const c: GuestCase = { seed: 206, workload: 'hotset', memory: '16MiB', disks: ['2MiB'], diskFill: '1MiB' };
  const { file } = await save(c);
  const layout = planSaveLayout([{ id: 0, name: 'ram', kind: 'ram', pageSize: 4096, pageCount: 4096 }, { id: 0x8000, name: 'disk0', kind: 'disk', pageSize: 4096, pageCount: 512 }], 0);
  const fd = openSync(file, 'r+');
  writeSync(fd, new Uint8Array([0x5a]), 0, 1, layout.regions[1].dataOffset + 7 * 4096 + 100);
  closeSync(fd);
  const run = await restore(file, 100, ['--dump-disk', dir.file()]);
  assert.is(run.code, 1);
  assert.match(run.stderr, /MS_ERR_SAVE_FILE_CORRUPT: block 7 of disk 0 does not match its saved hash/);
  assert.not.ok(existsSync(dir.file('restored.img')), 'nothing dumped');
}));

test.run();
