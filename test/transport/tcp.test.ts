// tcp (src/transport/tcp.ts): address parsing at its limits, listening, and connecting over real
// loopback sockets. Failures are typed and name the address: refused (nothing listens), no answer (a
// listener whose accept queue is full drops the SYN), cancelled (AbortSignal). Reads land in the
// sink's own buffer (the zero-copy path), both on connecting sockets and on accepted ones that
// readInto re-wraps; its copying fallback splits chunks that do not fit the sink's buffer.

import net from 'node:net';
import { PassThrough } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { boundAddress, connect, formatAddress, listen, parseAddress, readInto, type ReadSink } from '../../src/transport/tcp.js';
import { expectCode, expectCodeAsync } from '../_support/guest-helpers.js';
import { seeded } from '../_support/seeded.js';
import { deadline } from '../_support/deadline.js';

const LOOPBACK = { host: '127.0.0.1', port: 0 };

type Failure = Error & { code: string; details: { peer: string; phase: string; field: string } };

/** A sink that records every read: the buffers it handed out and what landed in them. */
function recordingSink(size: number): ReadSink & { reads: Uint8Array[]; handed: Uint8Array[]; bytes(): Buffer } {
  const reads: Uint8Array[] = [];
  const handed: Uint8Array[] = [];
  let last: Uint8Array | null = null;
  return {
    reads,
    handed,
    buffer() {
      last = new Uint8Array(size);
      handed.push(last);
      return last;
    },
    onRead(n) {
      reads.push(last!.slice(0, n));
    },
    bytes: () => Buffer.concat(reads),
  };
}

