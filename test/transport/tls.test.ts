// tls (src/transport/tls.ts) through Channel: TLS 1.3 on loopback with throwaway credentials. A
// channel exists only once the peer is authenticated; every refusal is MS_ERR_AUTH_FAILED (or
// MS_ERR_TIMEOUT) naming the peer and why, the refused peer reads nothing, and the cleartext of an
// accepted connection lands in the reader's own buffer with no 'data' chunks in between.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Channel } from '../../src/transport/channel.js';
import { readSecureInto } from '../../src/transport/tls.js';
import { resolveSecurity, type LinkSecurity, type Security } from '../../src/transport/security.js';
import { boundAddress, listen, type ReadSink } from '../../src/transport/tcp.js';
import type { Frame } from '../../src/protocol/frame-reader.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { encodeHello, encodePreface } from '../../src/protocol/handshake.js';
import { FrameType } from '../../src/protocol/constants.js';
import { makeCredentials } from '../_support/credentials.js';
import { deadline } from '../_support/deadline.js';
import { seeded } from '../_support/seeded.js';

const creds = makeCredentials();
const MAX_BODY = 1 << 20;
const opened: { destroy(): void }[] = [];
const servers: net.Server[] = [];

test.after.each(() => {
  while (opened.length > 0) opened.pop()!.destroy();
  while (servers.length > 0) servers.pop()!.close();
});
test.after(() => creds.remove());

const link = (s: Security): LinkSecurity => resolveSecurity(s);

/** A listener whose next connection is accepted with `security`; resolves to the channel or the refusal. */
async function acceptor(security: LinkSecurity, timeoutMs = 10_000): Promise<{ port: number; accepted: Promise<Channel> }> {
  const server = await listen({ host: '127.0.0.1', port: 0 });
  servers.push(server);
  const accepted = new Promise<Channel>((resolve, reject) => {
    server.once('connection', (socket: net.Socket) => {
      opened.push(socket);
      Channel.acceptWith(socket, { maxBody: MAX_BODY, peer: 'source test', security, timeoutMs }).then((ch) => {
        opened.push(ch);
        resolve(ch);
      }, reject);
    });
  });
  accepted.catch(() => undefined);
  return { port: boundAddress(server).port, accepted };
}

async function connectTo(port: number, security: LinkSecurity): Promise<Channel> {
  const ch = await Channel.connect({ host: '127.0.0.1', port }, { maxBody: MAX_BODY, security, timeoutMs: 10_000 });
  opened.push(ch);
  return ch;
}

/** The first frame `ch` receives, and the error it closes with if it closes first. */
function nextFrame(ch: Channel): Promise<{ type: number; body: Buffer } | { closed: { code: string; message: string } | null }> {
  return new Promise((resolve) => ch.setHandlers({
    onFrame: (f: Frame) => resolve({ type: f.type, body: Buffer.from(f.buf.subarray(f.bodyOffset, f.bodyOffset + f.bodyLength)) }),
    onClosed: (e) => resolve({ closed: e === null ? null : { code: e.code, message: e.message } }),
  }));
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code: string; message: string };
  }
  assert.unreachable('expected a refusal');
  throw new Error('unreachable');
}

const fingerprintOf = (file: string): string => new X509Certificate(readFileSync(file)).fingerprint256;

test('mutual TLS: frames cross both ways, and each end knows the certificate the other proved', deadline(20_000, async () => {
  const { port, accepted } = await acceptor(link(creds.tls(creds.dest)));
  const client = await connectTo(port, link(creds.tls(creds.source)));
  const server = await accepted;
  const payload = new Uint8Array(300_000);
  seeded(3).fill(payload);
  const atServer = nextFrame(server);
  await client.send(encodeFrame(FrameType.DEVICE_STATE, payload));
  const got = await atServer;
  assert.ok('type' in got && got.type === FrameType.DEVICE_STATE && Buffer.compare(got.body, Buffer.from(payload)) === 0, 'the frame arrived whole');
  const atClient = nextFrame(client);
  await server.send(encodeFrame(FrameType.DEVICE_STATE, payload.subarray(0, 17)));
  const back = await atClient;
  assert.ok('type' in back && back.body.length === 17);
  assert.is(server.peerIdentity, fingerprintOf(creds.source.cert));
  assert.is(client.peerIdentity, fingerprintOf(creds.dest.cert));
}));

