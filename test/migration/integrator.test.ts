// The library as an integrator links it: migrate() and receive() in one process over loopback, with a
// guest whose RAM lives outside memshift (mirror-guest.ts). Each test pins a bug found by doing exactly
// that, and what the fix guarantees.

import net from 'node:net';
import { totalmem } from 'node:os';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode } from '../../src/errors.js';
import { listen, migrate, prepareEncoders, receive, type MemshiftError } from '../../src/index.js';
import type { Region } from '../../src/memory/types.js';
import { SAMPLES_FRESH_MS } from '../../src/migration/source/prepared-encoders.js';
import { Capability, ChannelRole, FrameType } from '../../src/protocol/constants.js';
import { encodeHello, encodePreface } from '../../src/protocol/handshake.js';
import { MirrorSource, MirrorTarget, PostcopyMirrorTarget, ramRegions, until, within } from '../_support/mirror-guest.js';

const PAGES = 256;

async function migrateMirror(mode: 'cold' | 'warm' | 'live', source: MirrorSource, createTarget: (r: readonly Region[]) => MirrorTarget) {
  const { server, address } = await listen('127.0.0.1:0');
  try {
    const dest = receive({ security: 'insecure', listen: server, createTarget });
    const report = await within(migrate(source, address, { security: 'insecure', mode }), 30_000, `${mode} migrate`);
    const result = await within(dest, 30_000, 'receive');
    return { report, result };
  } finally {
    server.close();
  }
}

for (const mode of ['cold', 'warm', 'live'] as const) {
  test(`${mode}: the external dirty log is collected before the first pass, so a mirrored guest arrives current`, async () => {
    const source = new MirrorSource(PAGES);
    // Written in the hypervisor's RAM only: the slabs learn of it through collectDirtyLog.
    for (let p = 0; p < PAGES; p += 3) source.write(p, (p % 250) + 1);
    let target: MirrorTarget | null = null;
    const { report, result } = await migrateMirror(mode, source, (r) => (target = new MirrorTarget(r)));
    assert.is(report.outcome, 'completed');
    assert.is(result.report.outcome, 'completed');
    assert.ok(source.collected >= 1, `collectDirtyLog called ${source.collected} times`);
    for (let p = 0; p < PAGES; p++) {
      const expected = source.ram.subarray(p * 4096, (p + 1) * 4096);
      assert.ok(Buffer.compare(Buffer.from(target!.page(p)), Buffer.from(expected)) === 0, `page ${p} differs from the hypervisor's RAM`);
    }
  });
}

test('postcopyAfter with a mode other than hybrid is refused up front, naming the option', async () => {
  const source = new MirrorSource(64);
  for (const mode of ['live', 'cold', 'warm', 'postcopy'] as const) {
    let err: MemshiftError | null = null;
    try {
      await migrate(source, '127.0.0.1:9', { security: 'insecure', mode, postcopyAfter: 2 });
    } catch (e) {
      err = e as MemshiftError;
    }
    assert.is(err?.code, ErrorCode.INVALID_ARGUMENT, mode);
    assert.match(err!.message, /options\.postcopyAfter/);
  }
  assert.is(source.paused, false, 'nothing was paused');
});

test('receive() keeps waiting when createTarget refuses a guest, and takes the next one', async () => {
  const { server, address } = await listen('127.0.0.1:0');
  const log: string[] = [];
  let calls = 0;
  try {
    const dest = receive({
      security: 'insecure',
      listen: server,
      onLog: (l) => log.push(l),
      createTarget: (r) => {
        if (calls++ === 0) throw new Error('no room for this guest');
        return new MirrorTarget(r);
      },
    });
    const refused = new MirrorSource(64);
    let err: MemshiftError | null = null;
    try {
      await within(migrate(refused, address, { security: 'insecure', mode: 'live' }), 30_000, 'refused migrate');
    } catch (e) {
      err = e as MemshiftError;
    }
    assert.is(err?.code, ErrorCode.PEER_ERROR, err?.message);
    assert.is((err!.details as { peerCode?: string }).peerCode, ErrorCode.HANDSHAKE_REJECTED, JSON.stringify(err!.details));
    assert.is(refused.paused, false, 'the refused guest keeps running');
    const accepted = new MirrorSource(64);
    accepted.write(5, 9);
    const report = await within(migrate(accepted, address, { security: 'insecure', mode: 'live' }), 30_000, 'second migrate');
    const result = await within(dest, 30_000, 'receive');
    assert.is(report.outcome, 'completed');
    assert.is(result.report.outcome, 'completed');
    assert.is(calls, 2);
    assert.ok(log.some((l) => /rejected migration .*MS_ERR_HANDSHAKE_REJECTED.*no room for this guest/.test(l)), log.join('\n'));
  } finally {
    server.close();
  }
});

