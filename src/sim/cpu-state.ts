// The simulated guest's device state: its vCPU (PRNG and step counter) and workload parameters.
// Opaque bytes to the migration engine; checked here, before anything is loaded, against the memory
// the destination holds. Fixed 64 bytes, little endian:
//
//   0 u32 magic "MSCP"   4 u16 version   6 u8 workload   7 u8 fill
//   8 u32 pageSize      12 u32 pageCount  16 u32 hotStart  20 u32 hotPages
//  24 u16 hotThreshold  26 u16 reserved   28 u32 stepsPerSecond
//  32 f64 seed          40 f64 steps      48 u32 prng[4]
//
// A guest with disks or a network identity writes version 2: the same 64 bytes, then sections, each
// `u16 type, u16 length, body[length]`, each type at most once, in this order:
//
//   1 disks:    u8 count  u8 storage (1: shared, 2: local, moved block by block)  u16 reserved  u32 blocks[count]
//   2 network:  mac[6]  ipv4[4]  u8 prefixLength  u8 reserved  u16 servicePort (0: none)
//
// A guest with neither still writes version 1, byte for byte as before.

import { ErrorCode, MemshiftError } from '../errors.js';
import { DISK_BLOCK_BYTES, FILL_KINDS, MAX_DISKS, MAX_DISK_BYTES, WORKLOAD_KINDS, type FillKind } from './guest-config.js';
import type { PrngState } from './prng.js';
import type { CpuCounters, WorkloadShape } from './workload.js';

export const CPU_STATE_BYTES = 64;
const MAGIC = 0x5043534d; // "MSCP"
const VERSION = 1;
const VERSION_WITH_SECTIONS = 2;
const STORAGE_SHARED = 1;
const STORAGE_LOCAL = 2;
const SECTION_HEAD_BYTES = 4;
const Section = { DISKS: 1, NETWORK: 2 } as const;
const NETWORK_BODY_BYTES = 14;

/** The guest's network identity: its NIC's MAC, its IPv4 address, and the port of its small service. */
export interface GuestNetwork {
  /** `52:54:00:12:34:56` */
  mac: string;
  ip: string;
  prefixLength: number;
  /** TCP port where the guest answers with its step count (0: no service). */
  servicePort: number;
}

export interface CpuState {
  shape: WorkloadShape;
  fill: FillKind;
  seed: number;
  stepsPerSecond: number;
  counters: CpuCounters;
  /** Where the disks live (`shape.diskBlocks`): on storage both hosts reach (no block moves), or on each host's own (moved). */
  storage?: 'shared' | 'local';
  network?: GuestNetwork;
}

export function encodeCpuState(state: CpuState): Uint8Array {
  const disks = state.shape.diskBlocks;
  if (disks.length > 0 && state.storage === undefined) throw new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, 'a guest with disks must say where they live (storage)');
  const sections: Uint8Array[] = [];
  if (disks.length > 0) {
    const body = new DataView(new ArrayBuffer(4 + 4 * disks.length));
    body.setUint8(0, disks.length);
    body.setUint8(1, state.storage === 'shared' ? STORAGE_SHARED : STORAGE_LOCAL);
    disks.forEach((blocks, i) => body.setUint32(4 + 4 * i, blocks, true));
    sections.push(section(Section.DISKS, new Uint8Array(body.buffer)));
  }
  if (state.network !== undefined) sections.push(section(Section.NETWORK, encodeNetwork(state.network)));
  const out = new Uint8Array(CPU_STATE_BYTES + sections.reduce((n, x) => n + x.length, 0));
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC, true);
  dv.setUint16(4, sections.length === 0 ? VERSION : VERSION_WITH_SECTIONS, true);
  let at = CPU_STATE_BYTES;
  for (const x of sections) {
    out.set(x, at);
    at += x.length;
  }
  dv.setUint8(6, WORKLOAD_KINDS.indexOf(state.shape.kind));
  dv.setUint8(7, FILL_KINDS.indexOf(state.fill));
  dv.setUint32(8, state.shape.pageSize, true);
  dv.setUint32(12, state.shape.pageCount, true);
  dv.setUint32(16, state.shape.hotStart, true);
  dv.setUint32(20, state.shape.hotPages, true);
  dv.setUint16(24, state.shape.hotThreshold, true);
  dv.setUint32(28, state.stepsPerSecond, true);
  dv.setFloat64(32, state.seed, true);
  dv.setFloat64(40, state.counters.steps, true);
  for (let i = 0; i < 4; i++) dv.setUint32(48 + 4 * i, state.counters.prng[i] >>> 0, true);
  return out;
}

