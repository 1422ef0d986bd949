// Channel (src/transport/channel.ts) over real loopback sockets, against raw peers that write exactly
// the bytes a test chooses. Claims: the preface goes first; frames arrive whole and in order however
// the peer splits its writes (on both the connecting and the accepting side); a link cut mid-frame is
// MS_ERR_CONNECTION_CLOSED naming the peer and the phase, and the partial frame is never delivered; a
// length field past the channel's limit is MS_ERR_FRAME_TOO_LARGE on the header alone (and exactly
// the limit is accepted); a non-memshift peer is turned away and told why; sending after close or
// failure rejects with a typed error; `send` resolves only once the socket took the bytes, so a peer
// that stops reading holds sends pending until it reads again; switchReceiveBuffer carries buffered
// bytes over, whether it is called inside a frame handler or between reads.

import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Channel } from '../../src/transport/channel.js';
import { boundAddress, listen } from '../../src/transport/tcp.js';
import { INSECURE } from '../../src/transport/security.js';
import { FrameType, Limits, PROTOCOL_VERSION } from '../../src/protocol/constants.js';
import { decodeError } from '../../src/protocol/control.js';
import { encodeFrame, FRAME_HEADER_BYTES } from '../../src/protocol/frame.js';
import { FrameReader, receiveBufferBytes, type Frame } from '../../src/protocol/frame-reader.js';
import { encodePreface } from '../../src/protocol/handshake.js';
import { ErrorCode, MemshiftError } from '../../src/errors.js';
import { assertBytes, concat, copyFrame, randomChunks, sampleFrames, type ReadFrame } from '../_support/protocol-helpers.js';
import { seeded } from '../_support/seeded.js';
import { deadline } from '../_support/deadline.js';

const MAX_BODY = Limits.MAX_CONTROL_BODY_BYTES;

// ---- fixtures ---------------------------------------------------------------------------------------

const opened: Array<{ destroy(): void }> = [];
const servers: net.Server[] = [];
test.after.each(() => {
  while (opened.length > 0) opened.pop()!.destroy();
  while (servers.length > 0) servers.pop()!.close();
});

/** What a channel delivered: copies of its frames, and how it ended. */
interface Received {
  frames: ReadFrame[];
  /** Frames as delivered (only valid inside onFrame; kept to check which buffer they lived in). */
  bufs: Uint8Array[];
  closed: Promise<MemshiftError | null>;
  onFrame?: (f: Frame) => void;
}

function watch(ch: Channel): Received {
  let resolve!: (e: MemshiftError | null) => void;
  const r: Received = { frames: [], bufs: [], closed: new Promise((res) => { resolve = res; }) };
  ch.setHandlers({
    onFrame: (f) => {
      r.frames.push(copyFrame(f));
      r.bufs.push(f.buf);
      r.onFrame?.(f);
    },
    onClosed: (e) => resolve(e),
  });
  return r;
}

/** A raw TCP peer on 127.0.0.1 that the channel connects to; `socket` is the accepted end. */
async function rawServer(): Promise<{ port: number; socket: Promise<net.Socket> }> {
  const server = net.createServer();
  servers.push(server);
  const socket = new Promise<net.Socket>((resolve) => server.once('connection', (s) => {
    s.on('error', () => undefined);
    opened.push(s);
    resolve(s);
  }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, socket };
}

async function connectTo(port: number, options: { maxBody?: number; receiveBuffer?: Uint8Array } = {}): Promise<Channel> {
  const ch = await Channel.connect({ host: '127.0.0.1', port }, { maxBody: options.maxBody ?? MAX_BODY, receiveBuffer: options.receiveBuffer, security: INSECURE });
  opened.push(ch);
  return ch;
}

/** Writes `bytes` in `sizes` pieces, each flushed and followed by a turn of the event loop, so they tend to arrive as separate reads. */
async function writeSplit(socket: net.Socket, bytes: Uint8Array, sizes: readonly number[]): Promise<void> {
  let at = 0;
  for (const n of sizes) {
    await new Promise<void>((r) => socket.write(bytes.subarray(at, at + n), () => r()));
    await new Promise((r) => setImmediate(r));
    at += n;
  }
}

/** Reads everything `socket` receives until it closes. */
function collect(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve) => socket.once('close', () => resolve(Buffer.concat(chunks))));
}

