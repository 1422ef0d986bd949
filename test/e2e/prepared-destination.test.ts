// A destination prepared before the migration (`dest --memory SIZE --prealloc`), as a destination
// hypervisor starts with its RAM: the guest arrives bit-identical, the pre-touch is reported as done
// before the migration began (and its peak resident memory covers the guest), and a source whose guest is not that guest is refused while the
// destination keeps waiting for the right one.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Report } from '../../src/index.js';
import { deadline } from '../_support/deadline.js';
import { assertMigratedExactly, migrationFixture, type MigrationCase } from '../_support/migration.js';
import { memshift, startDestination, waitForOutput } from '../_support/processes.js';

const migrate = migrationFixture(test);

test('a live migration into a pre-allocated, pre-touched destination ends identical to replay', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 91, memory: '32MiB', workload: 'hotset', dirtyRate: 20_000, destArgs: ['--memory', '32MiB', '--prealloc'] };
  const r = await migrate(c);
  assertMigratedExactly(r, c);
  const pre = r.dest.report!.prealloc!;
  assert.equal([pre.enabled, pre.beforeMigration], [true, true]);
  // Pre-touched: the destination holds every page of the guest resident.
  const rss = r.dest.report!.peakRssBytes!;
  assert.ok(rss >= 32 * 2 ** 20, `peak RSS ${rss} covers the 32 MiB guest`);
}));

test('a post-copy migration into a prepared 2-region destination ends identical to replay', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 92, mode: 'postcopy', memory: '16MiB', workload: 'uniform', ramRegions: 2, destArgs: ['--memory', '16MiB', '--ram-regions', '2'] };
  assertMigratedExactly(await migrate(c), c);
}));

test('a source with a larger guest is refused and the prepared destination then takes the right one', deadline(120_000, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-prepared-'));
  try {
    const dest = await startDestination(['--memory', '16MiB', '--report', join(dir, 'dest.json')]);
    const guest = ['--seed', '93', '--workload', 'idle', '--quiet'];
    const larger = await memshift(['source', '--connect', `127.0.0.1:${dest.port}`, '--memory', '32MiB', ...guest]).done;
    assert.is(larger.code, 1);
    assert.match(larger.stderr, /MS_ERR_PEER_ERROR: .*MS_ERR_HANDSHAKE_REJECTED: .*8192 pages at the source: larger than the pre-allocated guest \(4096\)/);
    await waitForOutput(dest, (t) => t.includes('rejected migration'));
    const right = await memshift(['source', '--connect', `127.0.0.1:${dest.port}`, '--memory', '16MiB', ...guest]).done;
    assert.is(right.code, 0, right.stderr);
    const d = await dest.done;
    assert.is(d.code, 0, d.stderr);
    const report = JSON.parse(readFileSync(join(dir, 'dest.json'), 'utf8')) as Report;
    assert.is(report.outcome, 'completed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}));

test.run();
