// `memshift report --html` in a real browser: a live migration's source report rendered as a page,
// loaded by headless Chromium (Debian's, installed by .ci/run), whose DOM after the page's script ran
// must show the report: a timeline bar per pass with its page count, the downtime, a table row per
// pass, the rate lines. The page makes no network fetch. Chromium is ended by PID, whatever happens.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deadline } from '../_support/deadline.js';
import { migrationFixture } from '../_support/migration.js';
import { memshift } from '../_support/processes.js';
import { renderedDom } from '../_support/chromium.js';

const migrate = migrationFixture(test);
test('a live migration\'s report, drawn by headless Chromium: a bar and a row per pass, the downtime, the rate lines', deadline(90_000, async () => {
  const r = await migrate({ seed: 91, memory: '32MiB', dirtyRate: 100_000, downtimeLimit: 5 });
  assert.is(r.source.code, 0, r.source.stderr);
  const report = r.source.report!;
  assert.ok(report.iterations.length >= 2, `a live migration of a dirtying guest takes several passes (${report.iterations.length})`);
  const page = await memshift(['report', '--html', join(r.dir, 'source.json')]).done;
  assert.is(page.code, 0, page.stderr);
  assert.not.match(page.stdout, /(src|href)=["']https?:/, 'no network fetch');
  const file = join(r.dir, 'report.html');
  writeFileSync(file, page.stdout);
  const dom = await renderedDom(`file://${file}`);
  assert.match(dom, /data-rendered="yes"/, 'the page\'s script ran');
  const bars = [...dom.matchAll(/<rect class="pass"[^>]*data-iteration="(\d+)" data-pages="(\d+)"/g)];
  assert.equal(bars.map((b) => [Number(b[1]), Number(b[2])]), report.iterations.map((p) => [p.iteration, p.pages]), 'a bar per pass, as tall as its pages');
  assert.is((dom.match(/<tr class="pass-row">/g) ?? []).length, report.iterations.length, 'a table row per pass');
  assert.match(dom, new RegExp(`<rect class="downtime"[^>]*data-ms="${report.downtimeMs}"`), 'the downtime after the passes');
  assert.match(dom, new RegExp(`<td id="downtime">${report.downtimeMs!.toFixed(1)} ms</td>`));
  assert.match(dom, /<td id="outcome">completed<\/td>/);
  assert.is((dom.match(new RegExp(`<polyline class="(bandwidth|dirty)"[^>]*data-points="${report.iterations.length}"`, 'g')) ?? []).length, 2, 'bandwidth and dirty rate per pass');
}));

test('a report whose text holds markup is shown as text, not run', deadline(30_000, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-report-html-'));
  try {
    const file = join(dir, 'r.json');
    writeFileSync(file, JSON.stringify({
      schemaVersion: 2, role: 'source', mode: 'live', outcome: 'failed', error: { code: 'MS_ERR_X', message: '</script><img src=x onerror="document.body.dataset.pwned=1">' },
      totalTimeMs: 10, downtimeMs: null, predictedDowntimeMs: null, bytesTransferred: 0, guestBytes: 0, pagesTransferred: 0, iterations: [], switchoverReason: null, pausedAtEpochMs: null,
    }));
    const page = await memshift(['report', '--html', file]).done;
    assert.is(page.code, 0, page.stderr);
    writeFileSync(join(dir, 'r.html'), page.stdout);
    const dom = await renderedDom(`file://${join(dir, 'r.html')}`);
    assert.match(dom, /data-rendered="yes"/);
    assert.not.match(dom, /data-pwned/, 'the error message did not run');
    assert.match(dom, /failed \(MS_ERR_X: &lt;\/script&gt;&lt;img/, 'it is shown as text');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}));

test.run();
