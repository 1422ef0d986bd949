// The handshake (src/protocol/handshake.ts): preface, HELLO and HELLO_ACK against hand-written hex
// fixtures, random round trips, every-prefix truncation, and each rule of the grammar at its limit:
// magic rejected at the first differing byte, versions outside [MIN, CURRENT], region count, name
// length, page size, page count, duplicate ids, unknown role, mode and kind.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Capability, ChannelRole, DISK_REGION_BASE, FrameType, Limits, MIN_PROTOCOL_VERSION, PREFACE_MAGIC, PROTOCOL_VERSION } from '../../src/protocol/constants.js';
import { readFrameHeader, verifyFrame } from '../../src/protocol/frame.js';
import {
  decodeHello, decodeHelloAck, decodePreface, encodeHello, encodeHelloAck, encodePreface, type Hello,
} from '../../src/protocol/handshake.js';
import { assertBytes, bodyOf, expectCode, randomBytes, randomHello, readFixture } from '../_support/protocol-helpers.js';
import { seeded } from '../_support/seeded.js';

const SESSION = Uint8Array.from({ length: 16 }, (_, i) => i);

/** Decodes a whole frame's body after checking its header and CRC, as the driver does. */
function bodyAfterChecks(frame: Uint8Array, type: number): Uint8Array {
  const h = readFrameHeader(frame, 0, frame.length);
  assert.ok(h !== null);
  assert.is(h.type, type);
  verifyFrame(frame, 0, h);
  assert.is(frame.length, 16 + h.bodyLength);
  return bodyOf(frame);
}

// ---- hand-built HELLO bodies for hostile cases ----------------------------------------------------

interface RawRegion { id: number; kind: number; log2: number; pageCount: number; name: Uint8Array }

function helloBody(o: { role?: number; mode?: number; count?: number; caps?: number; regions: RawRegion[]; trailing?: number }): Uint8Array {
  const parts: number[] = [...SESSION, o.role ?? 0, o.mode ?? 0];
  const u16 = (v: number): void => { parts.push(v & 0xff, v >>> 8); };
  const u32 = (v: number): void => { parts.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24); };
  u16(o.count ?? o.regions.length);
  u32(o.caps ?? 0);
  for (const r of o.regions) {
    u16(r.id);
    parts.push(r.kind, r.log2);
    u32(r.pageCount);
    parts.push(r.name.length, ...r.name);
  }
  for (let i = 0; i < (o.trailing ?? 0); i++) parts.push(0);
  return new Uint8Array(parts);
}

const region = (over: Partial<RawRegion> = {}): RawRegion => ({ id: 1, kind: 0, log2: 12, pageCount: 16, name: new Uint8Array(Buffer.from('ram')), ...over });
const decodeBody = (b: Uint8Array): Hello => decodeHello(b, 0, b.length);

// ---- preface ----------------------------------------------------------------------------------------

test('the preface fixture is what encodePreface writes, and decodes to version 5', () => {
  const fixture = readFixture('preface.hex');
  assertBytes(encodePreface(), fixture, 'encodePreface()');
  assert.is(decodePreface(fixture, 0, fixture.length), 5);
  assert.is(PROTOCOL_VERSION, 5);
  assert.is(MIN_PROTOCOL_VERSION, 4, 'a v4 source (which never sends DISKS or BLOCKS) is still accepted');
});

test('decodePreface returns null for every proper prefix of a valid preface', () => {
  const p = encodePreface();
  for (let k = 0; k < p.length; k++) {
    assert.is(decodePreface(p, 0, k), null, `${k} bytes`);
    assert.is(decodePreface(p.subarray(0, k), 0, k), null, `${k} bytes, exact buffer`);
  }
});

test('decodePreface reads at an offset and ignores bytes after the preface', () => {
  const buf = new Uint8Array(40).fill(0x99);
  buf.set(encodePreface(), 7);
  assert.is(decodePreface(buf, 7, 40), PROTOCOL_VERSION);
  assert.is(decodePreface(buf, 7, 18), null);
});

