// Recovering a lost link end to end. Post-copy: the link is lost while the destination runs the guest
// on part of its memory, both sides pause with every page kept, the source reconnects (HELLO role
// RECOVER), the destination names the pages it still lacks, and post-copy completes bit-identical to
// replay. Before SWITCHOVER: the pass that lost its link resumes, the destination sending its page
// hashes so that exactly the pages that never landed go again. The cut comes from a proxy between
// them, at a barrier on bytes (not on time); the urgent channel goes to the destination's own port, so
// a proxy cut loses the bulk link and a corrupted page the bulk frame.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Report } from '../../src/index.js';
import { deadline } from '../_support/deadline.js';
import { assertMigratedExactly, readReport, type MigrationCase, type MigrationOutcome } from '../_support/migration.js';
import { perTestDir } from '../_support/per-test-dir.js';
import { memshift, startDestination, waitForOutput, type Running } from '../_support/processes.js';
import { Proxy } from '../_support/proxy.js';

const { file } = perTestDir(test, 'memshift-recover-');
/** Every proxy a test started, closed after it (a listening proxy would keep the runner alive). */
const proxies: Proxy[] = [];
test.after.each(() => {
  while (proxies.length > 0) proxies.pop()!.cut();
});

async function proxyTo(port: number): Promise<Proxy & { port: number }> {
  const p = await Proxy.start(port);
  proxies.push(p);
  return p;
}

interface Started {
  source: Running;
  dest: Running & { port: number };
  proxy: Proxy & { port: number };
}

/** A post-copy (or hybrid) migration through a proxy, both sides recovering for up to `recoverMs`. */
async function start(c: MigrationCase, recoverMs: number, extra: string[] = []): Promise<Started> {
  const dest = await startDestination([
    '--report', file('dest.json'), '--dump-memory', file('dest.img'), '--run-steps', String(c.runSteps), '--recover-timeout', String(recoverMs),
  ]);
  const proxy = await proxyTo(dest.port);
  const source = memshift([
    'source', '--connect', `127.0.0.1:${proxy.port}`, '--memory', c.memory!, '--seed', String(c.seed), '--workload', c.workload!, '--quiet',
    '--mode', c.mode!, '--max-bandwidth', c.maxBandwidth!, '--warmup', '50', '--recover-timeout', String(recoverMs),
    '--report', file('src.json'), '--dump-memory', file('src.img'), ...extra,
  ]);
  return { source, dest, proxy };
}

async function finish(s: Started): Promise<MigrationOutcome> {
  const [src, dst] = await Promise.all([s.source.done, s.dest.done]);
  return {
    dir: file(),
    source: { ...src, report: readReport(file('src.json')), image: file('src.img') },
    dest: { ...dst, report: readReport(file('dest.json')), image: file('dest.img') },
  };
}

/**
 * Once `bytes` went through (a barrier on bytes, not on time), resets both directions of every
 * connection and lets new ones through: the link breaks, the destination's address stays.
 */
async function cutAfter(proxy: Proxy, bytes: number): Promise<void> {
  await proxy.holdAfter(bytes);
  proxy.resetConnections();
  proxy.release();
}

/** Both sides recovered once, from the same loss: the source pushed again exactly what the destination lacked. */
function assertRecoveredOnce(r: MigrationOutcome): { src: Report; dst: Report } {
  const src = r.source.report!;
  const dst = r.dest.report!;
  assert.is(src.recoveries.length, 1, `source recoveries: ${JSON.stringify(src.recoveries)}`);
  assert.is(dst.recoveries.length, 1, `destination recoveries: ${JSON.stringify(dst.recoveries)}`);
  assert.is(src.recoveries[0].missingPages, dst.recoveries[0].missingPages, 'the source marks exactly the pages the destination named');
  assert.ok(src.recoveries[0].missingPages > 0, 'pages were still missing at the loss');
  assert.ok(src.recoveries[0].attempts >= 1);
  assert.ok(src.postcopy !== null && dst.postcopy !== null && dst.postcopy.faults > 0, 'the guest faulted pages in');
  return { src, dst };
}

