// The session handshake. Each side first sends a 12-byte preface, then the source sends HELLO and the
// destination answers HELLO_ACK (or an ERROR frame naming why it refuses).
//
//   preface  := "MEMSHIFT" u16:version u16:reserved(0)
//
//   HELLO    := session[16] role:u8 mode:u8 regionCount:u16 capabilities:u32 region{regionCount}
//   region   := id:u16 kind:u8 log2PageSize:u8 pageCount:u32 nameLength:u8 name[nameLength]
//   HELLO_ACK:= session[16] capabilities:u32 urgentPort:u16 reserved:u16(0)
//
// role: 0 bulk (pages and control), 1 urgent (post-copy page requests; same session id), 2 query
// (v3: "did you resume this session?" after the bulk link was lost past SWITCHOVER; same session id,
// answered RESUMED, then COMPLETE from the source, or ERROR MS_ERR_NOT_RESUMED), 3 recover (v4: a new
// bulk channel for a post-copy session whose link was lost; same session id and TLS peer; answered
// MISSING_PAGES* naming what the destination still lacks, then HELLO_ACK with a new urgent port). mode is the
// source's migration mode, for the destination's log and report. urgentPort: when post-copy was
// negotiated, the port (same host) where the destination's fault thread waits for the urgent channel;
// 0 otherwise. It is a second listener because Node cannot hand an accepted socket to another thread,
// and the fault path must not share a thread with bulk pages. A destination accepts the current
// version and the one before it (MIN_PROTOCOL_VERSION), one way.

import { ErrorCode, MemshiftError } from '../errors.js';
import type { Region } from '../memory/types.js';
import { BodyReader, BodyWriter, malformed } from './codec-util.js';
import { ChannelRole, DISK_REGION_BASE, FrameType, Limits, MIGRATION_MODES, MIN_PROTOCOL_VERSION, PREFACE_BYTES, PREFACE_MAGIC, PROTOCOL_VERSION, type ChannelRoleValue, type MigrationMode } from './constants.js';
import { encodeFrame } from './frame.js';

