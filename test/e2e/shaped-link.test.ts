// Migrations across a real link: source and destination in two network namespaces joined by a veth
// shaped with tc (a cross-site link, not loopback), over TLS with a pre-shared key. At 100 Mbit/s the
// text-like guest makes --compress auto measure the slow link in the first pass and switch LZ4 on; at
// 1 Gbit/s the link goes down in the middle of post-copy and comes back, and post-copy recovers. Each
// guest must land bit-identical. The namespaces are removed on every exit path.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Report } from '../../src/index.js';
import { makeCredentials } from '../_support/credentials.js';
import { deadline } from '../_support/deadline.js';
import { assertMigratedExactly, type MigrationCase } from '../_support/migration.js';
import { createNetnsPair, type NetnsPair } from '../_support/netns.js';
import { killAll, memshift, waitForOutput, type Running } from '../_support/processes.js';

const creds = makeCredentials();
let link: NetnsPair | null = null;
const dirs: string[] = [];

test.after.each(async () => {
  await killAll();
  link?.remove();
  link = null;
  while (dirs.length > 0) rmSync(dirs.pop()!, { recursive: true, force: true });
});
test.after(() => creds.remove());
process.on('exit', () => link?.remove());

interface Files { srcReport: string; srcImage: string; destReport: string; destImage: string }

/** Both processes' ends, reports and images, once both exited. */
async function outcome(dir: string, files: Files, source: Running, dest: Running) {
  const [s, d] = await Promise.all([source.done, dest.done]);
  const read = (f: string): Report => JSON.parse(readFileSync(f, 'utf8')) as Report;
  return {
    dir,
    source: { ...s, report: read(files.srcReport), image: files.srcImage },
    dest: { ...d, report: read(files.destReport), image: files.destImage },
  };
}

test('over a 100 Mbit/s veth between namespaces, with TLS (PSK): LZ4 switches on in pass 1 and the guest lands identical', deadline(120_000, async () => {
  link = createNetnsPair();
  link.shape('100mbit');
  const dir = mkdtempSync(join(tmpdir(), 'memshift-netns-'));
  dirs.push(dir);
  const c: MigrationCase = { seed: 31, memory: '24MiB', fill: 'mixed', workload: 'uniform', runSteps: 2000 };
  const files = { srcReport: join(dir, 's.json'), srcImage: join(dir, 's.img'), destReport: join(dir, 'd.json'), destImage: join(dir, 'd.img') };
  const dest = memshift(['dest', '--listen', `${link.destAddress}:7300`, '--psk-file', creds.psk.good, '--report', files.destReport, '--dump-memory', files.destImage, '--run-steps', String(c.runSteps)], {}, { netns: link.dest });
  await waitForOutput(dest, (t) => /listening on 10\.77\.0\.2:7300/.test(t));
  const source = memshift([
    'source', '--connect', `${link.destAddress}:7300`, '--psk-file', creds.psk.good, '--quiet',
    '--memory', c.memory!, '--seed', String(c.seed), '--fill', c.fill!, '--workload', c.workload!, '--dirty-rate', '2000',
    '--warmup', '100', '--compress', 'auto', '--report', files.srcReport, '--dump-memory', files.srcImage,
  ], {}, { netns: link.source });
  const r = await outcome(dir, files, source, dest);
  assertMigratedExactly(r, c);
  const first = r.source.report.iterations[0];
  // 100 Mbit/s is 12.5 MB/s. Measured over the pass's first 150 ms it reads low while TCP starts, or
  // high while the kernel's send buffer fills: near it either way, and nowhere near loopback's GB/s.
  const rate = /^LZ4 on: link (\d+) MB\/s/.exec(first.compression.reason);
  assert.ok(rate !== null, first.compression.reason);
  assert.ok(Number(rate[1]) >= 3 && Number(rate[1]) <= 25, first.compression.reason);
  assert.ok(r.source.report.pagesByEncoding.lz4 > 500, `${r.source.report.pagesByEncoding.lz4} pages went as LZ4`);
  assert.is(r.dest.report.pagesByEncoding.lz4, r.source.report.pagesByEncoding.lz4);
}));

test('over a 1 Gbit/s veth with TLS (PSK): the link goes down mid post-copy for 3 s and up again, and post-copy recovers to an identical guest', deadline(120_000, async () => {
  link = createNetnsPair();
  link.shape('1gbit');
  const dir = mkdtempSync(join(tmpdir(), 'memshift-netns-'));
  dirs.push(dir);
  const c: MigrationCase = { seed: 32, memory: '64MiB', fill: 'mixed', workload: 'uniform', runSteps: 100_000 };
  const files = { srcReport: join(dir, 's.json'), srcImage: join(dir, 's.img'), destReport: join(dir, 'd.json'), destImage: join(dir, 'd.img') };
  // A dead link resets nothing: each side notices by its silence timeout (1 s here), then recovers.
  const timeouts = ['--recover-timeout', '30000'];
  const dest = memshift([
    'dest', '--listen', `${link.destAddress}:7301`, '--psk-file', creds.psk.good, '--report', files.destReport, '--dump-memory', files.destImage,
    '--run-steps', String(c.runSteps), '--idle-timeout', '1000', ...timeouts,
  ], {}, { netns: link.dest });
  await waitForOutput(dest, (t) => /listening on 10\.77\.0\.2:7301/.test(t));
  const source = memshift([
    'source', '--connect', `${link.destAddress}:7301`, '--psk-file', creds.psk.good, '--quiet',
    '--memory', c.memory!, '--seed', String(c.seed), '--fill', c.fill!, '--workload', c.workload!, '--mode', 'postcopy',
    '--max-bandwidth', '12MiB', '--warmup', '50', '--stall-timeout', '1000', ...timeouts,
    '--report', files.srcReport, '--dump-memory', files.srcImage,
  ], {}, { netns: link.source });
  await waitForOutput(dest, (t) => t.includes('guest resumed in post-copy'));
  await new Promise((resolve) => setTimeout(resolve, 700));
  link.setLink(false);
  await waitForOutput(dest, (t) => t.includes('waiting up to 30000 ms for the source to recover'));
  await new Promise((resolve) => setTimeout(resolve, 3000));
  link.setLink(true);
  const r = await outcome(dir, files, source, dest);
  assertMigratedExactly(r, c);
  const src = r.source.report;
  const dst = r.dest.report;
  assert.ok(src.recoveries.length >= 1 && dst.recoveries.length >= 1, `recoveries: source ${src.recoveries.length}, destination ${dst.recoveries.length}`);
  const first = src.recoveries[0];
  assert.ok(first.attempts >= 2, `the source kept trying while the link was down (${first.attempts} attempts)`);
  assert.ok(first.pausedMs >= 1500, `post-copy stood paused while the link was down (${first.pausedMs} ms)`);
  assert.is(first.missingPages, dst.recoveries[0].missingPages);
  assert.ok(dst.postcopy !== null && dst.postcopy.faults > 0, 'the guest faulted pages in');
}));

test.run();