test('rejects an HTTP request with MS_ERR_HANDSHAKE_MAGIC as soon as its first byte arrives', () => {
  const get = new Uint8Array(Buffer.from('GET / HTTP/1.1\r\n'));
  for (let k = 1; k <= get.length; k++) expectCode(() => decodePreface(get, 0, k), 'MS_ERR_HANDSHAKE_MAGIC', `${k} bytes of GET`);
  assert.is(decodePreface(get, 0, 0), null, 'no bytes yet');
});

test('rejects a wrong magic at the first differing byte, whichever byte it is', () => {
  for (let i = 0; i < PREFACE_MAGIC.length; i++) {
    const p = encodePreface();
    p[i] ^= 0x20;
    for (let k = 0; k <= i; k++) assert.is(decodePreface(p, 0, k), null, `byte ${i} wrong, ${k} bytes in`);
    for (let k = i + 1; k <= p.length; k++) expectCode(() => decodePreface(p, 0, k), 'MS_ERR_HANDSHAKE_MAGIC', `byte ${i} wrong, ${k} bytes in`);
  }
});

test('rejects version 0 and PROTOCOL_VERSION+1 (and 0xffff) with MS_ERR_HANDSHAKE_VERSION', () => {
  for (const v of [0, MIN_PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1, 0xffff]) {
    const p = encodePreface(v);
    const e = expectCode(() => decodePreface(p, 0, 12), 'MS_ERR_HANDSHAKE_VERSION', `version ${v}`);
    assert.ok(e.message.includes(String(v)), e.message);
    assert.is(decodePreface(p, 0, 11), null, `version ${v} is not judged before its bytes arrive`);
  }
  assert.is(decodePreface(encodePreface(MIN_PROTOCOL_VERSION), 0, 12), MIN_PROTOCOL_VERSION);
});

test('rejects a non-zero reserved field in the preface with MS_ERR_FRAME_MALFORMED', () => {
  for (const b of [10, 11]) {
    const p = encodePreface();
    p[b] = 1;
    expectCode(() => decodePreface(p, 0, 12), 'MS_ERR_FRAME_MALFORMED', `byte ${b}`);
  }
});

// ---- HELLO ------------------------------------------------------------------------------------------

const FIXTURE_HELLO: Hello = {
  session: SESSION, role: ChannelRole.BULK, mode: 'hybrid', capabilities: Capability.XBZRLE | Capability.POSTCOPY,
  regions: [{ id: 7, name: 'ram', kind: 'ram', pageSize: 4096, pageCount: 0x12345 }],
};

test('HELLO with one region encodes to the fixture bytes and the fixture decodes to it', () => {
  const fixture = readFixture('hello.hex');
  assertBytes(encodeHello(FIXTURE_HELLO), fixture, 'encodeHello');
  const body = bodyAfterChecks(fixture, FrameType.HELLO);
  assert.equal(decodeBody(body), FIXTURE_HELLO);
});

test('HELLO_ACK encodes to the fixture bytes and the fixture decodes to it', () => {
  const fixture = readFixture('hello-ack.hex');
  const ack = { session: SESSION, capabilities: Capability.XBZRLE, urgentPort: 8080 };
  assertBytes(encodeHelloAck(ack), fixture, 'encodeHelloAck');
  const body = bodyAfterChecks(fixture, FrameType.HELLO_ACK);
  assert.equal(decodeHelloAck(body, 0, body.length), ack);
});

test('HELLO round-trips random values (1..64 regions, names up to 64 bytes, 4..64 KiB pages)', () => {
  const rng = seeded(21);
  for (let i = 0; i < 300; i++) {
    const h = randomHello(rng, i < 10 ? Limits.MAX_REGIONS : undefined);
    const frame = encodeHello(h);
    const body = bodyAfterChecks(frame, FrameType.HELLO);
    assert.equal(decodeBody(body), h, `case ${i}`);
  }
});

test('HELLO_ACK round-trips random values', () => {
  const rng = seeded(22);
  for (let i = 0; i < 300; i++) {
    const a = { session: randomBytes(rng, 16), capabilities: rng.u32(), urgentPort: rng.below(0x10000) };
    const body = bodyAfterChecks(encodeHelloAck(a), FrameType.HELLO_ACK);
    assert.equal(decodeHelloAck(body, 0, body.length), a, `case ${i}`);
  }
});

