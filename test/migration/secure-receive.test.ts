// migrate() and receive() with security, in one process over loopback (as integrator.test.ts): an
// unauthenticated peer allocates nothing and the destination keeps waiting for the real source; the
// urgent channel of a post-copy runs over the same TLS and is bound to the bulk channel's peer.

import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode } from '../../src/errors.js';
import { listen, migrate, receive, type MemshiftError, type Security } from '../../src/index.js';
import { Capability, ChannelRole, FrameType, Limits } from '../../src/protocol/constants.js';
import { decodeHelloAck, encodeHello, encodePreface } from '../../src/protocol/handshake.js';
import type { Frame } from '../../src/protocol/frame-reader.js';
import { Channel } from '../../src/transport/channel.js';
import { resolveSecurity } from '../../src/transport/security.js';
import { MirrorSource, MirrorTarget, PostcopyMirrorTarget, ramRegions, until, within } from '../_support/mirror-guest.js';
import { makeCredentials } from '../_support/credentials.js';

const creds = makeCredentials();
test.after(() => creds.remove());

async function refusal(p: Promise<unknown>): Promise<MemshiftError> {
  try {
    await p;
  } catch (e) {
    return e as MemshiftError;
  }
  assert.unreachable('expected a refusal');
  throw new Error('unreachable');
}

test('migrate() and receive() require a security choice, naming options.security, before anything starts', async () => {
  const source = new MirrorSource(16);
  const m = await refusal(migrate(source, '127.0.0.1:9', {} as never));
  assert.equal([m.code, m.message.startsWith('options.security is required')], [ErrorCode.INVALID_ARGUMENT, true], m.message);
  assert.is(source.paused, false);
  const r = await refusal(receive({ listen: '127.0.0.1:0', createTarget: () => new MirrorTarget(ramRegions(1)) } as never));
  assert.equal([r.code, r.message.startsWith('options.security is required')], [ErrorCode.INVALID_ARGUMENT, true], r.message);
});

