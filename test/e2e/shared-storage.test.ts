// Guests with disks on shared storage, between two processes: the images never move, the lease beside
// each one changes hands inside the switchover, and after the destination ran on, its RAM and every
// disk equal an uninterrupted replay bit for bit, in every mode. A third runner is refused while the
// lease is held; a destination that does not reach the storage is refused at the handshake, and the
// source keeps its guest; a runner whose lease is broken stops its guest and never hands it over.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { deadline } from '../_support/deadline.js';
import { assertMigratedExactly, diffAgainstReplay, diffDisksAgainstReplay, guestArgs, readReport, removeDir, runMigration, writtenBlocks, type MigrationCase } from '../_support/migration.js';
import { perTestDir } from '../_support/per-test-dir.js';
import { memshift, startDestination, waitForOutput } from '../_support/processes.js';
import { breakLease, readLease, takeLease } from '../../src/storage/lease.js';

const dir = perTestDir(test, 'memshift-shared-');

function disksDir(): string {
  const d = dir.file('disks');
  mkdirSync(d, { recursive: true });
  return d;
}

function sharedCase(mode: NonNullable<MigrationCase['mode']>, seed: number, disks: string): MigrationCase {
  return {
    seed, memory: '16MiB', disks: ['4MiB', '1MiB'], mode, dirtyRate: 200_000, runSteps: 30_000,
    sourceArgs: ['--storage', 'shared', '--disk-dir', disks, '--downtime-limit', '50', ...(mode === 'hybrid' ? ['--postcopy-after', '1'] : [])],
    destArgs: ['--storage', 'shared', '--disk-dir', disks],
  };
}

for (const [i, mode] of (['live', 'cold', 'warm', 'postcopy', 'hybrid'] as const).entries()) {
  test(`${mode} over shared storage: RAM and both disks equal the replay after the destination ran on; the lease went across and was released`, deadline(60_000, async () => {
    const disks = disksDir();
    const c = sharedCase(mode, 700 + i, disks);
    const r = await runMigration(c);
    try {
      assertMigratedExactly(r, c);
      const steps = r.dest.report!.guestSteps;
      assert.is(diffDisksAgainstReplay(disks, c, steps), null, 'disk images after the destination ran on');
      assert.ok(writtenBlocks(join(disks, 'disk0.img')) > 10, 'the workload wrote disk blocks');
      // Generation 1: the source took it; 2: handed to the destination; 3: released when it stopped.
      for (const image of ['disk0.img', 'disk1.img']) {
        const lease = readLease(join(disks, image))!;
        assert.is(lease.owner, '', `${image}: free once the destination stopped`);
        assert.is(lease.generation, 3, `${image}: taken, handed over, released`);
      }
    } finally {
      removeDir(r.dir);
    }
  }));
}

