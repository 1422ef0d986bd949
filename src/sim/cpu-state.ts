// The simulated guest's device state: its vCPU (PRNG and step counter) and workload parameters.
// Opaque bytes to the migration engine; checked here, before anything is loaded, against the memory
// the destination holds. Fixed 64 bytes, little endian:
//
//   0 u32 magic "MSCP"   4 u16 version   6 u8 workload   7 u8 fill
//   8 u32 pageSize      12 u32 pageCount  16 u32 hotStart  20 u32 hotPages
//  24 u16 hotThreshold  26 u16 reserved   28 u32 stepsPerSecond
//  32 f64 seed          40 f64 steps      48 u32 prng[4]
//
// A guest with disks writes version 2: the same 64 bytes, then
//
//  64 u8 diskCount  65 u8 storage (1: shared)  66 u16 reserved  68 u32 reserved  72 u32 blocks[diskCount]
//
// A guest without disks still writes version 1, byte for byte as before.

import { ErrorCode, MemshiftError } from '../errors.js';
import { DISK_BLOCK_BYTES, FILL_KINDS, MAX_DISKS, MAX_DISK_BYTES, WORKLOAD_KINDS, type FillKind } from './guest-config.js';
import type { PrngState } from './prng.js';
import type { CpuCounters, WorkloadShape } from './workload.js';

export const CPU_STATE_BYTES = 64;
const DISK_HEAD_BYTES = 8;
const MAGIC = 0x5043534d; // "MSCP"
const VERSION = 1;
const VERSION_WITH_DISKS = 2;
const STORAGE_SHARED = 1;

export interface CpuState {
  shape: WorkloadShape;
  fill: FillKind;
  seed: number;
  stepsPerSecond: number;
  counters: CpuCounters;
  /** Where the disks live (`shape.diskBlocks`): on storage both hosts reach, so no block moves. */
  storage?: 'shared';
}

export function encodeCpuState(state: CpuState): Uint8Array {
  const disks = state.shape.diskBlocks;
  const out = new Uint8Array(CPU_STATE_BYTES + (disks.length === 0 ? 0 : DISK_HEAD_BYTES + 4 * disks.length));
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC, true);
  dv.setUint16(4, disks.length === 0 ? VERSION : VERSION_WITH_DISKS, true);
  if (disks.length > 0) {
    if (state.storage !== 'shared') throw new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, 'a guest with disks can only move over shared storage (block migration is not built)');
    dv.setUint8(64, disks.length);
    dv.setUint8(65, STORAGE_SHARED);
    disks.forEach((blocks, i) => dv.setUint32(72 + 4 * i, blocks, true));
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
  if (version !== VERSION && version !== VERSION_WITH_DISKS) throw bad(`version ${version}, this build reads ${VERSION} and ${VERSION_WITH_DISKS}`);
  const diskBlocks = version === VERSION ? [] : decodeDisks(dv);
  const length = CPU_STATE_BYTES + (version === VERSION ? 0 : DISK_HEAD_BYTES + 4 * diskBlocks.length);
  if (bytes.byteLength !== length) throw bad(`length ${bytes.byteLength}, expected ${length}`);
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
    ...(diskBlocks.length === 0 ? {} : { storage: 'shared' as const }),
  };
}

function decodeDisks(dv: DataView): number[] {
  if (dv.byteLength < CPU_STATE_BYTES + DISK_HEAD_BYTES) throw bad(`length ${dv.byteLength}: version ${VERSION_WITH_DISKS} has a disk section`);
  const count = dv.getUint8(64);
  if (count < 1 || count > MAX_DISKS) throw bad(`${count} disks (1 to ${MAX_DISKS})`);
  const storage = dv.getUint8(65);
  if (storage !== STORAGE_SHARED) throw bad(`unknown disk storage ${storage}`);
  if (dv.getUint16(66, true) !== 0 || dv.getUint32(68, true) !== 0) throw bad('reserved disk fields are not zero');
  if (dv.byteLength < CPU_STATE_BYTES + DISK_HEAD_BYTES + 4 * count) throw bad(`length ${dv.byteLength}: ${count} disks do not fit`);
  const blocks: number[] = [];
  for (let i = 0; i < count; i++) {
    const b = dv.getUint32(72 + 4 * i, true);
    if (b < 1 || b * DISK_BLOCK_BYTES > MAX_DISK_BYTES) throw bad(`disk ${i} has ${b} blocks`);
    blocks.push(b);
  }
  return blocks;
}