test('a client certificate from another CA is refused at the server, which writes nothing; the client hears AUTH_FAILED', deadline(20_000, async () => {
  const { port, accepted } = await acceptor(link(creds.tls(creds.dest)));
  const client = await connectTo(port, link(creds.tls(creds.rogue)));
  const e = await refusal(accepted);
  assert.is(e.code, 'MS_ERR_AUTH_FAILED');
  assert.match(e.message, /^authentication with source test failed: its certificate \(CN=memshift test rogue\) is not signed by the trusted CA/);
  const heard = await nextFrame(client);
  assert.ok('closed' in heard && heard.closed !== null, 'no frame reached the client');
  assert.is((heard as { closed: { code: string } }).closed.code, 'MS_ERR_AUTH_FAILED');
  assert.match((heard as { closed: { message: string } }).closed.message, /ended the connection right after the TLS handshake, before its preface/);
  assert.is(client.bytesReceived, 0, 'not even the preface');
}));

test('a client with no certificate is refused: "it sent no client certificate"', deadline(20_000, async () => {
  const { port, accepted } = await acceptor(link(creds.tls(creds.dest)));
  const raw = tls.connect({ host: '127.0.0.1', port, ca: readFileSync(creds.ca), minVersion: 'TLSv1.3' });
  raw.on('error', () => undefined);
  opened.push(raw);
  const e = await refusal(accepted);
  assert.equal([e.code, /it sent no client certificate$/.test(e.message)], ['MS_ERR_AUTH_FAILED', true], e.message);
}));

test('the client checks the destination\'s name: serverName it carries passes, another is AUTH_FAILED naming --tls-name', deadline(20_000, async () => {
  const good = await acceptor(link(creds.tls(creds.dest)));
  const ch = await connectTo(good.port, link(creds.tls(creds.source, creds.ca, 'memshift-dest')));
  assert.is(ch.peerIdentity, fingerprintOf(creds.dest.cert));
  const bad = await acceptor(link(creds.tls(creds.dest)));
  const e = await refusal(connectTo(bad.port, link(creds.tls(creds.source, creds.ca, 'elsewhere'))));
  assert.is(e.code, 'MS_ERR_AUTH_FAILED');
  assert.match(e.message, /^authentication with destination 127\.0\.0\.1:\d+ failed: its certificate does not carry the name this end expects .*elsewhere.*--tls-name/);
}));

test('a server certificate from a CA the client does not trust is AUTH_FAILED at the client', deadline(20_000, async () => {
  const { port } = await acceptor(link(creds.tls(creds.dest)));
  const e = await refusal(connectTo(port, link(creds.tls(creds.source, creds.rogueCa))));
  assert.is(e.code, 'MS_ERR_AUTH_FAILED');
  assert.match(e.message, /its certificate is not trusted: not signed by the CA given to this end/);
}));

