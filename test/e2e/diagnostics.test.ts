// When the destination finds a fault in the stream, the source says what the destination found: the
// destination's ERROR frame, not the broken pipe its own next write ran into.

import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Report } from '../../src/index.js';
import { deadline } from '../_support/deadline.js';
import { perTestDir } from '../_support/per-test-dir.js';
import { memshift, startDestination, waitForOutput } from '../_support/processes.js';
import { Proxy } from '../_support/proxy.js';
import { HostilePeer } from '../_support/hostile-peer.js';

const { file } = perTestDir(test, 'memshift-diag-');

for (const offset of [3 * 2 ** 20 + 12345, 20 * 2 ** 20 + 777]) {
  test(`a bit flipped ${offset} bytes into the stream: the source reports the destination's finding, not EPIPE`, deadline(60_000, async () => {
    const dest = await startDestination(['--report', file('dest.json')]);
    const proxy = await Proxy.start(dest.port);
    proxy.flipAt(offset);
    try {
      const s = await memshift([
        'source', '--connect', `127.0.0.1:${proxy.port}`, '--memory', '64MiB', '--seed', '61', '--fill', 'random', '--workload', 'idle',
        '--quiet', '--report', file('src.json'),
      ]).done;
      const d = await dest.done;
      assert.is(d.code, 1);
      const found = (JSON.parse(readFileSync(file('dest.json'), 'utf8')) as Report).error!.code;
      assert.is(s.code, 1);
      const r = JSON.parse(readFileSync(file('src.json'), 'utf8')) as Report;
      assert.is(r.outcome, 'failed');
      assert.is(r.error?.code, 'MS_ERR_PEER_ERROR', r.error?.message);
      assert.ok(r.error!.message.includes(found), `source says "${r.error!.message}", destination found ${found}`);
      assert.not.match(s.stderr, /EPIPE/);
    } finally {
      proxy.cut();
    }
  }));
}

test('a failed destination keeps reading for seconds: a source starved meanwhile, still writing, reads why before any reset', deadline(60_000, async () => {
  const dest = await startDestination(['--report', file('dest.json')]);
  const peer = await HostilePeer.connect(dest.port, 256);
  try {
    await peer.handshake();
    await peer.send(peer.rawBatch([3], 0x33, { lieAboutHash: true }));
    // The destination fails at once, then drops what arrives; a reset within these 2 s (the linger was
    // 1 s) would fail a write here and the source would never read the ERROR frame queued for it.
    const writeFailure = await peer.sendDeaf(peer.rawBatch([4], 0x44), 2000);
    assert.is(writeFailure, null, `a write of the deaf source failed: ${writeFailure?.message}`);
    const answer = await peer.errorAnswer();
    assert.is(answer?.code, 'MS_ERR_PAGE_HASH_MISMATCH');
  } finally {
    peer.close();
  }
  assert.is((await dest.done).code, 1);
}));

test('dest --quiet prints notices (a refused connection) but not routine lines (accepted); without it, both', deadline(60_000, async () => {
  for (const quiet of [true, false]) {
    const dest = await startDestination([], { quiet });
    // A refused peer (not memshift at all), refused before the real source connects.
    const net = await import('node:net');
    const s = net.connect(dest.port, '127.0.0.1', () => s.end('GET / HTTP/1.0\r\n\r\n'));
    s.on('error', () => undefined);
    await waitForOutput(dest, (t) => /rejected connection from source 127\.0\.0\.1:\d+: MS_ERR_HANDSHAKE_MAGIC/.test(t));
    const source = memshift(['source', '--connect', `127.0.0.1:${dest.port}`, '--memory', '8MiB', '--seed', '1', '--workload', 'idle', '--quiet', '--warmup', '0']);
    const [src, dst] = await Promise.all([source.done, dest.done]);
    assert.equal([src.code, dst.code], [0, 0], dst.stderr);
    assert.match(dst.stderr, /rejected connection from source 127\.0\.0\.1:\d+: MS_ERR_HANDSHAKE_MAGIC/, `quiet ${quiet}: the refusal is printed`);
    assert.is(/accepted live migration/.test(dst.stderr), !quiet, `quiet ${quiet}: ${dst.stderr}`);
  }
}));

test.run();