test('a plain Error from the target\'s checkState reaches the source as DEVICE_STATE_INVALID, and the source guest resumes', async () => {
  const source = new MirrorSource(64);
  let err: MemshiftError | null = null;
  const { server, address } = await listen('127.0.0.1:0');
  try {
    const dest = receive({ security: 'insecure', listen: server, createTarget: (r) => new MirrorTarget(r, 'plain-error') });
    try {
      await within(migrate(source, address, { security: 'insecure', mode: 'warm' }), 30_000, 'migrate');
    } catch (e) {
      err = e as MemshiftError;
    }
    const result = await within(dest, 30_000, 'receive');
    assert.is(result.report.outcome, 'failed');
    assert.is(result.report.error?.code, ErrorCode.DEVICE_STATE_INVALID);
    assert.match(result.report.error!.message, /unsupported vCPU model/);
  } finally {
    server.close();
  }
  assert.is(err?.code, ErrorCode.PEER_ERROR);
  assert.is((err!.details as { peerCode?: string }).peerCode, ErrorCode.DEVICE_STATE_INVALID);
  assert.is(source.paused, false, 'warm paused the guest; the refusal resumed it');
  assert.is(source.resumes, 1);
});

test('a prepared destination accepts exactly its guest: a larger one is refused and the wait goes on', async () => {
  const { server, address } = await listen('127.0.0.1:0');
  const log: string[] = [];
  const prepared = new MirrorTarget(ramRegions(64));
  try {
    const dest = receive({ security: 'insecure', listen: server, target: prepared, prealloc: true, onLog: (l) => log.push(l) });
    let err: MemshiftError | null = null;
    try {
      await within(migrate(new MirrorSource(128), address, { security: 'insecure', mode: 'live' }), 30_000, 'larger source');
    } catch (e) {
      err = e as MemshiftError;
    }
    assert.is((err?.details as { peerCode?: string }).peerCode, ErrorCode.HANDSHAKE_REJECTED);
    assert.match(err!.message, /128 pages at the source: larger than the pre-allocated guest \(64\)/);
    const source = new MirrorSource(64);
    source.write(7, 42);
    const report = await within(migrate(source, address, { security: 'insecure', mode: 'live' }), 30_000, 'matching source');
    const result = await within(dest, 30_000, 'receive');
    assert.is(report.outcome, 'completed');
    assert.is(result.target, prepared, 'the prepared target is the one that received the guest');
    assert.equal(result.report.prealloc && { enabled: result.report.prealloc.enabled, before: result.report.prealloc.beforeMigration }, { enabled: true, before: true });
    assert.is(prepared.page(7)[100], 42);
    assert.ok(log.some((l) => /rejected migration .*larger than the pre-allocated guest/.test(l)), log.join('\n'));
  } finally {
    server.close();
  }
});

test('receive() needs exactly one of createTarget and target', async () => {
  for (const options of [{}, { createTarget: (r: readonly Region[]) => new MirrorTarget(r), target: new MirrorTarget(ramRegions(64)) }]) {
    let err: MemshiftError | null = null;
    try {
      await receive({ security: 'insecure', listen: '127.0.0.1:0', ...options });
    } catch (e) {
      err = e as MemshiftError;
    }
    assert.is(err?.code, ErrorCode.INVALID_ARGUMENT);
    assert.match(err!.message, /exactly one of createTarget and target/);
  }
});