test('decodeHello returns a session copy that does not alias the receive buffer', () => {
  const body = bodyOf(encodeHello(FIXTURE_HELLO)).slice();
  const h = decodeBody(body);
  body.fill(0xee, 0, 16);
  assert.equal([...h.session], [...SESSION]);
});

test('every truncation of a HELLO or HELLO_ACK body throws MS_ERR_FRAME_MALFORMED', () => {
  const rng = seeded(23);
  for (let round = 0; round < 5; round++) {
    const hello = bodyOf(encodeHello(randomHello(rng, 1 + rng.below(4))));
    const ack = bodyOf(encodeHelloAck({ session: randomBytes(rng, 16), capabilities: rng.u32(), urgentPort: rng.below(0x10000) }));
    for (const [name, body, decode] of [['HELLO', hello, decodeHello], ['HELLO_ACK', ack, decodeHelloAck]] as const) {
      for (let k = 0; k < body.length; k++) {
        expectCode(() => decode(body, 0, k), 'MS_ERR_FRAME_MALFORMED', `${name} cut to ${k} of ${body.length} (rest still in the buffer)`);
        expectCode(() => decode(body.slice(0, k), 0, k), 'MS_ERR_FRAME_MALFORMED', `${name} cut to ${k} (exact buffer)`);
      }
    }
  }
});

test('rejects a HELLO body that claims more bytes than its buffer holds', () => {
  const body = bodyOf(encodeHello(FIXTURE_HELLO)).slice();
  expectCode(() => decodeHello(body, 0, body.length + 1), 'MS_ERR_FRAME_MALFORMED');
  expectCode(() => decodeHello(body, 1, body.length), 'MS_ERR_FRAME_MALFORMED');
});

test('rejects trailing bytes after the last region', () => {
  expectCode(() => decodeBody(helloBody({ regions: [region()], trailing: 1 })), 'MS_ERR_FRAME_MALFORMED');
  expectCode(() => decodeHelloAck(new Uint8Array(25), 0, 25), 'MS_ERR_FRAME_MALFORMED', 'HELLO_ACK + 1 byte');
});

test('rejects a HELLO_ACK whose reserved field is not zero', () => {
  for (const at of [22, 23]) {
    const body = bodyOf(encodeHelloAck({ session: SESSION, capabilities: 0, urgentPort: 9000 })).slice();
    body[at] = 1;
    expectCode(() => decodeHelloAck(body, 0, body.length), 'MS_ERR_FRAME_MALFORMED', `byte ${at}`);
  }
});

test('accepts 64 regions and rejects 0 and 65 (MAX_REGIONS+1) with MS_ERR_FRAME_MALFORMED', () => {
  const regions = (n: number): RawRegion[] => Array.from({ length: n }, (_, i) => region({ id: i }));
  assert.is(decodeBody(helloBody({ regions: regions(Limits.MAX_REGIONS) })).regions.length, 64);
  expectCode(() => decodeBody(helloBody({ regions: regions(Limits.MAX_REGIONS + 1) })), 'MS_ERR_FRAME_MALFORMED', '65 regions');
  expectCode(() => decodeBody(helloBody({ regions: [] })), 'MS_ERR_FRAME_MALFORMED', '0 regions');
  expectCode(() => decodeBody(helloBody({ count: 0xffff, regions: regions(1) })), 'MS_ERR_FRAME_MALFORMED', 'count 65535');
});

test('accepts a 64-byte region name and rejects 65 bytes, encoding and decoding', () => {
  const name64 = 'n'.repeat(64);
  assert.is(decodeBody(helloBody({ regions: [region({ name: new Uint8Array(Buffer.from(name64)) })] })).regions[0].name, name64);
  const e = expectCode(() => decodeBody(helloBody({ regions: [region({ name: new Uint8Array(65).fill(0x6e) })] })), 'MS_ERR_FRAME_MALFORMED', '65-byte name');
  assert.ok(e.message.includes('65'), e.message);
  expectCode(() => decodeBody(helloBody({ regions: [region({ name: new Uint8Array(255).fill(0x6e) })] })), 'MS_ERR_FRAME_MALFORMED', '255-byte name');
  const hello = { ...FIXTURE_HELLO, regions: [{ ...FIXTURE_HELLO.regions[0], name: 'é'.repeat(33) }] }; // 66 UTF-8 bytes, 33 chars
  expectCode(() => encodeHello(hello), 'MS_ERR_FRAME_MALFORMED', 'encode 66-byte name');
  assert.is(decodeBody(bodyOf(encodeHello({ ...hello, regions: [{ ...hello.regions[0], name: 'é'.repeat(32) }] }))).regions[0].name, 'é'.repeat(32));
});