test('a third runner of the same images is refused with MS_ERR_LEASE_HELD while the source holds them, and touches nothing', deadline(60_000, async () => {
  const disks = disksDir();
  const c: MigrationCase = { seed: 41, memory: '8MiB', disks: ['2MiB'] };
  const dest = await startDestination(['--storage', 'shared', '--disk-dir', disks, '--run-steps', '1000']);
  // A long warm-up: the source holds the lease and runs its guest while the third one tries.
  const first = memshift(['source', '--connect', `127.0.0.1:${dest.port}`, ...guestArgs(c), '--storage', 'shared', '--disk-dir', disks, '--warmup', '4000', '--dirty-rate', '20000', '--quiet', '--report', dir.file('first.json')]);
  const image = join(disks, 'disk0.img');
  const until = Date.now() + 20_000;
  while (!(existsSync(image) && writtenBlocks(image) > 0) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  const holder = readLease(image)!.owner;
  assert.match(holder, /^source .* pid \d+ /);
  const third = await memshift(['source', '--connect', `127.0.0.1:${dest.port}`, ...guestArgs(c), '--storage', 'shared', '--disk-dir', disks, '--quiet']).done;
  assert.is(third.code, 1, third.stderr);
  assert.match(third.stderr, /MS_ERR_LEASE_HELD/);
  assert.ok(third.stderr.includes(holder), `the refusal names the holder: ${third.stderr}`);
  assert.is(statSync(image).size, 2 * 2 ** 20, 'the image was not recreated');
  assert.is(readLease(image)!.owner, holder, 'the lease is still the first runner\'s');
  // The first migration goes on undisturbed.
  const [f, d] = await Promise.all([first.done, dest.done]);
  assert.is(f.code, 0, f.stderr);
  assert.is(d.code, 0, d.stderr);
}));

test('a destination that does not reach the shared storage is refused at the handshake; the source keeps its guest and its lease', deadline(60_000, async () => {
  const disks = disksDir();
  const c: MigrationCase = { seed: 42, memory: '8MiB', disks: ['1MiB'] };
  const dest = await startDestination(['--report', dir.file('dest.json')]);
  const source = await memshift(['source', '--connect', `127.0.0.1:${dest.port}`, ...guestArgs(c), '--storage', 'shared', '--disk-dir', disks, '--warmup', '100',
    '--dirty-rate', '20000', '--quiet', '--report', dir.file('source.json'), '--dump-memory', dir.file('source.img')]).done;
  assert.is(source.code, 1, source.stderr);
  assert.match(source.stderr, /MS_ERR_HANDSHAKE_REJECTED.*shared storage/);
  const sr = readReport(dir.file('source.json'))!;
  assert.is(sr.outcome, 'failed');
  // The guest ran on here and stopped only to be dumped: its RAM and disk are its replay's.
  assert.is(diffAgainstReplay(dir.file('source.img'), c, sr.guestSteps), null);
  assert.is(diffDisksAgainstReplay(disks, c, sr.guestSteps), null);
  const lease = readLease(join(disks, 'disk0.img'))!;
  assert.is(lease.generation, 2, 'taken, then released at exit: never handed over');
  assert.is(lease.owner, '');
  await dest.done;
}));

test('a source whose lease is broken stops its guest, never hands the lease over, and the destination never runs it', deadline(60_000, async () => {
  const disks = disksDir();
  const c: MigrationCase = { seed: 43, memory: '8MiB', disks: ['1MiB'] };
  const dest = await startDestination(['--storage', 'shared', '--disk-dir', disks, '--report', dir.file('dest.json'), '--idle-timeout', '3000']);
  const source = memshift(['source', '--connect', `127.0.0.1:${dest.port}`, ...guestArgs(c), '--storage', 'shared', '--disk-dir', disks, '--lease-ttl', '300',
    '--warmup', '2500', '--dirty-rate', '20000', '--quiet', '--report', dir.file('source.json')]);
  const image = join(disks, 'disk0.img');
  const until = Date.now() + 20_000;
  while (!existsSync(`${image}.lease.1`) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  const broken = await memshift(['lease', 'break', image]).done;
  assert.is(broken.code, 0, broken.stderr);
  const [s] = await Promise.all([source.done, dest.done]);
  assert.is(s.code, 3, `in doubt: the guest stays paused (${s.stderr})`);
  assert.match(s.stderr, /MS_ERR_LEASE_LOST/);
  const sr = readReport(dir.file('source.json'))!;
  assert.is(sr.outcome, 'in-doubt');
  const dr = readReport(dir.file('dest.json'));
  assert.ok(dr === null || dr.outcome !== 'completed', `the destination never ran the guest (${dr?.outcome})`);
  // Nobody holds it: the break made it free, and nothing took it since.
  assert.is(readLease(image)!.owner, '');
}));

test('save on shared storage refers to the images; restore takes their lease and runs on to the replay\'s RAM and disk; a held lease refuses it', deadline(60_000, async () => {
  const disks = disksDir();
  const c: MigrationCase = { seed: 44, memory: '16MiB', disks: ['2MiB'] };
  const saved = await memshift(['save', '--to', dir.file('g.save'), ...guestArgs(c), '--storage', 'shared', '--disk-dir', disks, '--warmup', '300', '--dirty-rate', '200000', '--quiet', '--report', dir.file('save.json')]).done;
  assert.is(saved.code, 0, saved.stderr);
  const image = join(disks, 'disk0.img');
  assert.is(readLease(image)!.owner, '', 'the saving runner freed the lease when it stopped');
  const before = readFileSync(image);
  // Someone else runs the guest from these images: the restore must not.
  takeLease(image, 'another runner', 30_000);
  const refused = await memshift(['restore', dir.file('g.save'), '--storage', 'shared', '--disk-dir', disks, '--run-steps', '1000', '--quiet']).done;
  assert.is(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /MS_ERR_LEASE_HELD.*another runner/);
  assert.ok(readFileSync(image).equals(before), 'the refused restore wrote nothing');
  breakLease(image);
  mkdirSync(dir.file('out'));
  const restored = await memshift(['restore', dir.file('g.save'), '--storage', 'shared', '--disk-dir', disks, '--run-steps', '40000', '--quiet',
    '--dump-memory', dir.file('r.img'), '--dump-disk', dir.file('out'), '--report', dir.file('r.json')]).done;
  assert.is(restored.code, 0, restored.stderr);
  const steps = (JSON.parse(readFileSync(dir.file('r.json'), 'utf8')) as { guestSteps: number }).guestSteps;
  assert.is(diffAgainstReplay(dir.file('r.img'), c, steps), null);
  assert.is(diffDisksAgainstReplay(dir.file('out'), c, steps), null);
  assert.ok(writtenBlocks(dir.file('out', 'disk0.img')) > 10);
}));

test.run();
