// The examples the README's "Embedding memshift" points to run as they are, and do what they claim: a
// guest memshift does not know (custom-source.ts) arrives bit-identical, whichever way it reports its
// dirty pages; a post-copy target (postcopy-target.ts) faults pages in through the page gate and reads
// exactly what the source held; a cancelled migration (cancel-and-progress.ts) rejects with its code and
// leaves the source guest running and untouched. And they need nothing but the package's public entry.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { deadline } from '../_support/deadline.js';
import { main as customSource } from './custom-source.js';
import { main as postcopyTarget } from './postcopy-target.js';
import { main as cancelAndProgress } from './cancel-and-progress.js';

for (const dirtyLog of ['mark', 'external'] as const) {
  test(`custom source (${dirtyLog === 'mark' ? 'markDirty after each write' : 'external log merged in collectDirtyLog'}): the destination's RAM at resume is the source's at the switchover`, deadline(30_000, async () => {
    const r = await customSource({ dirtyLog });
    assert.equal([r.report.outcome, r.destinationReport.outcome], ['completed', 'completed']);
    assert.is(r.destinationSha256AtResume, r.sourceSha256, 'SHA-256 of all RAM');
    assert.is(r.destinationReport.digest, r.report.digest);
    // The vCPU wrote during the first pass, and those pages went again in a later pass.
    assert.ok(r.report.iterations.length >= 2 && r.report.iterations.slice(1).some((it) => it.pages > 0), JSON.stringify(r.report.iterations.map((it) => it.pages)));
    assert.ok(r.ticksAtSwitchover > 0, 'the source guest ran before and during the migration');
    assert.ok(r.destinationTicks > r.ticksAtSwitchover, `the destination went on from tick ${r.ticksAtSwitchover} (device state), now ${r.destinationTicks}`);
    assert.ok(r.progressSamples > 0);
  }));
}

test('post-copy target: the resumed vCPU faults pages in through the page gate, reads what the source held, and keeps its own writes', deadline(30_000, async () => {
  const r = await postcopyTarget();
  assert.equal([r.report.mode, r.report.outcome, r.destinationReport.outcome], ['postcopy', 'completed', 'completed']);
  const reported = r.destinationReport.postcopy?.faults ?? 0;
  assert.ok(reported > 0, `faults in the report: ${reported}`);
  // The mailbox may count one more: a check that missed the last page's arrival by a hair still posts it.
  assert.ok(r.faults >= reported && r.faults <= reported + 1, `mailbox ${r.faults}, report ${reported}`);
  assert.is(r.faultLatenciesUs.length, r.faults, 'one blocked time per fault');
  assert.is(r.pagesReadAsOnSource, r.pages, 'pages read as the source held them at the switchover');
  assert.is(r.pagesKeptWrite, r.pages, 'pages holding the source bytes plus the vCPU stamp');
}));

test('cancel mid-pass: migrate() rejects with MS_ERR_CANCELLED and the report, the source guest runs on untouched, the destination never runs it', deadline(30_000, async () => {
  const r = await cancelAndProgress();
  assert.is(r.code, 'MS_ERR_CANCELLED');
  assert.equal([r.report?.outcome, r.report?.error?.code], ['cancelled', 'MS_ERR_CANCELLED']);
  const at = r.abortedAt;
  assert.ok(at !== null && at.phase === 'precopy' && at.iteration === 1 && at.bytesTransferred > 0 && at.remainingPages > 0, `aborted inside the first pass: ${JSON.stringify(at)}`);
  assert.equal([r.sourceRunning, r.sourceMatchesReplay, r.throttles], [true, true, []]);
  assert.ok(r.ticksAfterCancel > 0, 'the source vCPU kept ticking');
  assert.equal([r.destinationReport.outcome, r.destinationReport.error?.code, r.destinationRunning], ['failed', 'MS_ERR_PEER_ERROR', false]);
  assert.match(r.destinationReport.error!.message, /MS_ERR_CANCELLED/);
  // What a consumer of the callbacks sees: pre-copy entered, samples from it, and the outcome last.
  const first = r.events[0];
  const last = r.events[r.events.length - 1];
  assert.equal(first.type === 'state' && first.state, 'precopy');
  assert.equal(last.type === 'outcome' && [last.outcome, last.error?.code], ['cancelled', 'MS_ERR_CANCELLED']);
  assert.ok(r.progress.some((p) => p.phase === 'precopy' && p.bytesTransferred > 0));
  assert.is(r.progress[r.progress.length - 1].phase, 'cancelled');
}));

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const EXAMPLES = ['custom-source', 'postcopy-target', 'postcopy-vcpu', 'cancel-and-progress'];

test('the examples use the public API only: they compile as an outside project that imports `memshift` (strict, ES lib, skipLibCheck off)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-examples-'));
  try {
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(ROOT, join(dir, 'node_modules', 'memshift'));
    symlinkSync(join(ROOT, 'node_modules', '@types'), join(dir, 'node_modules', '@types'));
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
    for (const name of EXAMPLES) {
      const source = readFileSync(join(ROOT, 'test', 'examples', `${name}.ts`), 'utf8');
      assert.ok(source.includes("from '../../src/index.js'"), `${name} imports the public entry`);
      // Any other import of the package's own files would not resolve from the outside project.
      writeFileSync(join(dir, `${name}.ts`), source.replaceAll("'../../src/index.js'", "'memshift'"));
    }
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, lib: ['ES2023'], types: ['node'], noEmit: true, skipLibCheck: false },
      include: ['*.ts'],
    }));
    const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript')), '..', 'bin', 'tsc');
    let output = '';
    try {
      execFileSync(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      const e = err as { stdout: string; stderr: string };
      output = `${e.stdout}${e.stderr}` || String(err);
    }
    assert.is(output, '');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
