// End-to-end post-copy and hybrid: the destination resumes before it has the pages, faults them in
// over the urgent channel while the source pushes the rest, and must end bit-identical to replay.

import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertMigratedExactly, migrationFixture, type MigrationCase, type MigrationOutcome } from '../_support/migration.js';
import { memshift, startDestination, waitForOutput } from '../_support/processes.js';
import { Proxy } from '../_support/proxy.js';
import type { Report } from '../../src/index.js';

const migrate = migrationFixture(test);

/** The oracle, and both sides report the post-copy phase. */
function assertOracle(r: MigrationOutcome, c: MigrationCase): void {
  assertMigratedExactly(r, c);
  assert.ok(r.source.report!.postcopy !== null && r.dest.report!.postcopy !== null, 'both report the post-copy phase');
}

for (const [seed, hotSize] of [[51, '4MiB'], [52, '4MiB'], [53, '48MiB']] as const) {
  test(`post-copy with a ${hotSize} hot set ends identical to replay (seed ${seed})`, async () => {
    const c: MigrationCase = { seed, mode: 'postcopy', memory: '64MiB', workload: 'hotset', hotSize, runSteps: 200_000 };
    const r = await migrate(c);
    assertOracle(r, c);
    const dst = r.dest.report!.postcopy!;
    assert.ok(dst.faults > 0, 'the resumed guest faulted');
    // A request still in flight when the last page arrives by push is never served: at most that one.
    const served = r.source.report!.postcopy!.pagesRequested;
    assert.ok(served <= dst.pagesRequested && served >= dst.pagesRequested - 1, `source served ${served} of ${dst.pagesRequested} requests`);
    assert.ok(r.source.report!.downtimeMs! < r.source.report!.totalTimeMs / 2, 'downtime is the switch, not the copy');
  });
}

test('post-copy of a uniform writer at full speed ends identical to replay', async () => {
  const c: MigrationCase = { seed: 54, mode: 'postcopy', memory: '32MiB', workload: 'uniform', runSteps: 100_000 };
  assertOracle(await migrate(c), c);
});

test('hybrid switches to post-copy after --postcopy-after iterations; only pages dirty at the switch are missing', async () => {
  const c: MigrationCase = {
    seed: 55, mode: 'hybrid', memory: '64MiB', workload: 'hotset', hotSize: '4MiB', dirtyRate: 20000, maxBandwidth: '200MiB',
    sourceArgs: ['--postcopy-after', '2'], downtimeLimit: 1,
  };
  const r = await migrate(c);
  assertOracle(r, c);
  const src = r.source.report!;
  assert.is(src.switchoverReason!.rule, 'postcopy-after');
  const precopy = src.iterations.slice(0, -1);
  assert.is(precopy.length, 2);
  const missing = src.postcopy!.pagesPushed + src.postcopy!.pagesRequested;
  assert.ok(missing < 16384 / 2, `${missing} pages moved in post-copy, fewer than half the guest`);
});

test('hybrid switches to post-copy when pre-copy stalls', async () => {
  const c: MigrationCase = {
    seed: 56, mode: 'hybrid', memory: '16MiB', workload: 'uniform', dirtyRate: 50000, downtimeLimit: 1, maxBandwidth: '50MiB',
    sourceArgs: ['--xbzrle', 'off'],
  };
  const r = await migrate(c);
  assertOracle(r, c);
  const reason = r.source.report!.switchoverReason!;
  assert.is(reason.action, 'postcopy');
  assert.ok(['dirty-rate', 'no-progress'].includes(reason.rule), reason.rule);
});

test('live migration with --on-stall postcopy finishes in post-copy', async () => {
  const c: MigrationCase = {
    seed: 57, mode: 'live', onStall: 'postcopy', memory: '16MiB', workload: 'uniform', dirtyRate: 50000, downtimeLimit: 1,
    maxBandwidth: '50MiB', sourceArgs: ['--xbzrle', 'off'],
  };
  const r = await migrate(c);
  assertOracle(r, c);
  assert.is(r.source.report!.switchoverReason!.action, 'postcopy');
});

test('urgent answers overtake the bulk push: a fault is served while pushed pages are still queued', async () => {
  // The push is capped at 16 MiB/s, so 64 MiB takes ~4 s; the urgent channel is not capped.
  const c: MigrationCase = { seed: 58, mode: 'postcopy', memory: '64MiB', workload: 'uniform', maxBandwidth: '16MiB', runSteps: 20_000 };
  const r = await migrate(c);
  assertOracle(r, c);
  const p = r.dest.report!.postcopy!;
  assert.ok(p.pagesRequested > 0 && (p.pagesAnswered ?? 0) > 0, `requested ${p.pagesRequested}, answered ${p.pagesAnswered}`);
  assert.ok((p.pushedBeforeFirstAnswer ?? Infinity) < p.pagesPushed / 4,
    `first answer written after ${p.pushedBeforeFirstAnswer} of ${p.pagesPushed} pushed pages: it did not wait behind the push`);
  assert.ok(p.faults >= p.pagesAnswered!, 'every answered page was a fault');
});

test('a link cut mid post-copy pauses both sides: alive, paused, nothing claimed complete', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-cut-'));
  try {
    const dest = await startDestination(['--report', join(dir, 'dest.json'), '--run-steps', '1000000']);
    const proxy = await Proxy.start(dest.port);
    const source = memshift([
      'source', '--connect', `127.0.0.1:${proxy.port}`, '--memory', '64MiB', '--seed', '59', '--workload', 'uniform', '--quiet',
      '--mode', 'postcopy', '--max-bandwidth', '8MiB', '--warmup', '50', '--report', join(dir, 'src.json'),
    ]);
    await waitForOutput(dest, (t) => t.includes('guest resumed in post-copy'));
    await new Promise((res) => setTimeout(res, 300));
    proxy.cut();
    await waitForOutput(source, (t) => t.includes('MS_ERR_POSTCOPY_PAUSED'));
    await waitForOutput(dest, (t) => t.includes('MS_ERR_POSTCOPY_PAUSED'));
    // Still alive a while later: they keep their halves of the guest for recovery.
    await new Promise((res) => setTimeout(res, 500));
    assert.is(source.proc.exitCode, null, 'source process is alive');
    assert.is(dest.proc.exitCode, null, 'destination process is alive');
    const reportOf = (f: string): Report => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Report;
    assert.ok(existsSync(join(dir, 'src.json')) && existsSync(join(dir, 'dest.json')));
    for (const r of [reportOf('src.json'), reportOf('dest.json')]) {
      assert.is(r.outcome, 'paused', `${r.role} outcome`);
      assert.is(r.error!.code, 'MS_ERR_POSTCOPY_PAUSED', `${r.role} code`);
    }
    assert.ok(reportOf('dest.json').postcopy!.faults > 0, 'the guest ran and faulted before the cut');
    source.proc.kill('SIGTERM');
    dest.proc.kill('SIGTERM');
    const [s, d] = await Promise.all([source.done, dest.done]);
    assert.is(s.code, 1, 'a paused source that is stopped does not claim success');
    assert.is(d.code, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