test('one migration at a time is decided at HELLO: a connection opened earlier cannot start a second session', async () => {
  const { server, address } = await listen('127.0.0.1:0');
  const log: string[] = [];
  let target: MirrorTarget | null = null;
  const dest = receive({ security: 'insecure', listen: server, createTarget: (r) => (target = new MirrorTarget(r)), onLog: (l) => log.push(l) });
  const early = net.connect(address.port, '127.0.0.1');
  const answer: Buffer[] = [];
  early.on('data', (d: Buffer) => answer.push(d));
  early.on('error', () => undefined);
  try {
    await new Promise<void>((resolve) => early.once('connect', () => resolve()));
    early.write(encodePreface());
    const source = new MirrorSource(64);
    source.write(3, 77);
    const migration = migrate(source, address, { security: 'insecure', mode: 'live' });
    await until(() => log.some((l) => l.startsWith('accepted')), 10_000, 'the real session accepted');
    // Now the early connection speaks: a HELLO of its own guest.
    early.write(encodeHello({ session: new Uint8Array(16).fill(9), role: ChannelRole.BULK, mode: 'live', capabilities: 0, regions: ramRegions(64) }));
    const report = await within(migration, 30_000, 'migrate');
    const result = await within(dest, 30_000, 'receive');
    assert.is(report.outcome, 'completed');
    assert.is(result.report.outcome, 'completed');
    assert.is(target!.page(3)[0], 77, 'the real guest, not the early connection\'s');
    await within(new Promise((r) => (early.destroyed ? r(null) : early.once('close', r))), 10_000, 'early connection closed');
    const bytes = Buffer.concat(answer);
    assert.ok(bytes.includes(Buffer.from('a migration is already in progress')), 'the early connection is told why');
  } finally {
    early.destroy();
    server.close();
  }
});

test('without a cap, a guest larger than three quarters of the available memory is refused before anything is allocated', async () => {
  const { server, address } = await listen('127.0.0.1:0');
  const log: string[] = [];
  let created = 0;
  const pages = Math.ceil((0.9 * totalmem()) / 4096);
  try {
    const dest = receive({ security: 'insecure', listen: server, createTarget: (r) => { created++; return new MirrorTarget(r); }, onLog: (l) => log.push(l) });
    // A HELLO announcing ~90 % of this host's memory, from a peer that never sends a page.
    const peer = net.connect(address.port, '127.0.0.1');
    peer.on('error', () => undefined);
    const answer: Buffer[] = [];
    peer.on('data', (d: Buffer) => answer.push(d));
    await new Promise<void>((resolve) => peer.once('connect', () => resolve()));
    peer.write(encodePreface());
    peer.write(encodeHello({ session: new Uint8Array(16).fill(5), role: ChannelRole.BULK, mode: 'live', capabilities: 0, regions: ramRegions(pages) }));
    await within(new Promise((r) => peer.once('close', r)), 10_000, 'refused connection closed');
    assert.is(created, 0, 'createTarget was never called');
    assert.ok(Buffer.concat(answer).includes(Buffer.from('larger than this destination accepts')), 'the peer is told why');
    // The destination logs the refusal once its side of the connection has closed.
    await until(() => log.some((l) => /larger than this destination accepts/.test(l)), 10_000, 'refusal logged');
    // It keeps waiting: a real, small guest still migrates.
    const report = await within(migrate(new MirrorSource(64), address, { security: 'insecure', mode: 'live' }), 30_000, 'migrate');
    assert.is(report.outcome, 'completed');
    assert.is((await within(dest, 30_000, 'receive')).report.outcome, 'completed');
  } finally {
    server.close();
  }
});

