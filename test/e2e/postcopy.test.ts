// End-to-end post-copy and hybrid: the destination resumes before it has the pages, faults them in
// over the urgent channel while the source pushes the rest, and must end bit-identical to replay.

import { mkdtempSync, readFileSync, rmSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertMigratedExactly, migrationFixture, type MigrationCase, type MigrationOutcome } from '../_support/migration.js';
import { memshift, startDestination, waitForOutput } from '../_support/processes.js';
import { Proxy } from '../_support/proxy.js';
import type { Report } from '../../src/index.js';
import { deadline } from '../_support/deadline.js';

const migrate = migrationFixture(test);

/**
 * The oracle, and both sides report the post-copy phase. The push is the last record: nothing is left
 * to go after it (ETA 0), and the guest ran on the destination meanwhile, so the source has no step
 * rate for it and the destination has one since its resume.
 */
function assertOracle(r: MigrationOutcome, c: MigrationCase): void {
  assertMigratedExactly(r, c);
  const src = r.source.report!;
  assert.ok(src.postcopy !== null && r.dest.report!.postcopy !== null, 'both report the post-copy phase');
  const push = src.iterations[src.iterations.length - 1];
  assert.equal([push.etaMs, push.guestStepsPerSec], [0, null]);
  assert.ok(src.completedAtMs !== null && src.completedAtMs >= push.endedAtMs && src.completedAtMs <= src.totalTimeMs, `completed at ${src.completedAtMs} ms (POSTCOPY_DONE after the push)`);
  assert.is(src.guestStepsPerSec.perPass.length, src.iterations.length - 1, 'a rate for every pass but the push');
  const after = r.dest.report!.guestStepsPerSec.afterResume;
  assert.ok(after !== null && Number.isFinite(after) && after >= 0, `destination: after resume ${after}`);
}

/**
 * Post-copy downtime is the switch, not the copy: no page moves while the guest is paused (every page
 * still on the source is pushed or faulted after the destination resumed), and the disjoint parts of
 * the breakdown fit in the downtime.
 */
function assertDowntimeIsTheSwitch(src: Report): void {
  const b = src.downtimeBreakdown!;
  assert.is(b.finalPages, 0, 'no pages copied during the downtime');
  assert.is(b.finalPagesMs, 0);
  const parts = b.pauseMs + b.deviceStateMs + b.digestCheckMs + b.resumeMs;
  assert.ok(src.downtimeMs !== null && parts <= src.downtimeMs, `disjoint parts sum to ${parts} ms, downtime ${src.downtimeMs} ms`);
}

/** Pages the destination said were still on the source when it resumed (its log line). */
function missingAtResume(r: MigrationOutcome): number {
  const m = /guest resumed in post-copy with (\d+) pages still on the source/.exec(r.dest.stderr);
  assert.ok(m !== null, `destination log: ${r.dest.stderr}`);
  return Number(m![1]);
}

for (const [seed, hotSize] of [[51, '4MiB'], [52, '4MiB'], [53, '48MiB']] as const) {
  test(`post-copy with a ${hotSize} hot set ends identical to replay (seed ${seed})`, deadline(120_000, async () => {
    const c: MigrationCase = { seed, mode: 'postcopy', memory: '64MiB', workload: 'hotset', hotSize, runSteps: 200_000 };
    const r = await migrate(c);
    assertOracle(r, c);
    const dst = r.dest.report!.postcopy!;
    assert.ok(dst.faults > 0, 'the resumed guest faulted');
    // A request still in flight when the last page arrives by push is never served: at most that one.
    const served = r.source.report!.postcopy!.pagesRequested;
    assert.ok(served <= dst.pagesRequested && served >= dst.pagesRequested - 1, `source served ${served} of ${dst.pagesRequested} requests`);
    assertDowntimeIsTheSwitch(r.source.report!);
  }));
}

test('post-copy of a uniform writer at full speed ends identical to replay', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 54, mode: 'postcopy', memory: '32MiB', workload: 'uniform', runSteps: 100_000 };
  assertOracle(await migrate(c), c);
}));