test('PSK: a wrong key and a plaintext HELLO allocate nothing; the destination then takes the real source', async () => {
  const { server, address } = await listen('127.0.0.1:0');
  const log: string[] = [];
  let created = 0;
  const good = creds.pskOf(creds.psk.good);
  try {
    const dest = receive({ listen: server, security: good, onLog: (l) => log.push(l), createTarget: (r) => { created++; return new MirrorTarget(r); } });
    const wrong = new MirrorSource(64);
    const e = await refusal(within(migrate(wrong, address, { security: creds.pskOf(creds.psk.other), mode: 'live' }), 30_000, 'wrong key'));
    assert.is(e.code, ErrorCode.AUTH_FAILED);
    assert.match(e.message, /^authentication with destination 127\.0\.0\.1:\d+ failed: it rejected this end's pre-shared key/);
    assert.is(wrong.paused, false, 'the refused source guest keeps running');
    await until(() => log.some((l) => /MS_ERR_AUTH_FAILED: .*wrong pre-shared key/.test(l)), 10_000, 'refusal logged');

    // A plaintext memshift peer: preface and a valid HELLO, answered by nothing at all.
    const plain = net.connect(address.port, '127.0.0.1');
    const answer: Buffer[] = [];
    plain.on('data', (d: Buffer) => answer.push(d));
    plain.on('error', () => undefined);
    plain.write(encodePreface());
    plain.write(encodeHello({ session: new Uint8Array(16).fill(4), role: ChannelRole.BULK, mode: 'live', capabilities: 0, regions: ramRegions(64) }));
    await within(new Promise((r) => plain.once('close', r)), 10_000, 'plaintext peer dropped');
    assert.is(Buffer.concat(answer).length, 0, 'no HELLO_ACK, no preface, no ERROR: nothing');
    assert.is(created, 0, 'createTarget was never called for an unauthenticated peer');

    const real = new MirrorSource(64);
    real.write(5, 99);
    const report = await within(migrate(real, address, { security: good, mode: 'live' }), 30_000, 'real migrate');
    const result = await within(dest, 30_000, 'receive');
    assert.equal([report.outcome, result.report.outcome, created], ['completed', 'completed', 1]);
    assert.is((result.target as MirrorTarget).page(5)[0], 99);
  } finally {
    server.close();
  }
});

test('post-copy over mutual TLS: the urgent channel connects with the same certificates and the migration completes', async () => {
  const { server, address } = await listen('127.0.0.1:0');
  try {
    const dest = receive({ listen: server, security: creds.tls(creds.dest), createTarget: (r) => new PostcopyMirrorTarget(r) });
    const source = new MirrorSource(128);
    for (let p = 0; p < 128; p += 5) source.write(p, p + 1);
    const report = await within(migrate(source, address, { security: creds.tls(creds.source), mode: 'postcopy' }), 30_000, 'migrate');
    const result = await within(dest, 30_000, 'receive');
    assert.equal([report.outcome, result.report.outcome], ['completed', 'completed']);
    assert.ok(report.postcopy !== null && result.report.postcopy !== null, 'both report a post-copy phase');
    for (let p = 0; p < 128; p += 5) assert.is((result.target as MirrorTarget).page(p)[0], p + 1, `page ${p}`);
  } finally {
    server.close();
  }
});

test('over a socket the caller opened, TLS runs on top of it, the destination checked against its remote address', async () => {
  const { server, address } = await listen('127.0.0.1:0');
  try {
    const dest = receive({ listen: server, security: creds.tls(creds.dest), createTarget: (r) => new MirrorTarget(r) });
    const socket = net.connect(address.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const source = new MirrorSource(64);
    source.write(9, 42);
    const report = await within(migrate(source, socket, { security: creds.tls(creds.source), mode: 'warm' }), 30_000, 'migrate');
    const result = await within(dest, 30_000, 'receive');
    assert.equal([report.outcome, result.report.outcome], ['completed', 'completed']);
    assert.is((result.target as MirrorTarget).page(9)[0], 42);
    // The same over another socket, expecting a name the destination's certificate does not carry.
    const stop = new AbortController();
    const dest2 = receive({ listen: server, security: creds.tls(creds.dest), createTarget: (r) => new MirrorTarget(r), signal: stop.signal });
    const other = net.connect(address.port, '127.0.0.1');
    await new Promise<void>((resolve) => other.once('connect', () => resolve()));
    const e = await refusal(within(migrate(new MirrorSource(64), other, { security: creds.tls(creds.source, creds.ca, 'nowhere'), mode: 'warm' }), 30_000, 'migrate'));
    assert.is(e.code, ErrorCode.AUTH_FAILED);
    assert.match(e.message, /does not carry the name this end expects/);
    stop.abort();
    assert.is((await within(dest2, 10_000, 'receive')).report.outcome, 'cancelled', 'it was still waiting: nothing was accepted');
  } finally {
    server.close();
  }
});

/** Sends HELLO on `ch` and resolves with the first frame back, or null when the channel closes first. */
function hello(ch: Channel, session: Uint8Array, role: number, capabilities: number): Promise<Frame | null> {
  const answer = new Promise<Frame | null>((resolve) => ch.setHandlers({ onFrame: (f) => resolve(f), onClosed: () => resolve(null) }));
  void ch.send(encodeHello({ session, role: role as 0, mode: 'postcopy', capabilities, regions: ramRegions(64) })).catch(() => undefined);
  return answer;
}

test('the urgent port is bound to the bulk channel\'s peer: another certificate from the same CA is dropped, the same one is answered', async () => {
  const { server, address } = await listen('127.0.0.1:0');
  const opened: Channel[] = [];
  const connect = async (port: number, security: Security): Promise<Channel> => {
    const ch = await Channel.connect({ host: '127.0.0.1', port }, { maxBody: Limits.MAX_CONTROL_BODY_BYTES, security: resolveSecurity(security), timeoutMs: 10_000 });
    opened.push(ch);
    return ch;
  };
  try {
    const dest = receive({ listen: server, security: creds.tls(creds.dest), createTarget: (r) => new PostcopyMirrorTarget(r), handshakeTimeoutMs: 5_000 });
    const session = new Uint8Array(16).fill(3);
    const bulk = await connect(address.port, creds.tls(creds.source));
    const ack = await hello(bulk, session, ChannelRole.BULK, Capability.POSTCOPY);
    assert.ok(ack !== null && ack.type === FrameType.HELLO_ACK);
    const { urgentPort } = decodeHelloAck(ack!.buf, ack!.bodyOffset, ack!.bodyLength);
    assert.ok(urgentPort > 0, 'post-copy negotiated');
    // The destination's own certificate is signed by the same CA, but it is not who opened the bulk channel.
    const other = await connect(urgentPort, creds.tls(creds.dest));
    assert.is(await hello(other, session, ChannelRole.URGENT, 0), null, 'dropped without an answer');
    const same = await connect(urgentPort, creds.tls(creds.source));
    const urgentAck = await hello(same, session, ChannelRole.URGENT, 0);
    assert.ok(urgentAck !== null && urgentAck.type === FrameType.HELLO_ACK, 'the bulk channel\'s peer is answered');
    bulk.destroy();
    assert.is((await within(dest, 10_000, 'receive')).report.outcome, 'failed');
  } finally {
    for (const ch of opened) ch.destroy();
    server.close();
  }
});

test.run();