export function encodePreface(version = PROTOCOL_VERSION): Uint8Array {
  const out = new Uint8Array(PREFACE_BYTES);
  out.set(PREFACE_MAGIC, 0);
  new DataView(out.buffer).setUint16(8, version, true);
  return out;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/**
 * Checks a preface at `offset`; returns the peer's version, or null when fewer than 12 bytes are
 * available. Throws MS_ERR_HANDSHAKE_MAGIC (not a memshift peer) or MS_ERR_HANDSHAKE_VERSION.
 */
export function decodePreface(buf: Uint8Array, offset: number, end: number): number | null {
  const have = Math.min(end - offset, PREFACE_BYTES);
  // Reject a wrong magic as soon as its first bytes are in: an HTTP client must not wait for 12 bytes.
  for (let i = 0; i < Math.min(have, PREFACE_MAGIC.length); i++) {
    if (buf[offset + i] !== PREFACE_MAGIC[i]) {
      // A TLS record (handshake, version 3.x) where the preface should be: the peer uses TLS, this end does not.
      const tls = have >= 2 && buf[offset] === 0x16 && buf[offset + 1] === 0x03;
      const why = tls ? 'peer started a TLS handshake, and this end runs plaintext (--insecure): both sides need the same security flags' : 'peer is not a memshift peer';
      throw new MemshiftError(ErrorCode.HANDSHAKE_MAGIC, `${why} (first bytes ${hex(buf.subarray(offset, offset + have))})`);
    }
  }
  if (have < PREFACE_BYTES) return null;
  const dv = new DataView(buf.buffer, buf.byteOffset + offset, PREFACE_BYTES);
  const version = dv.getUint16(8, true);
  const reserved = dv.getUint16(10, true);
  if (version < MIN_PROTOCOL_VERSION || version > PROTOCOL_VERSION) {
    throw new MemshiftError(ErrorCode.HANDSHAKE_VERSION, `peer speaks protocol version ${version}; this build accepts ${MIN_PROTOCOL_VERSION}..${PROTOCOL_VERSION}`, { value: version });
  }
  if (reserved !== 0) throw malformed(`preface reserved field is 0x${reserved.toString(16)}, must be 0`);
  return version;
}

export interface Hello {
  session: Uint8Array;
  role: ChannelRoleValue;
  mode: MigrationMode;
  capabilities: number;
  regions: Region[];
}

export interface HelloAck {
  session: Uint8Array;
  capabilities: number;
  urgentPort: number;
}

const KINDS = ['ram', 'disk'] as const;

export function encodeHello(h: Hello): Uint8Array {
  if (h.session.length !== Limits.SESSION_ID_BYTES) throw malformed('HELLO: session id must be 16 bytes');
  if (!MIGRATION_MODES.includes(h.mode)) throw malformed(`HELLO: unknown migration mode ${JSON.stringify(h.mode)}`);
  if (h.regions.length < 1 || h.regions.length > Limits.MAX_REGIONS) throw malformed(`HELLO: region count ${h.regions.length} outside [1, ${Limits.MAX_REGIONS}]`);
  const w = new BodyWriter().bytes(h.session).u8(h.role).u8(MIGRATION_MODES.indexOf(h.mode)).u16(h.regions.length).u32(h.capabilities);
  for (const r of h.regions) {
    const name = Buffer.from(r.name, 'utf8');
    if (name.length > Limits.MAX_REGION_NAME_BYTES) throw malformed(`HELLO: region name ${JSON.stringify(r.name)} is longer than ${Limits.MAX_REGION_NAME_BYTES} bytes`);
    if (!KINDS.includes(r.kind)) throw malformed(`HELLO: region ${r.id} has unknown kind ${JSON.stringify(r.kind)}`);
    if (!Number.isInteger(Math.log2(r.pageSize)) || r.pageSize < 4096 || r.pageSize > 65536) throw malformed(`HELLO: region ${r.id} page size ${r.pageSize} is not a power of two in 4 KiB..64 KiB`);
    w.u16(r.id).u8(KINDS.indexOf(r.kind)).u8(Math.log2(r.pageSize)).u32(r.pageCount).u8(name.length).bytes(name);
  }
  return encodeFrame(FrameType.HELLO, w.finish());
}

export function decodeHello(buf: Uint8Array, offset: number, length: number): Hello {
  const r = new BodyReader(buf, offset, length, 'HELLO');
  const session = r.bytes(Limits.SESSION_ID_BYTES, 'session').slice();
  const role = r.u8('role');
  if (!(Object.values(ChannelRole) as number[]).includes(role)) throw malformed(`HELLO: unknown channel role ${role}`);
  const modeIndex = r.u8('mode');
  const mode = MIGRATION_MODES[modeIndex];
  if (mode === undefined) throw malformed(`HELLO: unknown migration mode ${modeIndex}`);
  const count = r.u16('regionCount');
  if (count < 1 || count > Limits.MAX_REGIONS) throw malformed(`HELLO: region count ${count} outside [1, ${Limits.MAX_REGIONS}]`);
  const capabilities = r.u32('capabilities');
  const regions: Region[] = [];
  const ids = new Set<number>();
  for (let i = 0; i < count; i++) {
    const id = r.u16('region.id');
    const kindIndex = r.u8('region.kind');
    const log2 = r.u8('region.pageSize');
    const pageCount = r.u32('region.pageCount');
    const nameLength = r.u8('region.nameLength');
    if (nameLength > Limits.MAX_REGION_NAME_BYTES) throw malformed(`HELLO: region ${id} name of ${nameLength} bytes exceeds ${Limits.MAX_REGION_NAME_BYTES}`);
    const name = Buffer.from(r.bytes(nameLength, 'region.name')).toString('utf8');
    const kind = KINDS[kindIndex];
    if (kind === undefined) throw malformed(`HELLO: region ${id} has unknown kind ${kindIndex}`);
    if (log2 < 12 || log2 > 16) throw malformed(`HELLO: region ${id} page size 2^${log2} outside 4 KiB..64 KiB`);
    if (pageCount === 0) throw malformed(`HELLO: region ${id} has no pages`);
    if (ids.has(id)) throw malformed(`HELLO: region id ${id} appears twice`);
    if (id >= DISK_REGION_BASE) throw malformed(`HELLO: region id ${id}: ids from ${DISK_REGION_BASE} name disks`);
    ids.add(id);
    regions.push({ id, name, kind, pageSize: 2 ** log2, pageCount });
  }
  r.done();
  return { session, role: role as ChannelRoleValue, mode, capabilities, regions };
}

export function encodeHelloAck(a: HelloAck): Uint8Array {
  return encodeFrame(FrameType.HELLO_ACK, new BodyWriter().bytes(a.session).u32(a.capabilities).u16(a.urgentPort).u16(0).finish());
}

export function decodeHelloAck(buf: Uint8Array, offset: number, length: number): HelloAck {
  const r = new BodyReader(buf, offset, length, 'HELLO_ACK');
  const session = r.bytes(Limits.SESSION_ID_BYTES, 'session').slice();
  const capabilities = r.u32('capabilities');
  const urgentPort = r.u16('urgentPort');
  if (r.u16('reserved') !== 0) throw malformed('HELLO_ACK: reserved field is not zero');
  r.done();
  return { session, capabilities, urgentPort };
}