test('prepared encoders serve one migration of the guest they were prepared for, and refuse a second or another guest', async () => {
  const source = new MirrorSource(PAGES);
  for (let p = 0; p < PAGES; p += 5) source.write(p, (p % 200) + 3);
  const prepared = await prepareEncoders(source, { encoders: 1 });
  let target: MirrorTarget | null = null;
  const { server, address } = await listen('127.0.0.1:0');
  try {
    const dest = receive({ security: 'insecure', listen: server, createTarget: (r) => (target = new MirrorTarget(r)) });
    const report = await within(migrate(source, address, { security: 'insecure', mode: 'live', prepared }), 30_000, 'migrate');
    assert.is(report.outcome, 'completed');
    assert.is((await within(dest, 30_000, 'receive')).report.outcome, 'completed');
    for (let p = 0; p < PAGES; p += 5) assert.is(target!.page(p)[0], (p % 200) + 3, `page ${p}`);
  } finally {
    server.close();
  }
  // Used once: a second migration with it fails at once, naming why.
  const again = await migrate(source, { host: '127.0.0.1', port: 9 }, { security: 'insecure', prepared }).catch((e: MemshiftError) => e);
  assert.is((again as MemshiftError).code, ErrorCode.INVALID_ARGUMENT);
  assert.match((again as MemshiftError).message, /already used/);
  // Prepared for one guest, offered to another.
  const other = await prepareEncoders(new MirrorSource(PAGES), { encoders: 1 });
  const wrong = await migrate(source, { host: '127.0.0.1', port: 9 }, { security: 'insecure', prepared: other }).catch((e: MemshiftError) => e);
  assert.is((wrong as MemshiftError).code, ErrorCode.INVALID_ARGUMENT);
  assert.match((wrong as MemshiftError).message, /another guest/);
  await other.close();
});

test('prepared encoders sample the guest: a migration soon after judges compression by those samples, a later one samples again', async () => {
  const source = new MirrorSource(PAGES);
  for (let p = 0; p < PAGES; p++) source.write(p, (p % 250) + 1);
  source.collectDirtyLog(); // the mirror is current when the samples are taken
  const prepared = await prepareEncoders(source, { encoders: 1 });
  const { lz4, xbzrle, at } = prepared.samples;
  assert.ok(lz4.pages > 0 && lz4.bytesPerSecond > 0, `LZ4 sample of ${lz4.pages} pages`);
  assert.ok(xbzrle.pages > 0 && xbzrle.bytesPerSecond > 0, `XBZRLE sample of ${xbzrle.pages} pages`);
  assert.is(prepared.freshSample('lz4', at + SAMPLES_FRESH_MS - 1), lz4);
  assert.is(prepared.freshSample('xbzrle', at + SAMPLES_FRESH_MS - 1), xbzrle);
  assert.is(prepared.freshSample('lz4', at + SAMPLES_FRESH_MS), null, 'stale: the migration samples again');
  // A guest with no non-zero page when prepared: its empty sample does not stand for it later.
  const blank = await prepareEncoders(new MirrorSource(PAGES), { encoders: 1 });
  assert.is(blank.samples.lz4.pages, 0);
  assert.is(blank.freshSample('lz4', blank.samples.at), null, 'an empty sample is sampled again');
  await blank.close();
  const { server, address } = await listen('127.0.0.1:0');
  try {
    const dest = receive({ security: 'insecure', listen: server, createTarget: (r) => new MirrorTarget(r) });
    const report = await within(migrate(source, address, { security: 'insecure', mode: 'live', prepared, compress: 'auto', xbzrle: 'auto' }), 30_000, 'migrate');
    assert.is((await within(dest, 30_000, 'receive')).report.outcome, 'completed');
    // The decisions quote the sample they rest on: the prepared one.
    const reasons = report.iterations.map((it) => it.compression.reason).join(' | ');
    assert.ok(reasons.includes(`LZ4 ${(lz4.bytesPerSecond / 1e6).toFixed(0)} MB/s at`), reasons);
  } finally {
    server.close();
  }
});

