// End-to-end failures: a peer that dies, a connection that is not memshift, a source that lies.
// Each checks what the survivor reports, and that nothing was lost: a source guest that keeps
// running is still exactly its replay, and a destination never starts a partial guest.

import net from 'node:net';
import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { diffAgainstReplay, explain, type GuestCase } from '../_support/migration.js';
import { memshift, startDestination, waitForOutput } from '../_support/processes.js';
import { HostilePeer } from '../_support/hostile-peer.js';
import { Proxy } from '../_support/proxy.js';
import { deadline } from '../_support/deadline.js';
import { perTestDir } from '../_support/per-test-dir.js';
import { FrameReader } from '../../src/protocol/frame-reader.js';
import { Capability, FrameType, Limits } from '../../src/protocol/constants.js';
import { encodeDisks, encodeZeroBlocks } from '../../src/protocol/blocks.js';
import { decodeHello, encodeHelloAck, encodePreface } from '../../src/protocol/handshake.js';

const { file, report } = perTestDir(test, 'memshift-fail-');

const guest: GuestCase = { seed: 41, memory: '64MiB', workload: 'hotset' };
const guestArgs = ['--memory', '64MiB', '--seed', '41', '--workload', 'hotset', '--fill', 'mixed'];

// A cut "mid pre-copy" is a position in the stream, not a moment: the source talks through a proxy
// that stops forwarding after HELD bytes, so the source stalls on back-pressure inside pass 1 (a pass
// of this guest is tens of MiB) until the peer is killed. Nothing here waits for time to pass.
const HELD = 4 * 2 ** 20;

test('destination killed mid pre-copy: the source fails naming the destination, its guest ran on exactly', deadline(60_000, async () => {
  const dest = await startDestination(['--report', file('dest.json')]);
  const proxy = await Proxy.start(dest.port);
  try {
    const source = memshift([
      'source', '--connect', `127.0.0.1:${proxy.port}`, ...guestArgs, '--quiet', '--warmup', '50',
      '--report', file('src.json'), '--dump-memory', file('src.img'),
    ]);
    await proxy.holdAfter(HELD);
    assert.ok(!dest.stderr().includes('resumed'), 'the destination is still receiving pass 1');
    dest.proc.kill('SIGKILL');
    const s = await source.done;
    assert.is(s.code, 1, explain({ ...s, report: null, image: '' }));
    assert.match(s.stderr, /memshift source: MS_ERR_CONNECTION_CLOSED: destination 127\.0\.0\.1:\d+: .* during pre-copy pass 1/, s.stderr);
    const r = report('src.json');
    assert.is(r.outcome, 'failed');
    assert.is(r.downtimeMs, null, 'no switchover happened');
    assert.is(r.iterations.length, 0, 'no pass completed');
    assert.ok(r.bytesTransferred >= HELD && r.bytesTransferred < 64 * 2 ** 20, `sent ${r.bytesTransferred} bytes before the cut`);
    assert.is(diffAgainstReplay(file('src.img'), guest, r.guestSteps), null);
  } finally {
    proxy.cut();
  }
}));

test('source killed mid pre-copy: the destination fails and never starts the guest', deadline(60_000, async () => {
  const dest = await startDestination(['--report', file('dest.json'), '--dump-memory', file('dest.img')]);
  const proxy = await Proxy.start(dest.port);
  try {
    const source = memshift(['source', '--connect', `127.0.0.1:${proxy.port}`, ...guestArgs, '--quiet', '--warmup', '50']);
    await proxy.holdAfter(HELD);
    source.proc.kill('SIGKILL');
    await source.done;
    proxy.release(); // the proxy reads again, sees the source gone, and closes the destination's link
    const d = await dest.done;
    assert.is(d.code, 1);
    assert.match(d.stderr, /MS_ERR_CONNECTION_CLOSED: source 127\.0\.0\.1:\d+/);
    const r = report('dest.json');
    assert.is(r.outcome, 'failed');
    assert.is(r.guestSteps, 0, 'the guest never ran here');
    assert.ok(r.bytesTransferred >= HELD, `received ${r.bytesTransferred} bytes, at least the ${HELD} forwarded`);
    assert.throws(() => readFileSync(file('dest.img')), 'no image of a guest that never ran');
  } finally {
    proxy.cut();
  }
}));

