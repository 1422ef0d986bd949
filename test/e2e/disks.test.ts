// A guest's local disks move with it, block by block, in the same passes as its RAM (capability
// BLOCKS): in every mode, after the destination ran on, its RAM and every disk equal an uninterrupted
// replay bit for bit. In post-copy the disks' blocks stay on the source at the switch and the guest
// faults on them (POSTCOPY_BLOCKS): a filled disk and a slow link make sure it does. A link cut while
// blocks are on the wire, with recovery on, resumes the pass and still lands identical (blocks sent
// before the loss go again).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync } from 'node:fs';
import { deadline } from '../_support/deadline.js';
import { assertMigratedExactly, diffAgainstReplay, diffDisksAgainstReplay, guestArgs, readReport, runMigration, removeDir, writtenBlocks, type MigrationCase } from '../_support/migration.js';
import { perTestDir } from '../_support/per-test-dir.js';
import { memshift, startDestination, waitForOutput, type Running } from '../_support/processes.js';
import type { Report } from '../../src/index.js';
import { Proxy } from '../_support/proxy.js';

const dir = perTestDir(test, 'memshift-disks-');
let proxy: Proxy | null = null;
test.after.each(() => {
  proxy?.cut();
  proxy = null;
});

for (const [i, mode] of (['live', 'cold', 'warm', 'postcopy', 'hybrid'] as const).entries()) {
  test(`${mode}: two local disks move with the guest; RAM and disks equal the replay after the destination ran on`, deadline(60_000, async () => {
    const out = dir.file('disks-out');
    mkdirSync(out);
    const c: MigrationCase = {
      seed: 800 + i, memory: '16MiB', disks: ['4MiB', '1MiB'], mode, dirtyRate: 400_000, warmup: 400, runSteps: 30_000,
      sourceArgs: ['--downtime-limit', '50', ...(mode === 'hybrid' ? ['--postcopy-after', '1'] : [])],
      destArgs: ['--dump-disk', out],
      // 1 MiB of each disk written, and ~1 s of post-copy: the guest writes blocks still on the source.
      ...(mode === 'postcopy' ? { diskFill: '1MiB', maxBandwidth: '24MiB' } : {}),
    };
    const r = await runMigration(c);
    try {
      assertMigratedExactly(r, c);
      assert.is(diffDisksAgainstReplay(out, c, r.dest.report!.guestSteps), null, 'disks after the destination ran on');
      assert.ok(writtenBlocks(`${out}/disk0.img`) > 100, 'the disk held written blocks to move');
      if (mode === 'live') {
        // Each pass reports its blocks; what was dirty at a pass's end went in the next (every block the
        // workload writes holds a record, so none is left out as zero).
        const passes = r.source.report!.iterations;
        for (const [k, p] of passes.entries()) {
          assert.ok(p.blocks !== undefined, `pass ${p.iteration} reports its blocks`);
          if (k > 0) assert.ok(p.blocks.sent >= passes[k - 1].blocks!.dirty, `pass ${p.iteration} sent ${p.blocks.sent} blocks; ${passes[k - 1].blocks!.dirty} were dirty before it`);
        }
        assert.ok(passes[0].blocks!.sent > 0, 'the first pass sent the blocks written before it');
      }
      if (mode === 'postcopy') {
        const pc = r.dest.report!.postcopy!;
        assert.ok((pc.blocksMissing ?? 0) >= 2 * 256, `the filled blocks were still on the source at the switch (${pc.blocksMissing})`);
        assert.ok((pc.blockFaults ?? 0) > 0, 'the guest faulted on a disk block, and its disks still equal the replay');
      }
    } finally {
      removeDir(r.dir);
    }
  }));
}

/**
 * A migration of `c` through a proxy, both sides recovering for 20 s: `cut` resets every connection at
 * a point of its choosing, then the migration ends and its recovery and its RAM and disks are checked.
 */
async function cutAndRecover(c: MigrationCase, sourceArgs: string[], cut: (p: Proxy, dest: Running) => Promise<void>): Promise<Report> {
  const out = dir.file('disks-out');
  mkdirSync(out);
  const dest = await startDestination(['--report', dir.file('dest.json'), '--dump-memory', dir.file('dest.img'), '--dump-disk', out, '--run-steps', String(c.runSteps ?? 2000), '--recover-timeout', '20000']);
  proxy = await Proxy.start(dest.port);
  const p = proxy as Proxy & { port: number };
  const source = memshift([
    'source', '--connect', `127.0.0.1:${p.port}`, ...guestArgs(c), '--dirty-rate', String(c.dirtyRate), '--quiet', '--mode', c.mode ?? 'live',
    '--recover-timeout', '20000', '--report', dir.file('src.json'), '--dump-memory', dir.file('src.img'), ...sourceArgs,
  ]);
  await cut(p, dest);
  p.resetConnections();
  p.release();
  const [s, d] = await Promise.all([source.done, dest.done]);
  assert.is(s.code, 0, s.stderr);
  assert.is(d.code, 0, d.stderr);
  const src = readReport(dir.file('src.json'))!;
  const dst = readReport(dir.file('dest.json'))!;
  assert.is(src.recoveries.length, 1, 'the source reconnected once');
  assert.is(diffAgainstReplay(dir.file('dest.img'), c, dst.guestSteps), null);
  assert.is(diffDisksAgainstReplay(out, c, dst.guestSteps), null, 'the disks after the recovery');
  assert.ok(writtenBlocks(`${out}/disk0.img`) > 1000, 'thousands of blocks moved');
  return src;
}

test('live: a cut while disk blocks are on the wire resumes the pass over a new link, and the disks land identical', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 810, memory: '8MiB', fill: 'zero', disks: ['16MiB'], dirtyRate: 400_000 };
  const src = await cutAndRecover(c, ['--warmup', '2000', '--max-bandwidth', '24MiB', '--downtime-limit', '50'], async (p) => {
    // A zero-filled RAM sends almost nothing in pass 1: 2 MiB in, the link carries disk blocks.
    await p.holdAfter(2 * 2 ** 20);
  });
  assert.is(src.recoveries[0].phase, 'precopy');
  // The destination named the blocks it held (BLOCK_RECOVERY): only those lost with the link went again.
  const again = src.recoveries[0].blocksAgain;
  assert.ok(again !== undefined && again > 0, `blocks went again: ${again}`);
}));

test('post-copy: a cut while missing blocks are pushed recovers; only the blocks lost on the way go again, and the disks land identical', deadline(120_000, async () => {
  // At most 2 MiB of pages go before the blocks (the push sends pages, then blocks).
  const c: MigrationCase = { seed: 820, memory: '2MiB', fill: 'zero', disks: ['8MiB'], diskFill: '4MiB', dirtyRate: 20_000, mode: 'postcopy', runSteps: 20_000 };
  const src = await cutAndRecover(c, ['--warmup', '200', '--max-bandwidth', '8MiB'], async (p, dest) => {
    await waitForOutput(dest, (t) => t.includes('guest resumed in post-copy'));
    // 4 MiB of blocks at 8 MiB/s after at most 2 MiB of pages: 3 MiB into the push, blocks are on the wire.
    await p.holdAfter(p.forwarded + 3 * 2 ** 20);
  });
  assert.is(src.recoveries[0].phase, 'postcopy-running');
  const again = src.recoveries[0].blocksAgain ?? -1;
  const filled = 4 * 256;
  assert.ok(again > 0 && again < filled, `blocks pushed and lost went again (${again}); not all ${filled} written`);
}));

test.run();