/** The frames in `bytes` after a 12-byte preface (whole frames only). */
function framesAfterPreface(bytes: Uint8Array): ReadFrame[] {
  const reader = new FrameReader(new Uint8Array(receiveBufferBytes(Limits.MAX_FRAME_BODY_BYTES)));
  const out: ReadFrame[] = [];
  reader.push(bytes.subarray(12), () => {
    for (let f = reader.next(); f !== null; f = reader.next()) out.push(copyFrame(f));
  });
  return out;
}

function errorFrameCode(bytes: Uint8Array): string | null {
  const f = framesAfterPreface(bytes).find((x) => x.type === FrameType.ERROR);
  return f === undefined ? null : decodeError(f.bytes, FRAME_HEADER_BYTES, f.bodyLength).code;
}

function assertFramesEqual(got: readonly ReadFrame[], expected: readonly Uint8Array[], what: string): void {
  assert.is(got.length, expected.length, `${what}: frame count`);
  for (let i = 0; i < expected.length; i++) assertBytes(got[i].bytes, expected[i], `${what}: frame ${i}`);
}

/** A PAGE_BATCH-typed frame with a body of `n` seeded bytes (the channel never parses bodies). */
function bulkFrame(n: number, seed: number): Uint8Array {
  const body = new Uint8Array(n);
  seeded(seed).fill(body);
  return encodeFrame(FrameType.PAGE_BATCH, body);
}

// ---- preface and ordering ---------------------------------------------------------------------------

test('a channel sends the 12-byte preface before anything else', deadline(10_000, async () => {
  const srv = await rawServer();
  const ch = await connectTo(srv.port);
  const peer = await srv.socket;
  const got = collect(peer);
  await ch.send(bulkFrame(10, 1));
  await ch.close();
  const bytes = await got;
  assertBytes(bytes.subarray(0, 12), encodePreface(), 'preface');
  assertFramesEqual(framesAfterPreface(bytes), [bulkFrame(10, 1)], 'after the preface');
}));

test('frames arrive whole and in order across random write splits (connecting side)', deadline(10_000, async () => {
  for (const seed of [1, 2, 3]) {
    const rng = seeded(seed);
    const frames = [...sampleFrames(rng), ...sampleFrames(rng)].map((s) => s.bytes).concat([bulkFrame(40_000, seed)]);
    const stream = concat([encodePreface(), ...frames]);
    const srv = await rawServer();
    const ch = await connectTo(srv.port);
    const r = watch(ch);
    await writeSplit(await srv.socket, stream, randomChunks(rng, stream.length, 12));
    (await srv.socket).end();
    const err = await r.closed;
    assert.is(err?.code, 'MS_ERR_CONNECTION_CLOSED', `seed ${seed}: the peer's close is reported after the frames`);
    assertFramesEqual(r.frames, frames, `seed ${seed}`);
    assert.is(ch.bytesReceived, stream.length, `seed ${seed}: every byte counted`);
    assert.is(ch.peerVersion, PROTOCOL_VERSION);
  }
}));

test('frames arrive whole and in order across random write splits (accepting side, zero-copy reads)', deadline(10_000, async () => {
  const server = await listen({ host: '127.0.0.1', port: 0 });
  servers.push(server);
  const rng = seeded(11);
  const frames = sampleFrames(rng).map((s) => s.bytes).concat([bulkFrame(MAX_BODY, 12), bulkFrame(1, 13)]);
  const stream = concat([encodePreface(), ...frames]);
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect(boundAddress(server).port, '127.0.0.1');
  client.on('error', () => undefined);
  opened.push(client);
  const ch = Channel.accept(await accepted, { maxBody: MAX_BODY, peer: 'source test' });
  opened.push(ch);
  const r = watch(ch);
  await writeSplit(client, stream, randomChunks(rng, stream.length, 14));
  client.end();
  await r.closed;
  assertFramesEqual(r.frames, frames, 'accepted');
}));

test('frames that arrive before setHandlers are delivered when it is called, in order', deadline(10_000, async () => {
  const srv = await rawServer();
  const ch = await connectTo(srv.port);
  const frames = [bulkFrame(5, 1), bulkFrame(6, 2), bulkFrame(7, 3)];
  const peer = await srv.socket;
  // Wait until the channel has read every byte (it buffers whole frames while it has no handlers).
  await new Promise<void>((r) => peer.write(concat([encodePreface(), ...frames]), () => r()));
  await new Promise<void>((resolve) => {
    const poll = (): void => { if (ch.bytesReceived === 12 + frames.reduce((n, f) => n + f.length, 0)) resolve(); else setImmediate(poll); };
    poll();
  });
  const r = watch(ch);
  assertFramesEqual(r.frames, frames, 'delivered by setHandlers');
}));