test('hybrid of a sweeping writer (pages in order, as QEMU\'s peer guest) ends identical to replay', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 55, mode: 'hybrid', memory: '32MiB', workload: 'sweep', runSteps: 100_000 };
  assertOracle(await migrate(c), c);
}));

// Hybrid with the switch decided by --postcopy-after, by construction: a uniform writer at 2500 steps/s
// over 32 MiB on a link capped at 32 MiB/s leaves hundreds of dirty pages after each pass, so with a
// 1 ms limit rule downtime-limit cannot fire first, and the dirty rate stays far below the link.
test('hybrid switches to post-copy after --postcopy-after iterations; only pages dirty at the switch move in post-copy', deadline(120_000, async () => {
  const c: MigrationCase = {
    seed: 55, mode: 'hybrid', memory: '32MiB', workload: 'uniform', dirtyRate: 2500, maxBandwidth: '32MiB', runSteps: 2000,
    sourceArgs: ['--postcopy-after', '2'], downtimeLimit: 1,
  };
  const r = await migrate(c);
  assertOracle(r, c);
  const src = r.source.report!;
  assert.is(src.switchoverReason!.rule, 'postcopy-after');
  assert.is(src.switchoverReason!.action, 'postcopy');
  const precopy = src.iterations.slice(0, -1);
  assert.is(precopy.length, 2);
  const missing = missingAtResume(r);
  assert.ok(missing > 0 && missing < 8192, `${missing} of 8192 pages were still on the source at the switch`);
  const dst = r.dest.report!.postcopy!;
  assert.is(dst.pagesPushed + (dst.pagesAnswered ?? 0), missing, 'the destination wrote each missing page exactly once, by push or by answer');
  assertDowntimeIsTheSwitch(src);
}));

// A stall by construction (as in live-migration.test.ts): a uniform writer at 50 000 steps/s over
// 16 MiB without XBZRLE on a 50 MiB/s link never meets the 1 ms limit. Pass 1 takes ~0.33 s, in which
// ~16 000 uniform steps dirty ~98 % of the 4096 pages again: under the post-copy policy that alone fires
// dirty-rate after pass 1. With --max-iterations 1 the cap (rule 3) fires first.
const stalled = (seed: number, maxIterations = 1): MigrationCase => ({
  seed, memory: '16MiB', workload: 'uniform', dirtyRate: 50000, downtimeLimit: 1, maxBandwidth: '50MiB', maxIterations,
  sourceArgs: ['--xbzrle', 'off'],
});

test('hybrid switches to post-copy when pre-copy stalls at the iteration cap', deadline(120_000, async () => {
  const c: MigrationCase = { ...stalled(56), mode: 'hybrid' };
  const r = await migrate(c);
  assertOracle(r, c);
  const reason = r.source.report!.switchoverReason!;
  assert.equal({ rule: reason.rule, action: reason.action }, { rule: 'max-iterations', action: 'postcopy' });
  assert.is(r.source.report!.iterations.length, 1 + 1, 'one pre-copy pass, then the post-copy push');
}));

test('hybrid goes post-copy after pass 1 when the guest dirtied again nearly all that pass 1 sent', deadline(120_000, async () => {
  const c: MigrationCase = { ...stalled(59, 10), mode: 'hybrid' };
  const r = await migrate(c);
  assertOracle(r, c);
  const src = r.source.report!;
  const reason = src.switchoverReason!;
  assert.equal({ rule: reason.rule, action: reason.action }, { rule: 'dirty-rate', action: 'postcopy' });
  const pass1 = src.iterations[0];
  assert.ok(pass1.dirtyPages >= 0.9 * pass1.pages, `${pass1.dirtyPages} of the ${pass1.pages} pages pass 1 sent were dirty again`);
  assert.is(src.iterations.length, 1 + 1, 'one pre-copy pass, then the post-copy push');
}));

test('live migration with --on-stall postcopy finishes in post-copy when it stalls at the iteration cap', deadline(120_000, async () => {
  const c: MigrationCase = { ...stalled(57), mode: 'live', onStall: 'postcopy' };
  const r = await migrate(c);
  assertOracle(r, c);
  const reason = r.source.report!.switchoverReason!;
  assert.equal({ rule: reason.rule, action: reason.action }, { rule: 'max-iterations', action: 'postcopy' });
}));