function bad(what: string): MemshiftError {
  return new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, `device state: ${what}`);
}

/** Decodes and checks device state against the receiving memory (page size and count). */
export function decodeCpuState(bytes: Uint8Array, expect: { pageSize: number; pageCount: number }): CpuState {
  if (bytes.byteLength < CPU_STATE_BYTES) throw bad(`length ${bytes.byteLength}, expected at least ${CPU_STATE_BYTES}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== MAGIC) throw bad('bad magic');
  const version = dv.getUint16(4, true);
  if (version !== VERSION && version !== VERSION_WITH_SECTIONS) throw bad(`version ${version}, this build reads ${VERSION} and ${VERSION_WITH_SECTIONS}`);
  if (version === VERSION && bytes.byteLength !== CPU_STATE_BYTES) throw bad(`length ${bytes.byteLength}, expected ${CPU_STATE_BYTES}`);
  const { diskBlocks, storage, network } = version === VERSION ? { diskBlocks: [], storage: undefined, network: undefined } : decodeSections(dv);
  const kind = WORKLOAD_KINDS[dv.getUint8(6)];
  const fill = FILL_KINDS[dv.getUint8(7)];
  if (kind === undefined) throw bad(`unknown workload ${dv.getUint8(6)}`);
  if (fill === undefined) throw bad(`unknown fill ${dv.getUint8(7)}`);
  const pageSize = dv.getUint32(8, true);
  const pageCount = dv.getUint32(12, true);
  if (pageSize !== expect.pageSize || pageCount !== expect.pageCount) {
    throw bad(`guest has ${pageCount} pages of ${pageSize} B, this memory ${expect.pageCount} of ${expect.pageSize} B`);
  }
  const hotStart = dv.getUint32(16, true);
  const hotPages = dv.getUint32(20, true);
  if (hotPages < 1 || hotStart + hotPages > pageCount) throw bad(`hot set [${hotStart}, +${hotPages}) outside ${pageCount} pages`);
  const hotThreshold = dv.getUint16(24, true);
  if (hotThreshold > 1024) throw bad(`hot threshold ${hotThreshold} > 1024`);
  const stepsPerSecond = dv.getUint32(28, true);
  if (stepsPerSecond > 0x7fffffff) throw bad(`step rate ${stepsPerSecond} too large`);
  const seed = dv.getFloat64(32, true);
  const steps = dv.getFloat64(40, true);
  if (!Number.isSafeInteger(seed) || seed < 0) throw bad(`seed ${seed} is not an integer in [0, 2^53)`);
  if (!Number.isSafeInteger(steps) || steps < 0) throw bad(`step count ${steps} is not an integer in [0, 2^53)`);
  const prng = [0, 1, 2, 3].map((i) => dv.getUint32(48 + 4 * i, true)) as PrngState;
  if ((prng[0] | prng[1] | prng[2] | prng[3]) === 0) throw bad('PRNG state is all zero');
  return {
    shape: { kind, pageCount, pageSize, hotStart, hotPages, hotThreshold, diskBlocks },
    fill,
    seed,
    stepsPerSecond,
    counters: { prng, steps },
    ...(storage === undefined ? {} : { storage }),
    ...(network === undefined ? {} : { network }),
  };
}

function section(type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(SECTION_HEAD_BYTES + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, type, true);
  dv.setUint16(2, body.length, true);
  out.set(body, SECTION_HEAD_BYTES);
  return out;
}

function decodeSections(dv: DataView): { diskBlocks: number[]; storage: 'shared' | 'local' | undefined; network: GuestNetwork | undefined } {
  let diskBlocks: number[] = [];
  let storage: 'shared' | 'local' | undefined;
  let network: GuestNetwork | undefined;
  let last = 0;
  let at = CPU_STATE_BYTES;
  if (at === dv.byteLength) throw bad(`length ${dv.byteLength}: version ${VERSION_WITH_SECTIONS} has at least one section`);
  while (at < dv.byteLength) {
    if (dv.byteLength - at < SECTION_HEAD_BYTES) throw bad(`length ${dv.byteLength}: a section head is cut short at byte ${at}`);
    const type = dv.getUint16(at, true);
    const length = dv.getUint16(at + 2, true);
    const body = at + SECTION_HEAD_BYTES;
    if (body + length > dv.byteLength) throw bad(`length ${dv.byteLength}: section ${type} of ${length} B does not fit`);
    if (type <= last) throw bad(`section ${type} after section ${last} (each once, in order)`);
    if (type === Section.DISKS) ({ blocks: diskBlocks, storage } = decodeDisks(new DataView(dv.buffer, dv.byteOffset + body, length)));
    else if (type === Section.NETWORK) network = decodeNetwork(new DataView(dv.buffer, dv.byteOffset + body, length));
    else throw bad(`unknown section ${type}`);
    last = type;
    at = body + length;
  }
  return { diskBlocks, storage, network };
}

function encodeNetwork(n: GuestNetwork): Uint8Array {
  const out = new Uint8Array(NETWORK_BODY_BYTES);
  const dv = new DataView(out.buffer);
  out.set(parseMac(n.mac), 0);
  out.set(parseIpv4(n.ip), 6);
  dv.setUint8(10, n.prefixLength);
  dv.setUint16(12, n.servicePort, true);
  return out;
}

function decodeNetwork(dv: DataView): GuestNetwork {
  if (dv.byteLength !== NETWORK_BODY_BYTES) throw bad(`network section of ${dv.byteLength} B, expected ${NETWORK_BODY_BYTES}`);
  const b = new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength);
  const prefixLength = dv.getUint8(10);
  if (prefixLength < 1 || prefixLength > 32) throw bad(`network prefix /${prefixLength}`);
  if (dv.getUint8(11) !== 0) throw bad('reserved network byte is not zero');
  if ((b[0] & 1) !== 0) throw bad('the guest MAC is a multicast address');
  return {
    mac: [...b.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':'),
    ip: [...b.subarray(6, 10)].join('.'),
    prefixLength,
    servicePort: dv.getUint16(12, true),
  };
}

/** `52:54:00:12:34:56` as six bytes; throws DEVICE_STATE_INVALID otherwise. */
export function parseMac(mac: string): Uint8Array {
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw bad(`MAC ${JSON.stringify(mac)} is not six hex bytes`);
  return new Uint8Array(parts.map((p) => parseInt(p, 16)));
}

/** A dotted IPv4 address as four bytes; throws DEVICE_STATE_INVALID otherwise. */
export function parseIpv4(ip: string): Uint8Array {
  const parts = ip.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) throw bad(`IPv4 address ${JSON.stringify(ip)}`);
  return new Uint8Array(parts.map(Number));
}

function decodeDisks(dv: DataView): { blocks: number[]; storage: 'shared' | 'local' } {
  if (dv.byteLength < 4) throw bad(`disk section of ${dv.byteLength} B`);
  const count = dv.getUint8(0);
  if (count < 1 || count > MAX_DISKS) throw bad(`${count} disks (1 to ${MAX_DISKS})`);
  const storage = dv.getUint8(1);
  if (storage !== STORAGE_SHARED && storage !== STORAGE_LOCAL) throw bad(`unknown disk storage ${storage}`);
  if (dv.getUint16(2, true) !== 0) throw bad('reserved disk fields are not zero');
  if (dv.byteLength !== 4 + 4 * count) throw bad(`disk section of ${dv.byteLength} B for ${count} disks`);
  const blocks: number[] = [];
  for (let i = 0; i < count; i++) {
    const b = dv.getUint32(4 + 4 * i, true);
    if (b < 1 || b * DISK_BLOCK_BYTES > MAX_DISK_BYTES) throw bad(`disk ${i} has ${b} blocks`);
    blocks.push(b);
  }
  return { blocks, storage: storage === STORAGE_SHARED ? 'shared' : 'local' };
}