test('post-copy: the bulk link cut mid-push recovers over a new connection and ends identical to replay', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 61, memory: '64MiB', workload: 'uniform', mode: 'postcopy', maxBandwidth: '16MiB', runSteps: 200_000 };
  const s = await start(c, 20_000);
  await waitForOutput(s.dest, (t) => t.includes('guest resumed in post-copy'));
  // Barrier: the push is under way (1 MiB more through the proxy) before the cut.
  await cutAfter(s.proxy, s.proxy.forwarded + 2 ** 20);
  const r = await finish(s);
  assertMigratedExactly(r, c);
  const { src } = assertRecoveredOnce(r);
  assert.ok(s.proxy.connections >= 2, 'the source reconnected through the same address');
  assert.ok(src.recoveries[0].missingPages < 64 * 256, 'pages that had arrived were not pushed again');
}));

test('hybrid: a link that stays down for a while (new connections refused) recovers once it is back', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 62, memory: '48MiB', workload: 'uniform', mode: 'hybrid', maxBandwidth: '24MiB', runSteps: 100_000 };
  const s = await start(c, 20_000, ['--postcopy-after', '1', '--dirty-rate', '20000']);
  await waitForOutput(s.dest, (t) => t.includes('guest resumed in post-copy'));
  await s.proxy.holdAfter(s.proxy.forwarded + 2 ** 20);
  s.proxy.refuseNew = true;
  s.proxy.resetConnections();
  s.proxy.release();
  // Down: the source's attempts are refused until the address answers again.
  await waitForOutput(s.dest, (t) => t.includes('waiting up to 20000 ms for the source to recover'));
  const before = s.proxy.connections;
  await new Promise((resolve) => setTimeout(resolve, 1200));
  assert.ok(s.proxy.connections > before, 'the source kept trying while the link was down');
  s.proxy.refuseNew = false;
  const r = await finish(s);
  assertMigratedExactly(r, c);
  const { src } = assertRecoveredOnce(r);
  assert.ok(src.recoveries[0].attempts >= 2, `attempts ${src.recoveries[0].attempts}`);
  assert.ok(src.recoveries[0].pausedMs >= 1000, `paused ${src.recoveries[0].pausedMs} ms`);
}));

test('post-copy: a page corrupted on the wire is refused before it reaches guest memory, and the session recovers', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 63, memory: '32MiB', workload: 'uniform', mode: 'postcopy', maxBandwidth: '16MiB', runSteps: 100_000 };
  const s = await start(c, 20_000, ['--fill', 'random']);
  await waitForOutput(s.dest, (t) => t.includes('guest resumed in post-copy'));
  // A bit in a pushed page's payload, 2 MiB further into the stream.
  s.proxy.flipAt(s.proxy.forwarded + 2 * 2 ** 20 + 777);
  const r = await finish(s);
  assertMigratedExactly({ ...r }, { ...c, fill: 'random' });
  assertRecoveredOnce(r);
  assert.ok(r.dest.report!.recoveries[0].cause.length > 0);
}));

/** A pre-copy or stop-and-copy migration through a proxy, with a cut (or a flipped bit) at `at` bytes. */
async function passCase(c: MigrationCase, fault: 'cut' | 'flip', at: number, extra: string[] = []): Promise<MigrationOutcome> {
  const dest = await startDestination([
    '--report', file('dest.json'), '--dump-memory', file('dest.img'), '--run-steps', String(c.runSteps), '--recover-timeout', '20000',
  ]);
  const proxy = await proxyTo(dest.port);
  if (fault === 'flip') proxy.flipAt(at);
  const source = memshift([
    'source', '--connect', `127.0.0.1:${proxy.port}`, '--memory', c.memory!, '--seed', String(c.seed), '--workload', c.workload!, '--fill', c.fill!, '--quiet',
    '--mode', c.mode!, '--max-bandwidth', c.maxBandwidth!, '--warmup', '50', '--dirty-rate', '20000', '--recover-timeout', '20000',
    '--report', file('src.json'), '--dump-memory', file('src.img'), ...extra,
  ]);
  if (fault === 'cut') await cutAfter(proxy, at);
  return finish({ source, dest, proxy });
}