/** A port on 127.0.0.1 where nothing listens (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = await listen(LOOPBACK);
  const { port } = boundAddress(server);
  await new Promise((r) => server.close(r));
  return port;
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 5000 && !check(); i++) await new Promise((r) => setTimeout(r, 2));
  assert.ok(check(), `gave up waiting: ${what}`);
}

// ---- parseAddress / formatAddress -----------------------------------------------------------------

test('parseAddress reads HOST:PORT and [IPv6]:PORT', () => {
  assert.equal(parseAddress('127.0.0.1:7000', '--listen'), { host: '127.0.0.1', port: 7000 });
  assert.equal(parseAddress('[::1]:8080', '--listen'), { host: '::1', port: 8080 });
  assert.equal(parseAddress('localhost:1', '--connect'), { host: 'localhost', port: 1 });
});

test('parseAddress accepts ports 0 and 65535 and rejects 65536, naming the flag', () => {
  assert.is(parseAddress('127.0.0.1:0', '--listen').port, 0);
  assert.is(parseAddress('127.0.0.1:65535', '--listen').port, 65535);
  const e = expectCode(() => parseAddress('127.0.0.1:65536', '--listen'), 'MS_ERR_INVALID_ARGUMENT') as unknown as Failure;
  assert.is(e.details.field, '--listen');
  assert.match(e.message, /--listen must have a port in \[0, 65535\]/);
});

test('parseAddress rejects text that is not HOST:PORT, naming the flag and the text', () => {
  for (const bad of ['127.0.0.1', ':7000', '127.0.0.1:', '127.0.0.1:x', '::1:7000', '[::1]7000', '']) {
    const e = expectCode(() => parseAddress(bad, '--connect'), 'MS_ERR_INVALID_ARGUMENT', JSON.stringify(bad));
    assert.match(e.message, /^--connect must be HOST:PORT/, JSON.stringify(bad));
  }
});

test('formatAddress brackets IPv6 hosts, and parseAddress reads back what it wrote', () => {
  assert.is(formatAddress({ host: '::1', port: 9 }), '[::1]:9');
  assert.is(formatAddress({ host: '127.0.0.1', port: 9 }), '127.0.0.1:9');
  for (const a of [{ host: '::1', port: 0 }, { host: 'fe80::1', port: 65535 }, { host: '127.0.0.2', port: 4242 }]) {
    assert.equal(parseAddress(formatAddress(a), 'x'), a);
  }
});

// ---- listen / boundAddress ------------------------------------------------------------------------

test('listen on port 0 binds a free port that boundAddress reports', deadline(10_000, async () => {
  const server = await listen(LOOPBACK);
  try {
    const a = boundAddress(server);
    assert.is(a.host, '127.0.0.1');
    assert.ok(a.port > 0 && a.port <= 65535, `port ${a.port}`);
  } finally {
    server.close();
  }
}));

test('listening on a port already in use fails with MS_ERR_CONNECTION_FAILED naming the address', deadline(10_000, async () => {
  const first = await listen(LOOPBACK);
  const { port } = boundAddress(first);
  try {
    const e = await expectCodeAsync(() => listen({ host: '127.0.0.1', port }), 'MS_ERR_CONNECTION_FAILED') as unknown as Failure;
    assert.match(e.message, `cannot listen on 127.0.0.1:${port}`);
    assert.is(e.details.peer, `127.0.0.1:${port}`);
    assert.is(e.details.phase, 'listen');
  } finally {
    first.close();
  }
}));

test('boundAddress of a server that is not listening is MS_ERR_CONNECTION_FAILED', () => {
  expectCode(() => boundAddress(net.createServer()), 'MS_ERR_CONNECTION_FAILED');
});

// ---- connect failures -----------------------------------------------------------------------------

test('connecting where nothing listens is MS_ERR_CONNECTION_FAILED naming the address and phase', deadline(10_000, async () => {
  const port = await closedPort();
  const e = await expectCodeAsync(() => connect({ host: '127.0.0.1', port }, recordingSink(64)), 'MS_ERR_CONNECTION_FAILED') as unknown as Failure;
  assert.match(e.message, `cannot connect to 127.0.0.1:${port}: `);
  assert.match(e.message, /ECONNREFUSED/);
  assert.is(e.details.peer, `127.0.0.1:${port}`);
  assert.is(e.details.phase, 'connect');
}));

test('a connect that is never answered fails after timeoutMs with MS_ERR_CONNECTION_FAILED naming the address', deadline(10_000, async () => {
  // A listener on a worker whose event loop is blocked never accepts: once its backlog is full the
  // kernel drops further SYNs, so a connect gets no answer at all.
  const gate = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    const server = require('node:net').createServer();
    server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      parentPort.postMessage(server.address().port);
      Atomics.wait(workerData, 0, 0);
      server.close();
    });`, { eval: true, workerData: gate });
  const fillers: net.Socket[] = [];
  try {
    const port = await new Promise<number>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const failures: Failure[] = [];
    for (let i = 0; i < 16 && failures.length === 0; i++) {
      try {
        fillers.push(await connect({ host: '127.0.0.1', port }, recordingSink(64), { timeoutMs: 300 }));
      } catch (err) {
        failures.push(err as Failure);
      }
    }
    const failure = failures[0];
    assert.ok(failure !== undefined, `all of ${fillers.length} connects were answered: the backlog never filled`);
    assert.ok(fillers.length >= 1, 'the listener answered while its backlog had room');
    assert.is(failure.code, 'MS_ERR_CONNECTION_FAILED');
    assert.is(failure.message, `cannot connect to 127.0.0.1:${port}: no answer within 300 ms`);
    assert.is(failure.details.peer, `127.0.0.1:${port}`);
    assert.is(failure.details.phase, 'connect');
  } finally {
    for (const s of fillers) s.destroy();
    Atomics.store(gate, 0, 1);
    Atomics.notify(gate, 0);
    await worker.terminate();
  }
}));

test('aborting the signal while connecting is MS_ERR_CANCELLED naming the address', deadline(10_000, async () => {
  const server = await listen(LOOPBACK);
  const { port } = boundAddress(server);
  try {
    const ac = new AbortController();
    const pending = connect({ host: '127.0.0.1', port }, recordingSink(64), { signal: ac.signal });
    ac.abort(); // before the event loop can complete the connect
    const e = await expectCodeAsync(() => pending, 'MS_ERR_CANCELLED') as unknown as Failure;
    assert.is(e.message, `cannot connect to 127.0.0.1:${port}: cancelled`);
    assert.is(e.details.peer, `127.0.0.1:${port}`);
  } finally {
    server.close();
  }
}));

test('a signal aborted before connect is called is MS_ERR_CANCELLED too', deadline(10_000, async () => {
  const server = await listen(LOOPBACK);
  const { port } = boundAddress(server);
  try {
    const e = await expectCodeAsync(() => connect({ host: '127.0.0.1', port }, recordingSink(64), { signal: AbortSignal.abort() }), 'MS_ERR_CANCELLED') as unknown as Failure;
    assert.is(e.message, `cannot connect to 127.0.0.1:${port}: cancelled`);
  } finally {
    server.close();
  }
}));

// ---- reading into the sink ------------------------------------------------------------------------

test('a connected socket reads straight into the buffers the sink hands out, bytes in order', deadline(10_000, async () => {
  const payload = new Uint8Array(3 * 2 ** 20 + 17);
  seeded(7).fill(payload);
  const server = net.createServer((s) => {
    s.end(payload);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sink = recordingSink(64 * 1024);
  try {
    const socket = await connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }, sink);
    await new Promise((r) => socket.once('close', r));
    assert.ok(sink.reads.length >= payload.length / (64 * 1024), `${sink.reads.length} reads of at most 64 KiB`);
    assert.ok(sink.reads.every((r) => r.length <= 64 * 1024), 'no read exceeds the buffer it was given');
    assert.ok(Buffer.compare(sink.bytes(), Buffer.from(payload)) === 0, 'the bytes arrived whole and in order');
  } finally {
    server.close();
  }
}));

test('readInto re-wraps an accepted socket to read into the sink (zero-copy), bytes in order', deadline(10_000, async () => {
  const server = await listen(LOOPBACK);
  const payload = new Uint8Array(2 * 2 ** 20 + 5);
  seeded(8).fill(payload);
  const sink = recordingSink(32 * 1024);
  try {
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const client = net.connect(boundAddress(server).port, '127.0.0.1', () => client.end(payload));
    client.on('error', () => undefined);
    const raw = await accepted;
    const socket = readInto(raw, sink);
    assert.ok(socket !== raw, 'the zero-copy path took the handle over into a new socket');
    await new Promise((r) => socket.once('end', r));
    socket.destroy();
    assert.ok(sink.reads.every((r) => r.length <= 32 * 1024));
    assert.ok(Buffer.compare(sink.bytes(), Buffer.from(payload)) === 0, 'the bytes arrived whole and in order');
  } finally {
    server.close();
  }
}));

test('readInto without a handle copies data chunks, splitting each to fit the sink buffer', deadline(10_000, async () => {
  const fake = new PassThrough() as PassThrough & { _handle: null };
  fake._handle = null;
  const sink = recordingSink(7);
  const socket = readInto(fake as unknown as net.Socket, sink);
  assert.ok(socket === (fake as unknown), 'the fallback keeps the socket it was given');
  const chunks = [Buffer.from('abcdefghijklmnopqrstu'), Buffer.from('v'), Buffer.from('wxyz0123456789')];
  for (const c of chunks) fake.write(c);
  const total = chunks.reduce((n, c) => n + c.length, 0);
  await until(() => sink.bytes().length === total, 'all chunks copied');
  assert.equal(sink.reads.map((r) => r.length), [7, 7, 7, 1, 7, 7]);
  assert.is(sink.bytes().toString(), 'abcdefghijklmnopqrstuvwxyz0123456789');
}));

test.run();