test('channel to channel: send and sendSegments arrive as whole frames in order, bytes accounted on both ends', deadline(10_000, async () => {
  const server = await listen({ host: '127.0.0.1', port: 0 });
  servers.push(server);
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const a = await connectTo(boundAddress(server).port);
  const b = Channel.accept(await accepted, { maxBody: MAX_BODY, peer: 'source test' });
  opened.push(b);
  const r = watch(b);
  const frames = [bulkFrame(100, 1), bulkFrame(MAX_BODY, 2), bulkFrame(0, 3), bulkFrame(3000, 4)];
  const sends: Promise<void>[] = [];
  for (const f of frames.slice(0, 2)) sends.push(a.send(f));
  // The third and fourth frame split into segments at odd places (header cut in two, body in three).
  const f3 = frames[2];
  sends.push(a.sendSegments([f3.subarray(0, 5), f3.subarray(5)]));
  const f4 = frames[3];
  sends.push(a.sendSegments([f4.subarray(0, 7), f4.subarray(7, 1000), f4.subarray(1000)]));
  await Promise.all(sends);
  const total = frames.reduce((n, f) => n + f.length, 0);
  assert.is(a.bytesSent, total, 'bytesSent counts frames, not the preface');
  await a.close();
  const end = await r.closed;
  assert.is(end?.code, 'MS_ERR_CONNECTION_CLOSED', 'the receiving end sees the sender close');
  assert.is(end?.message, 'source test: connection closed during handshake');
  assertFramesEqual(r.frames, frames, 'channel to channel');
  assert.is(b.bytesReceived, 12 + total, 'bytesReceived counts the preface too');
}));

test('fail() tells its handlers at once and later sends reject with its reason, while the socket lingers for the peer to read the ERROR frame', deadline(10_000, async () => {
  const raw = await rawServer();
  const a = await connectTo(raw.port);
  const peer = await raw.socket;
  let heard: MemshiftError | null = null;
  a.setHandlers({ onFrame: () => undefined, onClosed: (e) => { heard = e; } });
  const why = new MemshiftError(ErrorCode.TIMEOUT, 'test: the peer went quiet');
  a.fail(why);
  // Synchronously: over a dead link, the socket's close would come only when the linger ends.
  assert.is(heard, why, 'the handlers heard the failure at once');
  assert.ok(a.isClosed);
  const late = await a.send(bulkFrame(10, 1)).then(() => null, (e: MemshiftError) => e);
  assert.is(late, why, 'a send after the failure rejects with its reason');
  // The peer still gets the reason: the socket was ended with the ERROR frame, not reset.
  assert.is(errorFrameCode(await collect(peer)), 'MS_ERR_TIMEOUT');
}));

// ---- cuts and limits --------------------------------------------------------------------------------

test('a link closed mid-frame is MS_ERR_CONNECTION_CLOSED naming peer and phase; the partial frame is never delivered', deadline(10_000, async () => {
  const srv = await rawServer();
  const ch = await connectTo(srv.port);
  ch.phase = 'pre-copy pass 2';
  const r = watch(ch);
  const whole = bulkFrame(300, 1);
  const cut = bulkFrame(5000, 2);
  const peer = await srv.socket;
  await writeSplit(peer, concat([encodePreface(), whole, cut.subarray(0, 2500)]), [12 + whole.length, 2500]);
  peer.end();
  const err = await r.closed;
  assert.is(err?.code, 'MS_ERR_CONNECTION_CLOSED');
  assert.is(err?.message, `destination 127.0.0.1:${srv.port}: connection closed during pre-copy pass 2`);
  assert.is(err?.details.peer, `destination 127.0.0.1:${srv.port}`);
  assert.is(err?.details.phase, 'pre-copy pass 2');
  assertFramesEqual(r.frames, [whole], 'only the whole frame');
  assert.ok(ch.isClosed);
}));

test('a link reset mid-header is MS_ERR_CONNECTION_CLOSED naming peer and phase', deadline(10_000, async () => {
  const srv = await rawServer();
  const ch = await connectTo(srv.port);
  ch.phase = 'switchover';
  const r = watch(ch);
  const peer = await srv.socket;
  await writeSplit(peer, concat([encodePreface(), bulkFrame(10, 1).subarray(0, 9)]), [21]);
  peer.resetAndDestroy();
  const err = await r.closed;
  assert.is(err?.code, 'MS_ERR_CONNECTION_CLOSED');
  assert.match(err!.message, new RegExp(`^destination 127\\.0\\.0\\.1:${srv.port}: .+ during switchover$`));
  assert.is(err?.details.phase, 'switchover');
  assert.is(r.frames.length, 0);
}));

