// Signals to a migrating source. Before the switchover SIGTERM cancels: the report says `cancelled`,
// the guest kept running and is dumped exactly as its replay, the destination discards. During
// post-copy the first signal is refused (the guest is split across both hosts) and the migration
// completes. Output paths are checked before anything starts.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { deadline } from '../_support/deadline.js';
import { perTestDir } from '../_support/per-test-dir.js';
import { diffAgainstReplay, type GuestCase } from '../_support/migration.js';
import { memshift, startDestination, waitForOutput } from '../_support/processes.js';

const { file, report } = perTestDir(test, 'memshift-signals-');

test('SIGTERM during pre-copy cancels: outcome cancelled, the guest ran on and is dumped exactly, the destination never resumes', deadline(60_000, async () => {
  const guest: GuestCase = { seed: 71, memory: '32MiB', workload: 'hotset' };
  const dest = await startDestination(['--report', file('dest.json')]);
  const source = memshift([
    'source', '--connect', `127.0.0.1:${dest.port}`, '--memory', '32MiB', '--seed', '71', '--workload', 'hotset', '--dirty-rate', '20000',
    '--max-bandwidth', '4MiB', '--report', file('src.json'), '--dump-memory', file('src.img'),
  ]);
  // 32 MiB at 4 MiB/s: pass 1 lasts seconds, so the signal lands in it.
  await waitForOutput(source, (t) => t.includes('precopy'));
  source.proc.kill('SIGTERM');
  const s = await source.done;
  assert.is(s.code, 1, s.stderr);
  assert.match(s.stderr, /SIGTERM: cancelling the migration/);
  const r = report('src.json');
  assert.is(r.outcome, 'cancelled');
  assert.is(r.error?.code, 'MS_ERR_CANCELLED');
  assert.is(diffAgainstReplay(file('src.img'), guest, r.guestSteps), null);
  const d = await dest.done;
  assert.is(d.code, 1);
  assert.is(report('dest.json').outcome, 'failed');
}));

test('SIGTERM during post-copy is refused, and the migration completes', deadline(60_000, async () => {
  const dest = await startDestination(['--report', file('dest.json')]);
  const source = memshift([
    'source', '--connect', `127.0.0.1:${dest.port}`, '--memory', '32MiB', '--seed', '72', '--workload', 'hotset', '--mode', 'postcopy',
    '--max-bandwidth', '16MiB', '--report', file('src.json'),
  ]);
  await waitForOutput(source, (t) => t.includes('postcopy-running'));
  source.proc.kill('SIGTERM');
  await waitForOutput(source, (t) => t.includes('refused'));
  const s = await source.done;
  assert.is(s.code, 0, s.stderr);
  assert.match(s.stderr, /SIGTERM refused: during post-copy the guest is split across both hosts/);
  assert.is(report('src.json').outcome, 'completed');
  assert.is((await dest.done).code, 0);
}));

test('an output path that cannot be written is a usage error before anything starts', deadline(30_000, async () => {
  for (const [command, flag] of [['source', '--report'], ['source', '--dump-memory'], ['dest', '--report'], ['dest', '--dump-memory']] as const) {
    const args = command === 'source'
      ? ['source', '--connect', '127.0.0.1:9', '--memory', '1MiB', '--seed', '1', flag, file('no-such-dir', 'x')]
      : ['dest', '--listen', '127.0.0.1:0', flag, file('no-such-dir', 'x')];
    const r = await memshift(args).done;
    assert.is(r.code, 2, `${command} ${flag}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${flag}.*must name a file this process can write`));
    assert.not.match(r.stdout, /listening on/);
  }
}));

test('a destination frozen mid warm pass (SIGSTOP): the source times out instead of waiting, and its guest resumes exactly', deadline(60_000, async () => {
  const guest: GuestCase = { seed: 73, memory: '64MiB', workload: 'hotset', fill: 'random' };
  const dest = await startDestination(['--report', file('dest.json')], { quiet: false });
  const source = memshift([
    'source', '--connect', `127.0.0.1:${dest.port}`, '--memory', '64MiB', '--seed', '73', '--workload', 'hotset', '--fill', 'random',
    '--mode', 'warm', '--stall-timeout', '1000', '--quiet', '--report', file('src.json'), '--dump-memory', file('src.img'),
  ]);
  await waitForOutput(dest, (t) => t.includes('accepted warm migration'));
  dest.proc.kill('SIGSTOP');
  try {
    const s = await source.done;
    assert.is(s.code, 1, s.stderr);
    const r = report('src.json');
    assert.is(r.outcome, 'failed');
    assert.is(r.error?.code, 'MS_ERR_TIMEOUT');
    assert.match(r.error!.message, /took no bytes for \d+ ms during stop-and-copy pass 1/);
    // Warm paused the guest for its pass; the failure resumed it, and it ran on exactly.
    assert.is(diffAgainstReplay(file('src.img'), guest, r.guestSteps), null);
  } finally {
    dest.proc.kill('SIGCONT');
  }
}));

test.run();