test('PSK: the same key connects; a different key is refused at both ends, each saying it was the key', deadline(20_000, async () => {
  const good = await acceptor(link(creds.pskOf(creds.psk.good)));
  const ch = await connectTo(good.port, link(creds.pskOf(creds.psk.good)));
  assert.is((await good.accepted).peerIdentity, creds.psk.identity);
  assert.is(ch.peerIdentity, creds.psk.identity);
  const bad = await acceptor(link(creds.pskOf(creds.psk.good)));
  const client = await refusal(connectTo(bad.port, link(creds.pskOf(creds.psk.other))));
  const server = await refusal(bad.accepted);
  assert.equal([client.code, server.code], ['MS_ERR_AUTH_FAILED', 'MS_ERR_AUTH_FAILED']);
  assert.match(client.message, /rejected this end's pre-shared key \(wrong key\)/);
  assert.match(server.message, /wrong pre-shared key \(its identity is known here, its key differs\)/);
}));

test('PSK: an unknown identity is refused naming it', deadline(20_000, async () => {
  const { port, accepted } = await acceptor(link(creds.pskOf(creds.psk.good)));
  const key = (creds.pskOf(creds.psk.good) as { psk: { key: Uint8Array } }).psk.key;
  await refusal(connectTo(port, link({ psk: { identity: 'stranger', key } })));
  const e = await refusal(accepted);
  assert.is(e.code, 'MS_ERR_AUTH_FAILED');
  assert.match(e.message, /unknown pre-shared key identity "stranger"/);
}));

test('a plaintext memshift peer (preface + HELLO) gets not one byte back and is refused as not speaking TLS', deadline(20_000, async () => {
  const { port, accepted } = await acceptor(link(creds.pskOf(creds.psk.good)));
  const raw = net.connect(port, '127.0.0.1');
  opened.push(raw);
  let received = 0;
  raw.on('data', (d: Buffer) => { received += d.length; });
  raw.on('error', () => undefined);
  const closed = new Promise((r) => raw.once('close', r));
  raw.write(encodePreface());
  raw.write(encodeHello({ session: new Uint8Array(16).fill(1), role: 0, mode: 'live', capabilities: 0, regions: [{ id: 0, name: 'ram', kind: 'ram', pageSize: 4096, pageCount: 16 }] }));
  const e = await refusal(accepted);
  await closed;
  assert.is(e.code, 'MS_ERR_AUTH_FAILED');
  assert.match(e.message, /does not speak TLS 1\.3/);
  assert.is(received, 0, 'the destination wrote nothing to it');
}));

test('a connection that never starts its handshake is dropped with MS_ERR_TIMEOUT after the handshake timeout', deadline(20_000, async () => {
  const { port, accepted } = await acceptor(link(creds.pskOf(creds.psk.good)), 200);
  const raw = net.connect(port, '127.0.0.1');
  raw.on('error', () => undefined);
  opened.push(raw);
  const closed = new Promise((r) => raw.once('close', r));
  const e = await refusal(accepted);
  assert.equal([e.code, /no TLS handshake within 200 ms/.test(e.message)], ['MS_ERR_TIMEOUT', true], e.message);
  await closed;
}));

test('readSecureInto: a server TLS socket reads its cleartext into the sink\'s buffers, no data chunks, in order', deadline(20_000, async () => {
  const payload = new Uint8Array(3 * 2 ** 20 + 11);
  seeded(9).fill(payload);
  const handed: Uint8Array[] = [];
  const reads: Uint8Array[] = [];
  let last: Uint8Array | null = null;
  const sink: ReadSink = {
    buffer: () => (last = new Uint8Array(100_000), handed.push(last), last),
    onRead: (n) => { reads.push(last!.subarray(0, n)); },
  };
  const key = Buffer.alloc(32, 3);
  const server = tls.createServer({ minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256', pskCallback: () => key });
  let zeroCopy = false;
  let chunks = 0;
  const ended = new Promise<void>((resolve) => server.on('secureConnection', (s: tls.TLSSocket) => {
    zeroCopy = readSecureInto(s, sink);
    s.on('data', () => { chunks++; });
    s.on('end', () => resolve());
    opened.push(s);
  }));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = tls.connect({
    host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256',
    pskCallback: () => ({ psk: key, identity: 'x' }), checkServerIdentity: () => undefined,
  }, () => client.end(payload));
  client.on('error', () => undefined);
  opened.push(client);
  await ended;
  assert.ok(zeroCopy, 'the zero-copy path was available');
  assert.is(chunks, 0, 'no data event: nothing was read into a buffer of Node\'s own');
  assert.ok(reads.every((r) => handed.some((h) => h.buffer === r.buffer)), 'every read landed in a buffer the sink handed out');
  assert.ok(Buffer.compare(Buffer.concat(reads), Buffer.from(payload)) === 0, 'the bytes arrived whole and in order');
}));

test.run();