test('a length field one past the channel limit is MS_ERR_FRAME_TOO_LARGE on the header alone, and the peer is told', deadline(10_000, async () => {
  const srv = await rawServer();
  const ch = await connectTo(srv.port, { maxBody: MAX_BODY });
  const r = watch(ch);
  const peer = await srv.socket;
  const answer = collect(peer);
  // Only the 16-byte header: the body never comes, so a channel that waited for it would hang.
  const header = bulkFrame(MAX_BODY + 1, 1).subarray(0, FRAME_HEADER_BYTES);
  peer.write(concat([encodePreface(), header]));
  const err = await r.closed;
  assert.is(err?.code, 'MS_ERR_FRAME_TOO_LARGE');
  assert.is(err?.details.limit, MAX_BODY);
  assert.is(err?.details.value, MAX_BODY + 1);
  assert.is(errorFrameCode(await answer), 'MS_ERR_FRAME_TOO_LARGE', 'the ERROR frame names the limit error');
  assert.is(r.frames.length, 0);
  const late = await ch.send(bulkFrame(1, 2)).then(() => null, (e: MemshiftError) => e);
  assert.is(late?.code, 'MS_ERR_FRAME_TOO_LARGE', 'a send after the failure rejects with the failure');
}));

test('a frame of exactly the channel limit is accepted', deadline(10_000, async () => {
  const srv = await rawServer();
  const ch = await connectTo(srv.port, { maxBody: MAX_BODY });
  const r = watch(ch);
  const peer = await srv.socket;
  const frame = bulkFrame(MAX_BODY, 3);
  await writeSplit(peer, concat([encodePreface(), frame]), [12, 16, MAX_BODY]);
  peer.end();
  await r.closed;
  assertFramesEqual(r.frames, [frame], 'limit');
}));

test('a peer that is not memshift is MS_ERR_HANDSHAKE_MAGIC and receives an ERROR frame saying so', deadline(10_000, async () => {
  const srv = await rawServer();
  const ch = await connectTo(srv.port);
  const r = watch(ch);
  const peer = await srv.socket;
  const answer = collect(peer);
  peer.write('GET / HTTP/1.1\r\n');
  const err = await r.closed;
  assert.is(err?.code, 'MS_ERR_HANDSHAKE_MAGIC');
  assert.is(ch.peerVersion, null);
  assert.is(errorFrameCode(await answer), 'MS_ERR_HANDSHAKE_MAGIC');
}));

// ---- closing ----------------------------------------------------------------------------------------

test('close() ends with onClosed(null); a send after it rejects with MS_ERR_CONNECTION_CLOSED naming peer and phase', deadline(10_000, async () => {
  const srv = await rawServer();
  const ch = await connectTo(srv.port);
  ch.phase = 'completion';
  const r = watch(ch);
  const peer = await srv.socket;
  const got = collect(peer);
  await ch.send(bulkFrame(8, 1));
  const closing = ch.close();
  const during = await ch.send(bulkFrame(8, 2)).then(() => null, (e: MemshiftError) => e);
  assert.is(during?.code, 'MS_ERR_CONNECTION_CLOSED', 'a send while closing rejects');
  await closing;
  assert.is(await r.closed, null, 'our own close is not an error');
  const after = await ch.send(bulkFrame(8, 3)).then(() => null, (e: MemshiftError) => e);
  assert.is(after?.code, 'MS_ERR_CONNECTION_CLOSED');
  assert.is(after?.message, `destination 127.0.0.1:${srv.port}: channel is closed during completion`);
  assert.is(after?.details.phase, 'completion');
  peer.end();
  assertFramesEqual(framesAfterPreface(await got), [bulkFrame(8, 1)], 'only the frame sent before close');
}));

// ---- back-pressure ----------------------------------------------------------------------------------

