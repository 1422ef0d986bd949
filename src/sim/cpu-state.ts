// The simulated guest's device state: its vCPU (PRNG and step counter) and workload parameters.
// Opaque bytes to the migration engine; checked here, before anything is loaded, against the memory
// the destination holds. Fixed 64 bytes, little endian:
//
//   0 u32 magic "MSCP"   4 u16 version   6 u8 workload   7 u8 fill
//   8 u32 pageSize      12 u32 pageCount  16 u32 hotStart  20 u32 hotPages
//  24 u16 hotThreshold  26 u16 reserved   28 u32 stepsPerSecond
//  32 f64 seed          40 f64 steps      48 u32 prng[4]

import { ErrorCode, MemshiftError } from '../errors.js';
import { FILL_KINDS, WORKLOAD_KINDS, type FillKind } from './guest-config.js';
import type { PrngState } from './prng.js';
import type { CpuCounters, WorkloadShape } from './workload.js';

export const CPU_STATE_BYTES = 64;
const MAGIC = 0x5043534d; // "MSCP"
const VERSION = 1;

export interface CpuState {
  shape: WorkloadShape;
  fill: FillKind;
  seed: number;
  stepsPerSecond: number;
  counters: CpuCounters;
}

export function encodeCpuState(state: CpuState): Uint8Array {
  const out = new Uint8Array(CPU_STATE_BYTES);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC, true);
  dv.setUint16(4, VERSION, true);
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
  if (bytes.byteLength !== CPU_STATE_BYTES) throw bad(`length ${bytes.byteLength}, expected ${CPU_STATE_BYTES}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== MAGIC) throw bad('bad magic');
  const version = dv.getUint16(4, true);
  if (version !== VERSION) throw bad(`version ${version}, this build reads ${VERSION}`);
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
    shape: { kind, pageCount, pageSize, hotStart, hotPages, hotThreshold },
    fill,
    seed,
    stepsPerSecond,
    counters: { prng, steps },
  };
}
