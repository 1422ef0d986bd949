// The QMP client (src/qemu/qmp.ts) against a fake QMP server on a unix socket: events are kept with
// QEMU's timestamps, a mark taken before a command finds the events after it, and the kept events stay
// bounded however many arrive (a throttle that stops and continues the guest makes two a cycle).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Qmp } from '../../src/qemu/qmp.js';
import { deadline } from '../_support/deadline.js';

/** A QMP server that greets, answers qmp_capabilities, and on `emit` sends `count` events STOP/RESUME alternately. */
async function fakeQmp(): Promise<{ path: string; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-qmp-'));
  const path = join(dir, 'qmp.sock');
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.write(`${JSON.stringify({ QMP: { version: {}, capabilities: [] } })}\r\n`);
    let buffered = '';
    s.on('data', (d) => {
      buffered += d.toString();
      let i;
      while ((i = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, i);
        buffered = buffered.slice(i + 1);
        const cmd = JSON.parse(line) as { execute: string; id: unknown; arguments?: { count: number; from: number } };
        if (cmd.execute === 'emit') {
          let out = '';
          for (let k = 0; k < cmd.arguments!.count; k++) {
            const n = cmd.arguments!.from + k;
            out += `${JSON.stringify({ event: n % 2 === 0 ? 'STOP' : 'RESUME', data: { n }, timestamp: { seconds: 1000 + n, microseconds: 5 } })}\r\n`;
          }
          s.write(out);
        }
        s.write(`${JSON.stringify({ return: {}, id: cmd.id })}\r\n`);
      }
    });
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path,
    close: () => new Promise((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => {
        rmSync(dir, { recursive: true, force: true });
        r();
      });
    }),
  };
}

test('events keep QEMU\'s time; a mark taken before a command finds the events after it; the newest STOP is found', deadline(10_000, async () => {
  const server = await fakeQmp();
  const qmp = await Qmp.connect(server.path, 5000);
  try {
    await qmp.execute('emit', { count: 3, from: 0 });
    const mark = qmp.eventMark;
    await qmp.execute('emit', { count: 2, from: 3 });
    assert.equal(qmp.eventsSince(mark).map((e) => e.data.n), [3, 4]);
    assert.equal(qmp.eventsSince().map((e) => e.event), ['STOP', 'RESUME', 'STOP', 'RESUME', 'STOP']);
    const stop = qmp.lastEvent('STOP')!;
    assert.is(stop.data.n, 4);
    assert.is(stop.atMicros, (1000 + 4) * 1e6 + 5);
    assert.is(qmp.lastEvent('SHUTDOWN'), undefined);
  } finally {
    qmp.close();
    await server.close();
  }
}));

test('however many events arrive, a bounded number is kept, and marks stay right across the trimming', deadline(20_000, async () => {
  const server = await fakeQmp();
  const qmp = await Qmp.connect(server.path, 5000);
  try {
    let sent = 0;
    for (let round = 0; round < 20; round++) {
      await qmp.execute('emit', { count: 500, from: sent });
      sent += 500;
    }
    const kept = qmp.eventsSince();
    assert.ok(kept.length <= 1024, `${kept.length} events kept of ${sent}`);
    assert.ok(kept.length >= 512, 'the newest half at least');
    assert.is(kept[kept.length - 1].data.n, sent - 1, 'the newest is kept');
    assert.is(qmp.eventMark, sent, 'the mark counts every event ever received');
    const mark = qmp.eventMark;
    await qmp.execute('emit', { count: 3, from: sent });
    assert.equal(qmp.eventsSince(mark).map((e) => e.data.n), [sent, sent + 1, sent + 2]);
    assert.is(qmp.eventsSince(0)[0].data.n, qmp.eventMark - qmp.eventsSince(0).length, 'an old mark gives what is still kept');
  } finally {
    qmp.close();
    await server.close();
  }
}));

test.run();