test('send resolves only once the socket took the bytes: sends to a peer that stopped reading stay pending until it reads', deadline(20_000, async () => {
  const srv = await rawServer();
  const ch = await connectTo(srv.port);
  watch(ch);
  const peer = await srv.socket;
  peer.pause();
  // 64 MiB is more than the kernel buffers of a loopback connection hold (send buffer at most
  // tcp_wmem[2] + receive buffer at most tcp_rmem[2]), so the last sends cannot complete unread.
  const COUNT = 64;
  const frame = bulkFrame(2 ** 20, 5);
  let peerRead = 0;
  const order: number[] = [];
  const readWhenSettled: number[] = [];
  const sends: Promise<void>[] = [];
  for (let k = 0; k < COUNT; k++) {
    sends.push(ch.send(frame).then(() => {
      order.push(k);
      readWhenSettled[k] = peerRead;
    }));
  }
  await new Promise((r) => setImmediate(r));
  assert.ok(ch.queuedBytes > 0, 'bytes wait in user space while the peer does not read');
  assert.ok(order.length < COUNT, `${order.length} of ${COUNT} sends resolved before the peer read anything`);
  // Now the peer reads: everything drains, in order, and arrives whole.
  const reader = new FrameReader(new Uint8Array(receiveBufferBytes(2 ** 20)), 2 ** 20);
  let preface = false;
  let whole = 0;
  peer.on('data', (d: Buffer) => {
    peerRead += d.length;
    reader.push(d, () => {
      if (!preface && reader.buffered >= 12) {
        reader.discard(12);
        preface = true;
      }
      if (!preface) return;
      for (let f = reader.next(); f !== null; f = reader.next()) {
        if (Buffer.compare(f.buf.subarray(f.offset, f.offset + frame.length), frame) === 0) whole++;
      }
    });
  });
  peer.resume();
  await Promise.all(sends);
  assert.equal(order, Array.from({ length: COUNT }, (_, k) => k), 'sends resolved in the order they were made');
  assert.ok(readWhenSettled[COUNT - 1] > 0, 'the last send resolved only after the peer had read');
  assert.is(ch.queuedBytes, 0, 'nothing left queued once every send resolved');
  const ended = new Promise((r) => peer.once('end', r));
  await ch.close();
  await ended;
  assert.is(whole, COUNT, 'every frame arrived whole');
}));

// ---- switchReceiveBuffer ----------------------------------------------------------------------------

test('switchReceiveBuffer inside a frame handler carries the buffered bytes over: later frames arrive whole, in the new buffer', deadline(10_000, async () => {
  const srv = await rawServer();
  const ch = await connectTo(srv.port, { maxBody: 4096 });
  const r = watch(ch);
  const bigger = 300_000;
  const next = new Uint8Array(receiveBufferBytes(bigger));
  let switchedAt = -1;
  r.onFrame = () => {
    if (switchedAt < 0) {
      switchedAt = r.frames.length;
      ch.switchReceiveBuffer(next, bigger);
    }
  };
  const frames = [bulkFrame(100, 1), bulkFrame(200, 2), bulkFrame(bigger, 3), bulkFrame(50, 4)];
  const peer = await srv.socket;
  // The first write holds frame 0, all of frame 1 and part of frame 2: buffered when the switch happens.
  const stream = concat([encodePreface(), ...frames]);
  await writeSplit(peer, stream, [12 + 100 + 16 + 200 + 16 + 1000, stream.length - (12 + 100 + 16 + 200 + 16 + 1000)]);
  peer.end();
  await r.closed;
  assert.is(switchedAt, 1);
  assertFramesEqual(r.frames, frames, 'across the switch');
  for (let i = 1; i < frames.length; i++) assert.ok(r.bufs[i] === next, `frame ${i} was read from the new buffer`);
}));

test('switchReceiveBuffer between reads keeps the next read intact, even one Node already aimed at the old buffer', deadline(10_000, async () => {
  const srv = await rawServer();
  const old = new Uint8Array(receiveBufferBytes(4096));
  const ch = await connectTo(srv.port, { maxBody: 4096, receiveBuffer: old });
  const r = watch(ch);
  const peer = await srv.socket;
  const first = bulkFrame(64, 1);
  await writeSplit(peer, concat([encodePreface(), first]), [12 + first.length]);
  while (r.frames.length < 1) await new Promise((res) => setImmediate(res));
  assert.ok(r.bufs[0] === old);
  const next = new Uint8Array(receiveBufferBytes(100_000));
  ch.switchReceiveBuffer(next, 100_000);
  const later = [bulkFrame(3000, 2), bulkFrame(100_000, 3)];
  await writeSplit(peer, concat(later), [1500, 3016 - 1500 + 16, 100_000]);
  peer.end();
  await r.closed;
  assertFramesEqual(r.frames, [first, ...later], 'across the switch');
  assert.ok(r.bufs[1] === next && r.bufs[2] === next, 'frames after the switch live in the new buffer');
}));

test.run();