test('urgent answers overtake the bulk push: a fault is served while pushed pages are still queued', deadline(120_000, async () => {
  // The push is capped at 16 MiB/s, so 64 MiB takes ~4 s; the urgent channel is not capped.
  const c: MigrationCase = { seed: 58, mode: 'postcopy', memory: '64MiB', workload: 'uniform', maxBandwidth: '16MiB', runSteps: 20_000 };
  const r = await migrate(c);
  assertOracle(r, c);
  const p = r.dest.report!.postcopy!;
  assert.ok(p.pagesRequested > 0 && (p.pagesAnswered ?? 0) > 0, `requested ${p.pagesRequested}, answered ${p.pagesAnswered}`);
  assert.ok((p.pushedBeforeFirstAnswer ?? Infinity) < p.pagesPushed / 4,
    `first answer written after ${p.pushedBeforeFirstAnswer} of ${p.pagesPushed} pushed pages: it did not wait behind the push`);
  assert.ok(p.faults >= p.pagesAnswered!, 'every answered page was a fault');
}));

test('a link cut mid post-copy pauses both sides: alive, paused, dumped, nothing claimed complete, exit status 4', deadline(120_000, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-cut-'));
  try {
    const dest = await startDestination(['--report', join(dir, 'dest.json'), '--run-steps', '1000000', '--dump-memory', join(dir, 'dest.img')]);
    const proxy = await Proxy.start(dest.port);
    const source = memshift([
      'source', '--connect', `127.0.0.1:${proxy.port}`, '--memory', '64MiB', '--seed', '59', '--workload', 'uniform', '--quiet',
      '--mode', 'postcopy', '--max-bandwidth', '8MiB', '--warmup', '50', '--report', join(dir, 'src.json'), '--dump-memory', join(dir, 'src.img'),
    ]);
    await waitForOutput(dest, (t) => t.includes('guest resumed in post-copy'));
    // Barrier: the push is under way (1 MiB more through the proxy, at most 8 MiB/s) before the cut.
    await proxy.holdAfter(proxy.forwarded + 2 ** 20);
    proxy.cut();
    // Each side reports the pause, then announces it holds its pages until stopped (its last line).
    await waitForOutput(source, (t) => t.includes('MS_ERR_POSTCOPY_PAUSED') && t.includes('until this process is stopped'));
    await waitForOutput(dest, (t) => t.includes('MS_ERR_POSTCOPY_PAUSED') && t.includes('until this process is stopped'));
    // Both hold their halves of the guest for recovery: still running after reporting the pause.
    for (const [name, p] of [['source', source.proc], ['destination', dest.proc]] as const) {
      assert.ok(p.exitCode === null && p.signalCode === null, `${name} process is alive`);
    }
    const reportOf = (f: string): Report => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Report;
    assert.ok(existsSync(join(dir, 'src.json')) && existsSync(join(dir, 'dest.json')));
    for (const r of [reportOf('src.json'), reportOf('dest.json')]) {
      assert.is(r.outcome, 'paused', `${r.role} outcome`);
      assert.is(r.error!.code, 'MS_ERR_POSTCOPY_PAUSED', `${r.role} code`);
    }
    assert.ok(reportOf('dest.json').postcopy!.faults > 0, 'the guest ran and faulted before the cut');
    // Each side dumped what it holds before waiting: the whole RAM's size, every region in order.
    for (const img of ['src.img', 'dest.img']) assert.is(statSync(join(dir, img)).size, 64 * 2 ** 20, img);
    source.proc.kill('SIGTERM');
    dest.proc.kill('SIGTERM');
    const [s, d] = await Promise.all([source.done, dest.done]);
    // Exit status 4: paused post-copy (not 1, which says the guest runs on the source).
    assert.equal([s.code, s.signal], [4, null], 'a paused source that is stopped handles the signal and says it was paused');
    assert.equal([d.code, d.signal], [4, null]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}));

test.run();
