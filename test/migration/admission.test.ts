// The destination's door (migration/destination/admission.ts): connections still in their handshake
// are capped in all and per address; over a cap a connection is closed unread, the ones inside keep
// their time, and once they are gone the real source gets in.

import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { listen, migrate, receive, type Region } from '../../src/index.js';
import { ChannelRole } from '../../src/protocol/constants.js';
import { encodeHello, encodePreface } from '../../src/protocol/handshake.js';
import { Admission } from '../../src/migration/destination/admission.js';
import { MirrorSource, MirrorTarget, until, within } from '../_support/mirror-guest.js';

test('Admission: at most `pending` in all and `pendingPerAddress` from one address; a release frees one place, once', () => {
  const door = new Admission({ pending: 3, pendingPerAddress: 2 });
  const a1 = door.admit('10.0.0.1');
  const a2 = door.admit('10.0.0.1');
  const a3 = door.admit('10.0.0.1');
  assert.ok('release' in a1 && 'release' in a2);
  assert.ok('refused' in a3 && /2 connections from 10\.0\.0\.1 .*limit 2 per address/.test(a3.refused), JSON.stringify(a3));
  const b1 = door.admit('10.0.0.2');
  assert.ok('release' in b1);
  const c1 = door.admit('10.0.0.3');
  assert.ok('refused' in c1 && /3 connections .*limit 3\)/.test(c1.refused), JSON.stringify(c1));
  assert.is(door.pending, 3);
  if ('release' in a1) { a1.release(); a1.release(); }
  assert.is(door.pending, 2, 'a second release of the same place frees nothing');
  assert.ok('release' in door.admit('10.0.0.1'), 'the freed place, from 10.0.0.1 again');
  assert.ok('refused' in door.admit('10.0.0.3'), 'full in all again');
  assert.is(door.pending, 3);
});

/** A TCP connection that sends nothing; resolves `closed` when the other end closes it. */
function silent(port: number): { socket: net.Socket; closed: Promise<number>; isClosed: () => boolean } {
  const socket = net.connect(port, '127.0.0.1');
  let received = 0;
  let done = false;
  socket.on('data', (d: Buffer) => { received += d.length; });
  socket.on('error', () => undefined);
  const closed = new Promise<number>((r) => socket.once('close', () => { done = true; r(received); }));
  return { socket, closed, isClosed: () => done };
}

test('receive(): over the per-address cap a connection is closed unread, those inside stay, and the real source then completes', async () => {
  const { server, address } = await listen('127.0.0.1:0');
  const log: string[] = [];
  const idle: Array<ReturnType<typeof silent>> = [];
  try {
    const dest = receive({
      listen: server, security: 'insecure', onLog: (l) => log.push(l), maxPendingConnections: { perAddress: 2 },
      createTarget: (r) => new MirrorTarget(r),
    });
    idle.push(silent(address.port), silent(address.port));
    await until(() => idle.every((c) => c.socket.readyState === 'open'), 10_000, 'two silent connections open');
    // Let the destination accept both before the third arrives.
    await new Promise((r) => setTimeout(r, 100));
    const third = silent(address.port);
    const bytes = await within(third.closed, 5_000, 'third connection closed at once');
    assert.is(bytes, 0, 'closed unread and unanswered');
    assert.ok(log.some((l) => /MS_ERR_CONNECTION_LIMIT: 2 connections from 127\.0\.0\.1 .*\(limit 2 per address\)/.test(l)), log.join('\n'));
    assert.equal(idle.map((c) => c.isClosed()), [false, false], 'the two inside keep their handshake time');

    for (const c of idle) c.socket.destroy();
    await Promise.all(idle.map((c) => c.closed));
    const source = new MirrorSource(32);
    source.write(3, 42);
    const report = await within(migrate(source, address, { security: 'insecure', mode: 'live' }), 30_000, 'migrate');
    const result = await within(dest, 30_000, 'receive');
    assert.equal([report.outcome, result.report.outcome], ['completed', 'completed']);
    assert.is((result.target as MirrorTarget).page(3)[0], 42);
  } finally {
    for (const c of idle) c.socket.destroy();
    server.close();
  }
});

test('receive(): a HELLO with more regions than maxRegions is refused before anything is allocated, and the wait goes on', async () => {
  const { server, address } = await listen('127.0.0.1:0');
  const log: string[] = [];
  let created = 0;
  try {
    const dest = receive({
      listen: server, security: 'insecure', onLog: (l) => log.push(l), maxRegions: 4,
      createTarget: (r) => { created++; return new MirrorTarget(r); },
    });
    const many: Region[] = Array.from({ length: 5 }, (_, i) => ({ id: i, name: `ram${i}`, kind: 'ram', pageSize: 4096, pageCount: 64 }));
    const peer = silent(address.port);
    peer.socket.write(encodePreface());
    peer.socket.write(encodeHello({ session: new Uint8Array(16).fill(9), role: ChannelRole.BULK, mode: 'live', capabilities: 0, regions: many }));
    await within(peer.closed, 10_000, 'refused peer closed');
    await until(() => log.some((l) => /guest of 5 regions has more than this destination accepts \(4\)/.test(l)), 10_000, 'refusal logged');
    assert.is(created, 0, 'nothing allocated for it');

    const source = new MirrorSource(32);
    source.write(7, 5);
    const report = await within(migrate(source, address, { security: 'insecure', mode: 'live' }), 30_000, 'migrate');
    const result = await within(dest, 30_000, 'receive');
    assert.equal([report.outcome, result.report.outcome, created], ['completed', 'completed', 1]);
    assert.is((result.target as MirrorTarget).page(7)[0], 5);
  } finally {
    server.close();
  }
});

test.run();