test('prepared with post-copy: a post-copy migration takes the prepared fault thread and lands; a live one closes it unused', async () => {
  for (const mode of ['postcopy', 'live'] as const) {
    const source = new MirrorSource(PAGES);
    for (let p = 0; p < PAGES; p += 3) source.write(p, (p % 250) + 1);
    const prepared = await prepareEncoders(source, { encoders: 1, postcopy: true });
    let target: MirrorTarget | null = null;
    const { server, address } = await listen('127.0.0.1:0');
    try {
      const dest = receive({ security: 'insecure', listen: server, createTarget: (r) => (target = new PostcopyMirrorTarget(r)) });
      const report = await within(migrate(source, address, { security: 'insecure', mode, prepared }), 30_000, `${mode} migrate`);
      assert.is(report.outcome, 'completed', mode);
      assert.is((await within(dest, 30_000, 'receive')).report.outcome, 'completed', mode);
      for (let p = 0; p < PAGES; p += 3) assert.is(target!.page(p)[0], (p % 250) + 1, `${mode}: page ${p}`);
    } finally {
      server.close();
    }
    // Taken by the post-copy migration; closed with the live one, which never needed it.
    assert.is(prepared.takeFaultThread(), null, `${mode}: nothing left in the preparation`);
  }
});

test('a source that goes silent mid-frame (a length that lies) fails the destination with a timeout, not a wait forever', async () => {
  const { server, address } = await listen('127.0.0.1:0');
  try {
    const dest = receive({ security: 'insecure', listen: server, createTarget: (r) => new MirrorTarget(r), idleTimeoutMs: 300 });
    const peer = net.connect(address.port, '127.0.0.1');
    peer.on('error', () => undefined);
    const answer: Buffer[] = [];
    peer.on('data', (d: Buffer) => answer.push(d));
    await new Promise<void>((resolve) => peer.once('connect', () => resolve()));
    peer.write(encodePreface());
    peer.write(encodeHello({ session: new Uint8Array(16).fill(6), role: ChannelRole.BULK, mode: 'live', capabilities: 0, regions: ramRegions(64) }));
    // After HELLO_ACK: a PAGE_BATCH header announcing 4096 body bytes, then only 10 of them, then silence.
    await until(() => Buffer.concat(answer).length >= 12 + 16 + 24, 10_000, 'HELLO_ACK');
    const header = Buffer.alloc(16);
    header.writeUInt32LE(4096, 0);
    header.writeUInt8(FrameType.PAGE_BATCH, 4);
    header.writeUInt32LE(64, 8);
    peer.write(Buffer.concat([header, Buffer.alloc(10)]));
    const result = await within(dest, 10_000, 'receive');
    assert.is(result.report.outcome, 'failed');
    assert.is(result.report.error?.code, ErrorCode.TIMEOUT);
    assert.match(result.report.error!.message, /nothing received for \d+ ms during pre-copy/);
    peer.destroy();
  } finally {
    server.close();
  }
});

test('a silent connection to the urgent port is dropped at the handshake timeout', async () => {
  const { server, address } = await listen('127.0.0.1:0');
  const peer = net.connect(address.port, '127.0.0.1');
  let silent: net.Socket | null = null;
  try {
    const dest = receive({ security: 'insecure', listen: server, createTarget: (r) => new PostcopyMirrorTarget(r), handshakeTimeoutMs: 300 });
    peer.on('error', () => undefined);
    const answer: Buffer[] = [];
    peer.on('data', (d: Buffer) => answer.push(d));
    await new Promise<void>((resolve) => peer.once('connect', () => resolve()));
    peer.write(encodePreface());
    peer.write(encodeHello({ session: new Uint8Array(16).fill(8), role: ChannelRole.BULK, mode: 'postcopy', capabilities: Capability.POSTCOPY, regions: ramRegions(64) }));
    // HELLO_ACK: preface (12) + header (16) + session[16] capabilities:u32 urgentPort:u16 0:u16.
    await until(() => Buffer.concat(answer).length >= 12 + 16 + 24, 10_000, 'HELLO_ACK');
    const urgentPort = Buffer.concat(answer).readUInt16LE(12 + 16 + 20);
    assert.ok(urgentPort > 0, 'post-copy negotiated: an urgent port is announced');
    silent = net.connect(urgentPort, '127.0.0.1');
    silent.on('error', () => undefined);
    silent.resume();
    const closed = new Promise((r) => silent!.once('close', r));
    await within(closed, 10_000, 'the silent urgent connection is closed');
    peer.destroy();
    assert.is((await within(dest, 10_000, 'receive')).report.outcome, 'failed');
  } finally {
    silent?.destroy();
    peer.destroy();
    server.close();
  }
});

test.run();