test('a garbage connection is turned away and a real migration afterwards succeeds', deadline(60_000, async () => {
  const dest = await startDestination(['--report', file('dest.json'), '--run-steps', '1000', '--dump-memory', file('dest.img')]);
  const closed = await new Promise<boolean>((resolve) => {
    const s = net.connect(dest.port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: memshift\r\n\r\n'));
    s.on('data', () => undefined);
    s.on('close', () => resolve(true));
    s.on('error', () => undefined);
    setTimeout(() => resolve(false), 5000);
  });
  assert.ok(closed, 'the destination closed the garbage connection');
  await waitForOutput(dest, (t) => /rejected connection from source 127\.0\.0\.1:\d+: MS_ERR_HANDSHAKE_MAGIC/.test(t));
  const s = await memshift(['source', '--connect', `127.0.0.1:${dest.port}`, ...guestArgs, '--quiet', '--warmup', '50']).done;
  assert.is(s.code, 0, s.stderr);
  const d = await dest.done;
  assert.is(d.code, 0, d.stderr);
  const r = report('dest.json');
  assert.is(r.outcome, 'completed');
  assert.is(diffAgainstReplay(file('dest.img'), guest, r.guestSteps), null);
}));

/** A hostile source: valid handshake, then one bad frame. The destination must fail with `code`, never resume. */
async function hostile(code: string, attack: (p: HostilePeer) => Promise<void>, capabilities?: number): Promise<void> {
  // A refused SWITCHOVER lingers for the source's query: keep that short here.
  const dest = await startDestination(['--report', file('dest.json'), '--dump-memory', file('dest.img'), '--confirm-timeout', '300']);
  const peer = await HostilePeer.connect(dest.port, 256);
  await peer.handshake(capabilities);
  await attack(peer);
  const answer = await peer.errorAnswer();
  const d = await dest.done;
  peer.close();
  assert.is(d.code, 1, d.stderr);
  assert.is(answer?.code, code, `the destination told the source why (${answer?.message})`);
  const r = report('dest.json');
  assert.is(r.outcome, 'failed');
  assert.is(r.error!.code, code);
  assert.is(r.guestSteps, 0);
  assert.throws(() => readFileSync(file('dest.img')));
}

test('a frame with a bad checksum is rejected with MS_ERR_FRAME_CHECKSUM', deadline(60_000, async () => {
  await hostile('MS_ERR_FRAME_CHECKSUM', (p) => p.sendCorrupted(p.rawBatch([7], 0x11), 20));
}));

test('a page outside the region is rejected with MS_ERR_BATCH_PAGE_RANGE', deadline(60_000, async () => {
  await hostile('MS_ERR_BATCH_PAGE_RANGE', (p) => p.send(p.rawBatch([256], 0x22)));
}));

test('a page whose payload does not match its hash is rejected with MS_ERR_PAGE_HASH_MISMATCH', deadline(60_000, async () => {
  await hostile('MS_ERR_PAGE_HASH_MISMATCH', (p) => p.send(p.rawBatch([3], 0x33, { lieAboutHash: true })));
}));

test('a malformed XBZRLE delta is rejected with MS_ERR_DELTA_MALFORMED', deadline(60_000, async () => {
  await hostile('MS_ERR_DELTA_MALFORMED', (p) => p.send(p.deltaBatch(5, Uint8Array.from([0x00, 0x80, 0x00]))));
}));

test('a frame announcing 1 GiB is rejected with MS_ERR_FRAME_TOO_LARGE before it is buffered', deadline(60_000, async () => {
  await hostile('MS_ERR_FRAME_TOO_LARGE', (p) => p.sendHeader(0x03, 2 ** 30));
}));

test('a run of zero disk blocks from a source that was not granted ZERO_BLOCKS is rejected with MS_ERR_FRAME_MALFORMED', deadline(60_000, async () => {
  await hostile('MS_ERR_FRAME_MALFORMED', async (p) => {
    await p.send(encodeDisks([{ blockBytes: 4096, blocks: 64 }]));
    await p.send(encodeZeroBlocks(0, 0, 4));
  }, Capability.BLOCKS);
}));

test('SWITCHOVER without device state is rejected with MS_ERR_UNEXPECTED_MESSAGE', deadline(60_000, async () => {
  await hostile('MS_ERR_UNEXPECTED_MESSAGE', (p) => p.send(p.switchover(0n)));
}));

test('a digest that does not match the received memory stops the switchover with MS_ERR_DIGEST_MISMATCH', deadline(60_000, async () => {
  await hostile('MS_ERR_DIGEST_MISMATCH', async (p) => {
    await p.send(p.rawBatch([1], 0x44));
    await p.send(p.deviceState());
    await p.send(p.switchover(0x1234n));
  });
}));

/**
 * A destination that accepts, takes every page, and drops the link the moment SWITCHOVER arrives:
 * the source cannot know whether it resumed the guest.
 */
function vanishingDestination(): Promise<{ port: number; close: () => void }> {
  return new Promise((resolve) => {
    const server = net.createServer((socket) => {
      socket.write(encodePreface());
      const reader = new FrameReader(new Uint8Array(Limits.MAX_FRAME_BODY_BYTES + 16 + 512 * 1024));
      let preface = false;
      socket.on('error', () => undefined);
      socket.on('data', (chunk: Buffer) => {
        reader.push(chunk, () => {
          if (!preface && reader.buffered >= 12) {
            reader.discard(12);
            preface = true;
          }
          if (!preface) return;
          for (let f = reader.next(); f !== null; f = reader.next()) {
            if (f.type === FrameType.HELLO) {
              const hello = decodeHello(f.buf, f.bodyOffset, f.bodyLength);
              socket.write(encodeHelloAck({ session: hello.session, capabilities: 0, urgentPort: 0 }));
            } else if (f.type === FrameType.SWITCHOVER) {
              socket.resetAndDestroy();
              return;
            }
          }
        });
      });
    });
    server.listen(0, '127.0.0.1', () => resolve({ port: (server.address() as net.AddressInfo).port, close: () => server.close() }));
  });
}

test('a link lost after SWITCHOVER and no answer to the query leaves the switchover in doubt: the source guest stays paused', deadline(60_000, async () => {
  const dest = await vanishingDestination();
  try {
    // The vanishing destination answers a QUERY with HELLO_ACK, which is no answer: asked until the timeout.
    const s = await memshift([
      'source', '--connect', `127.0.0.1:${dest.port}`, ...guestArgs, '--quiet', '--warmup', '50', '--mode', 'warm', '--resolve-timeout', '800',
      '--report', file('src.json'), '--dump-memory', file('src.img'),
    ]).done;
    assert.is(s.code, 3, 'exit status 3: in doubt, the destination may run the guest');
    assert.match(s.stderr, /MS_ERR_SWITCHOVER_IN_DOUBT/);
    assert.match(s.stderr, /gave no answer within 800 ms of asking/);
    const r = report('src.json');
    assert.is(r.outcome, 'in-doubt');
    assert.ok(r.guestSteps > 0);
    // Paused at the switchover and never resumed: the image is the pause point's.
    assert.is(diffAgainstReplay(file('src.img'), guest, r.guestSteps), null);
  } finally {
    dest.close();
  }
}));

test.run();