/** One recovery on each side, of the pass the source was in; the destination waited in `receiving`. */
function assertPassResumed(r: MigrationOutcome, phase: 'precopy' | 'stop-and-copy'): Report {
  const src = r.source.report!;
  const dst = r.dest.report!;
  assert.is(src.recoveries.length, 1, `source recoveries: ${JSON.stringify(src.recoveries)}`);
  assert.is(dst.recoveries.length, 1, `destination recoveries: ${JSON.stringify(dst.recoveries)}`);
  assert.is(src.recoveries[0].phase, phase);
  assert.is(dst.recoveries[0].phase, 'receiving');
  return src;
}

test('live: a cut in the first pass resumes the pass; only the pages in flight go again', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 65, memory: '32MiB', fill: 'mixed', workload: 'uniform', mode: 'live', maxBandwidth: '24MiB', runSteps: 2000 };
  const r = await passCase(c, 'cut', 4 * 2 ** 20);
  assertMigratedExactly(r, c);
  const src = assertPassResumed(r, 'precopy');
  const diverged = src.recoveries[0].missingPages;
  assert.ok(diverged > 0, 'batches the kernel took but the destination never got are sent again');
  assert.ok(diverged < 8192, `${diverged} pages of 8192 went again, not the whole guest`);
  assert.match(r.dest.stderr, /lost the link during receiving pass 1/);
}));

test('live: a cut in a later pass (XBZRLE deltas against what the destination holds) resumes identical to replay', deadline(120_000, async () => {
  // Random pages: pass 1 is 16 MiB on the wire, so the cut falls in pass 2 or later.
  const c: MigrationCase = { seed: 66, memory: '16MiB', fill: 'random', workload: 'uniform', mode: 'live', maxBandwidth: '24MiB', runSteps: 2000 };
  const r = await passCase(c, 'cut', 16 * 2 ** 20 + 256 * 1024);
  assertMigratedExactly(r, c);
  const src = assertPassResumed(r, 'precopy');
  assert.ok(src.pagesByEncoding.xbzrle > 0, 'later passes went as deltas');
  assert.match(r.dest.stderr, /lost the link during receiving pass ([2-9]|\d\d)/);
}));

test('cold: a page corrupted in the single paused pass is refused, and the pass resumes over a new link', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 67, memory: '16MiB', fill: 'random', workload: 'uniform', mode: 'cold', maxBandwidth: '32MiB', runSteps: 2000 };
  const r = await passCase(c, 'flip', 6 * 2 ** 20 + 333);
  assertMigratedExactly(r, c);
  assertPassResumed(r, 'stop-and-copy');
}));

test('recovery off (the default): the same cut leaves both sides paused, exit status 4 once stopped', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 64, memory: '32MiB', workload: 'uniform', mode: 'postcopy', maxBandwidth: '8MiB', runSteps: 1000 };
  const s = await start(c, 0);
  await waitForOutput(s.dest, (t) => t.includes('guest resumed in post-copy'));
  await cutAfter(s.proxy, s.proxy.forwarded + 2 ** 20);
  for (const side of [s.source, s.dest]) await waitForOutput(side, (t) => t.includes('MS_ERR_POSTCOPY_PAUSED') && t.includes('until this process is stopped'));
  assert.is(s.proxy.connections, 1, 'nobody reconnected');
  s.source.proc.kill('SIGTERM');
  s.dest.proc.kill('SIGTERM');
  const r = await finish(s);
  assert.equal([r.source.code, r.dest.code], [4, 4]);
  for (const rep of [r.source.report!, r.dest.report!]) {
    assert.is(rep.outcome, 'paused');
    assert.equal(rep.recoveries, []);
  }
}));

test.run();