test('accepts region id 0x7fff and rejects 0x8000 and 0xffff: ids from DISK_REGION_BASE name disks in MISSING_PAGES and PAGE_REQUEST', () => {
  assert.is(decodeBody(helloBody({ regions: [region({ id: DISK_REGION_BASE - 1 })] })).regions[0].id, DISK_REGION_BASE - 1);
  for (const id of [DISK_REGION_BASE, 0xffff]) {
    const e = expectCode(() => decodeBody(helloBody({ regions: [region({ id })] })), 'MS_ERR_FRAME_MALFORMED', `id ${id}`);
    assert.match(e.message, /name disks/);
  }
});

test('rejects a duplicate region id with MS_ERR_FRAME_MALFORMED', () => {
  const e = expectCode(() => decodeBody(helloBody({ regions: [region({ id: 5 }), region({ id: 6 }), region({ id: 5 })] })), 'MS_ERR_FRAME_MALFORMED');
  assert.ok(e.message.includes('5'), e.message);
});

test('accepts page sizes 2^12 and 2^16 and rejects 2^11 and 2^17', () => {
  assert.is(decodeBody(helloBody({ regions: [region({ log2: 12 })] })).regions[0].pageSize, 4096);
  assert.is(decodeBody(helloBody({ regions: [region({ log2: 16 })] })).regions[0].pageSize, 65536);
  for (const log2 of [0, 11, 17, 255]) expectCode(() => decodeBody(helloBody({ regions: [region({ log2 })] })), 'MS_ERR_FRAME_MALFORMED', `2^${log2}`);
});

test('rejects a region of zero pages and accepts 2^32-1 pages', () => {
  expectCode(() => decodeBody(helloBody({ regions: [region({ pageCount: 0 })] })), 'MS_ERR_FRAME_MALFORMED');
  assert.is(decodeBody(helloBody({ regions: [region({ pageCount: 0xffffffff })] })).regions[0].pageCount, 0xffffffff);
});

test('rejects an unknown role, mode or region kind with MS_ERR_FRAME_MALFORMED', () => {
  expectCode(() => decodeBody(helloBody({ role: 5, regions: [region()] })), 'MS_ERR_FRAME_MALFORMED', 'role 5');
  expectCode(() => decodeBody(helloBody({ role: 255, regions: [region()] })), 'MS_ERR_FRAME_MALFORMED', 'role 255');
  expectCode(() => decodeBody(helloBody({ mode: 5, regions: [region()] })), 'MS_ERR_FRAME_MALFORMED', 'mode 5');
  expectCode(() => decodeBody(helloBody({ regions: [region({ kind: 2 })] })), 'MS_ERR_FRAME_MALFORMED', 'kind 2');
  assert.is(decodeBody(helloBody({ role: 1, mode: 4, regions: [region({ kind: 1 })] })).regions[0].kind, 'disk');
});

test('decodes role 2 as a QUERY channel (protocol version 3)', () => {
  assert.is(decodeBody(helloBody({ role: 2, regions: [region()] })).role, ChannelRole.QUERY);
  assert.is(ChannelRole.QUERY, 2);
});

test('decodes role 3 as a RECOVER channel (protocol version 4)', () => {
  assert.is(decodeBody(helloBody({ role: 3, regions: [region()] })).role, ChannelRole.RECOVER);
  assert.is(ChannelRole.RECOVER, 3);
});

test('encodeHello rejects a session id that is not 16 bytes', () => {
  expectCode(() => encodeHello({ ...FIXTURE_HELLO, session: new Uint8Array(15) }), 'MS_ERR_FRAME_MALFORMED');
});

test.run();
