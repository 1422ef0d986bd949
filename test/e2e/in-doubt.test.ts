// End-to-end: a switchover whose link is lost is resolved by asking the destination. Two CLI processes
// on 127.0.0.1, the source talking through a proxy that cuts every connection the moment the
// destination's RESUMED begins (so the source never reads it) and keeps listening, so that the source's
// QUERY connection reaches the destination again. A cut is a position in the stream, never a moment.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { diffAgainstReplay, type GuestCase } from '../_support/migration.js';
import { memshift, startDestination } from '../_support/processes.js';
import { Proxy } from '../_support/proxy.js';
import { deadline } from '../_support/deadline.js';
import { perTestDir } from '../_support/per-test-dir.js';
import { FrameType } from '../../src/protocol/constants.js';

const { file, report } = perTestDir(test, 'memshift-doubt-');

const guest: GuestCase = { seed: 43, memory: '64MiB', workload: 'hotset' };
const guestArgs = ['--memory', '64MiB', '--seed', '43', '--workload', 'hotset', '--fill', 'mixed'];

test('RESUMED lost with the link: the source asks, the destination confirms; both complete and memory is exact', deadline(90_000, async () => {
  const dest = await startDestination(['--report', file('dest.json'), '--dump-memory', file('dest.img'), '--run-steps', '2000']);
  const proxy = await Proxy.start(dest.port);
  proxy.onReply(FrameType.RESUMED, () => proxy.resetConnections());
  try {
    const s = await memshift([
      'source', '--connect', `127.0.0.1:${proxy.port}`, ...guestArgs, '--quiet', '--warmup', '50', '--mode', 'warm',
      '--report', file('src.json'), '--dump-memory', file('src.img'),
    ]).done;
    const d = await dest.done;
    assert.is(s.code, 0, `source: ${s.stderr}`);
    assert.is(d.code, 0, `destination: ${d.stderr}`);
    assert.ok(proxy.connections >= 2, 'the source came back on a new connection');
    assert.match(d.stderr, /lost the link to source .* after SWITCHOVER of session [0-9a-f]{32}; the guest runs here/);
    assert.match(d.stderr, /confirmed over a query that it released the guest/);
    assert.not.match(d.stderr, /did not confirm/);
    const src = report('src.json');
    const dst = report('dest.json');
    assert.is(src.outcome, 'completed');
    assert.match(src.switchoverReason!.reason, /the destination confirmed it resumed over a new connection/);
    assert.is(dst.outcome, 'completed');
    assert.is(dst.digest, src.digest);
    assert.is(diffAgainstReplay(file('src.img'), guest, src.guestSteps), null, 'source image at the pause point');
    assert.is(diffAgainstReplay(file('dest.img'), guest, dst.guestSteps), null, 'destination image after its own steps');
  } finally {
    proxy.cut();
  }
}));

test('destination killed after SWITCHOVER: nobody answers, the source stays in doubt (exit 3) with its guest paused', deadline(90_000, async () => {
  const dest = await startDestination(['--report', file('dest.json')]);
  const proxy = await Proxy.start(dest.port);
  proxy.onReply(FrameType.RESUMED, () => {
    dest.proc.kill('SIGKILL');
    proxy.resetConnections();
  });
  try {
    const s = await memshift([
      'source', '--connect', `127.0.0.1:${proxy.port}`, ...guestArgs, '--quiet', '--warmup', '50', '--mode', 'cold',
      '--resolve-timeout', '1500', '--report', file('src.json'), '--dump-memory', file('src.img'),
    ]).done;
    assert.is(s.code, 3, `exit status 3: in doubt; ${s.stderr}`);
    assert.match(s.stderr, /MS_ERR_SWITCHOVER_IN_DOUBT: switchover in doubt: link lost after SWITCHOVER .* gave no answer within 1500 ms of asking/);
    const r = report('src.json');
    assert.is(r.outcome, 'in-doubt');
    // Paused at the switchover and never resumed: the image is the pause point's.
    assert.is(diffAgainstReplay(file('src.img'), guest, r.guestSteps), null);
  } finally {
    proxy.cut();
  }
}));

test.run();
